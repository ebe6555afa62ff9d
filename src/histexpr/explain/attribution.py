"""Attributions of neural models: which marks and bins drive a prediction.

Three gradient methods, computed with Captum (Kokhlikyan et al. 2020), share one
contract ``attribute(model, X, method) -> array shaped like X``:

- ``saliency``: the signed gradient ``d f / d x`` (Simonyan et al. 2014); the
  absolute map is derived when averaging;
- ``input_x_gradient``: ``x * d f / d x`` (Shrikumar et al. 2016);
- ``integrated_gradients``: the path integral of the gradient from a baseline
  (default: no reads, all zeros) to ``x`` (Sundararajan et al. 2017); its
  attributions sum to ``f(x) - f(baseline)`` (completeness).

A network of several inputs (an atlas network's atlas input, the midpoint of a
pair) is attributed with respect to its first input, the others held fixed.
Models take raw read counts and normalise internally, so attributions are with
respect to read counts. Per-cell-type averages reproduce the "average input
gradient" maps of DeepChrome-style analyses (Singh et al. 2016).
AttentiveChrome-like models (Singh et al. 2017) also export their attention.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from histexpr._runtime import model_device, preserved_mode
from histexpr.atomic import atomic_path
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import ConfigError, DataError, HistexprError
from histexpr.models import AttentionMaps

METHODS: tuple[str, ...] = ("saliency", "input_x_gradient", "integrated_gradients")


@dataclass
class CellAttributions:
    """Mean attribution maps per cell type.

    Attributes
    ----------
    method : str
    cells : tuple of str
    marks : tuple of str
    signed : np.ndarray, shape (n_cells, n_marks, n_bins)
        Mean signed attribution over the cell type's genes.
    abs : np.ndarray, shape (n_cells, n_marks, n_bins)
        Mean absolute attribution.
    n : np.ndarray, shape (n_cells,), int
        Genes averaged per cell type.
    """

    method: str
    cells: tuple[str, ...]
    marks: tuple[str, ...]
    signed: np.ndarray
    abs: np.ndarray
    n: np.ndarray


@dataclass
class ExplainResult:
    """What :func:`histexpr.workflows.explain.explain_run` computed and wrote."""

    model_kind: str
    out_dir: object
    attributions: dict[str, CellAttributions]
    attention: AttentionMaps | None = None
    files: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    genes: dict[str, GeneAttributions] = field(default_factory=dict)
    hints: list[str] = field(default_factory=list)


@dataclass
class GeneAttributions:
    """Attribution maps of individual genes (one row per cell type and gene).

    Attributes
    ----------
    method : str
    marks : tuple of str
    cell, gene : np.ndarray, shape (n,), str
    values : np.ndarray, shape (n, n_marks, n_bins), float32
        Signed attributions of each row's input.
    """

    method: str
    marks: tuple[str, ...]
    cell: np.ndarray
    gene: np.ndarray
    values: np.ndarray


class _ScalarOutput(nn.Module):
    """Reduce a model's output to one number per example, as Captum's ``target=None`` needs."""

    def __init__(self, model: nn.Module, target: int | None):
        super().__init__()
        self.model = model
        self.target = target

    def forward(self, x: torch.Tensor, *side: torch.Tensor) -> torch.Tensor:
        out = self.model(x, *side)
        if out.ndim == 1:
            return out
        if out.ndim != 2:
            raise HistexprError(
                f"model output has shape {tuple(out.shape)}; expected (n,) or (n, k)"
            )
        if self.target is not None:
            return out[:, self.target]
        # Several outputs without a target: members of an ensemble, whose mean is the prediction.
        return out.mean(dim=1)


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    # cuDNN RNNs refuse backward in eval mode; the native kernels do not.
    with preserved_mode(model), torch.backends.cudnn.flags(enabled=False):
        yield


def _baseline_batch(baseline, X: np.ndarray, lo: int, hi: int, device) -> torch.Tensor:
    if baseline is None:
        return torch.zeros((hi - lo, *X.shape[1:]), dtype=torch.float32, device=device)
    b = np.asarray(baseline, dtype=np.float32)
    if b.shape == X.shape:
        b = b[lo:hi]
    b = np.broadcast_to(b, (hi - lo, *X.shape[1:]))
    return torch.as_tensor(np.ascontiguousarray(b), device=device)


def attribute(
    model: nn.Module,
    X: np.ndarray,
    method: str = "saliency",
    target: int | None = None,
    batch_size: int = 256,
    baseline: float | np.ndarray | None = None,
    n_steps: int = 50,
    side: np.ndarray | tuple[np.ndarray, ...] | None = None,
    ig_method: str = "gausslegendre",
) -> np.ndarray:
    """Attribution of every input value to the model's prediction.

    Parameters
    ----------
    model : nn.Module
        Maps a float tensor shaped like ``X`` (then the ``side`` inputs, if any) to
        ``(n,)`` or ``(n, k)``.
    X : np.ndarray, shape (n, n_marks, n_bins), or tuple of row-aligned arrays
        Inputs (raw read counts for histexpr models). A tuple is the inputs of a
        network of several inputs: the first (the histone signal) is attributed, the
        others are held fixed (as ``side``).
    method : {"saliency", "input_x_gradient", "integrated_gradients"}
    target : int, optional
        Output column for ``(n, k)`` outputs; default their mean (``(n, 1)`` -> that column).
    batch_size : int
        Examples per gradient pass (integrated gradients runs ``n_steps`` such passes).
    baseline : float or np.ndarray, optional
        Integrated-gradients reference input, broadcastable to ``X``; default zeros.
    n_steps : int
        Integrated-gradients steps.
    side : np.ndarray or tuple of np.ndarray, each shape (n, ...), optional
        Further inputs of a model of several inputs, ``model(x, *side)`` (an atlas
        model's atlas input, the midpoint of a pair): held fixed, so the attributions
        are those of the part of the prediction that ``x`` moves.
    ig_method : str
        Integrated-gradients quadrature (Captum's names): "gausslegendre", or e.g.
        "riemann_middle" (the midpoints of ``n_steps`` equal steps).

    Returns
    -------
    np.ndarray, shape (n, n_marks, n_bins), float32
        Signed attributions.
    """
    if method not in METHODS:
        raise HistexprError(
            f"unknown attribution method {method!r}; choose from {', '.join(METHODS)}"
        )
    check_steps(n_steps)
    from captum import attr as captum_attr

    if isinstance(X, tuple):
        X, side = X[0], (*X[1:], *_as_tuple(side))
    fixed = _as_tuple(side)
    X = np.asarray(X, dtype=np.float32)
    wrapped = _ScalarOutput(model, target)
    device = model_device(model)
    out = np.empty_like(X)
    if method == "saliency":
        explainer = captum_attr.Saliency(wrapped)
    elif method == "input_x_gradient":
        explainer = captum_attr.InputXGradient(wrapped)
    else:
        explainer = captum_attr.IntegratedGradients(wrapped)
    with _eval_mode(model):
        for lo in range(0, len(X), batch_size):
            hi = min(lo + batch_size, len(X))
            x = torch.as_tensor(X[lo:hi], device=device).requires_grad_(True)
            extra = {}
            if fixed:
                held = (np.ascontiguousarray(f[lo:hi], dtype=np.float32) for f in fixed)
                extra = {
                    "additional_forward_args": tuple(
                        torch.as_tensor(h, device=device) for h in held
                    )
                }
            if method == "saliency":
                a = explainer.attribute(x, abs=False, **extra)
            elif method == "input_x_gradient":
                a = explainer.attribute(x, **extra)
            else:
                a = explainer.attribute(
                    x,
                    baselines=_baseline_batch(baseline, X, lo, hi, device),
                    n_steps=n_steps,
                    method=ig_method,
                    internal_batch_size=batch_size,
                    **extra,
                )
            out[lo:hi] = a.detach().cpu().numpy()
    return out


def _as_tuple(side) -> tuple:
    """The fixed further inputs as a tuple (None: none; one array: one)."""
    if side is None:
        return ()
    return tuple(side) if isinstance(side, tuple) else (side,)


def check_steps(n_steps: int) -> None:
    """Refuse an integrated-gradients step count below 1 (one line)."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ConfigError(
            f"integrated-gradients steps (--steps, n_steps) must be an integer >= 1, not {n_steps!r}"
        )


def sample_rows(rows: np.ndarray, max_per_cell: int | None, rng) -> np.ndarray:
    """A sorted random subset of at most ``max_per_cell`` of ``rows`` (all when None)."""
    if max_per_cell is None or rows.size <= max_per_cell:
        return rows
    return np.sort(rng.choice(rows, max_per_cell, replace=False))


def mean_attribution_by_cell(
    model: nn.Module,
    data: HistoneDataset,
    method: str = "saliency",
    cells: Sequence[str] | None = None,
    max_per_cell: int | None = None,
    seed: int = 0,
    on_cell: Callable[[int], None] | None = None,
    side: np.ndarray | tuple[np.ndarray, ...] | None = None,
    **kwargs,
) -> CellAttributions:
    """Mean signed and absolute attribution maps of each cell type's genes.

    Parameters
    ----------
    data : HistoneDataset
    cells : sequence of str, optional
        Default every cell type in ``data``.
    max_per_cell : int, optional
        Average over a random subset of at most this many genes per cell type.
    on_cell : callable, optional
        Called with the number of genes averaged after each cell type (progress).
    side : np.ndarray or tuple of np.ndarray, optional
        Row-aligned further inputs of a model of several inputs (see :func:`attribute`).
    **kwargs
        Passed to :func:`attribute` (``batch_size``, ``baseline``, ``n_steps``, ``target``).
    """
    cells = list(data.cells if cells is None else cells)
    missing = sorted(set(cells) - set(data.cells))
    if missing:
        raise DataError(f"cell type(s) not in data: {', '.join(missing)}", key="cell")
    rng = np.random.default_rng(seed)
    shape = (len(cells), *data.X.shape[1:])
    signed, absolute = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    counts = np.zeros(len(cells), dtype=np.int64)
    for i, cell in enumerate(cells):
        rows = sample_rows(np.flatnonzero(data.cell == cell), max_per_cell, rng)
        extra = {"side": tuple(f[rows] for f in _as_tuple(side))}
        a = attribute(model, data.X[rows], method, **extra, **kwargs)
        signed[i] = a.mean(axis=0)
        absolute[i] = np.abs(a).mean(axis=0)
        counts[i] = rows.size
        if on_cell is not None:
            on_cell(rows.size)
    return CellAttributions(method, tuple(cells), tuple(data.marks), signed, absolute, counts)


def save_attributions(path, attrs: CellAttributions) -> None:
    """Write mean maps as ``.npz`` (no pickles).

    Keys: ``"<cell>"`` -> signed ``(n_marks, n_bins)``, ``"<cell>_abs"`` -> absolute, and
    ``_method``, ``_cells``, ``_marks``, ``_n`` describing them.
    """
    arrays: dict[str, np.ndarray] = {
        "_method": np.array(attrs.method),
        "_cells": np.array(attrs.cells, dtype=str),
        "_marks": np.array(attrs.marks, dtype=str),
        "_n": np.asarray(attrs.n, dtype=np.int64),
    }
    for i, cell in enumerate(attrs.cells):
        arrays[cell] = attrs.signed[i]
        arrays[f"{cell}_abs"] = attrs.abs[i]
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def load_attributions(path) -> CellAttributions:
    """Read a file written by :func:`save_attributions`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            cells = tuple(str(c) for c in z["_cells"])
            return CellAttributions(
                method=str(z["_method"]),
                cells=cells,
                marks=tuple(str(m) for m in z["_marks"]),
                signed=np.stack([z[c] for c in cells]) if cells else np.zeros((0, 0, 0)),
                abs=np.stack([z[f"{c}_abs"] for c in cells]) if cells else np.zeros((0, 0, 0)),
                n=np.asarray(z["_n"]),
            )
    except KeyError as exc:
        raise DataError(f"not a histexpr attribution file (missing {exc})", path=path) from None
    except ValueError:
        raise DataError("not an .npz archive of plain arrays", path=path) from None
    except OSError as exc:
        raise DataError(f"unreadable attribution file ({exc})", path=path) from None


def save_gene_attributions(path, attrs: GeneAttributions) -> None:
    """Write per-gene maps as ``.npz`` (no pickles).

    Keys: ``values`` ``(n, n_marks, n_bins)`` float32, ``cell`` and ``gene`` ``(n,)`` text,
    ``_method`` and ``_marks``.
    """
    arrays = {
        "_method": np.array(attrs.method),
        "_marks": np.array(attrs.marks, dtype=str),
        "cell": np.asarray(attrs.cell, dtype=str),
        "gene": np.asarray(attrs.gene, dtype=str),
        "values": np.asarray(attrs.values, dtype=np.float32),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def load_gene_attributions(path) -> GeneAttributions:
    """Read a file written by :func:`save_gene_attributions`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out = GeneAttributions(
                method=str(z["_method"]),
                marks=tuple(str(m) for m in z["_marks"]),
                cell=z["cell"],
                gene=z["gene"],
                values=z["values"],
            )
    except KeyError as exc:
        raise DataError(
            f"not a histexpr gene attribution file (missing {exc})", path=path
        ) from None
    except ValueError:
        raise DataError("not an .npz archive of plain arrays", path=path) from None
    except OSError as exc:
        raise DataError(f"unreadable gene attribution file ({exc})", path=path) from None
    if out.values.ndim != 3 or not len(out.cell) == len(out.gene) == len(out.values):
        raise DataError("values, cell and gene disagree in length", path=path, key="values")
    return out
