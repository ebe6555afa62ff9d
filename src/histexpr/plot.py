"""Figures of histexpr: inputs, targets, training, attributions and predictions.

Every ``plot_*`` function draws one panel: it takes ``ax=None`` and returns the
:class:`~matplotlib.axes.Axes` it drew on. Without ``ax`` it makes a new
:class:`~matplotlib.figure.Figure` that is not registered with pyplot, so the
functions are safe in headless CLI runs and never leak pyplot state; in a
notebook pass an ``ax`` from ``plt.subplots()`` to have it displayed.

The ``*_figure`` functions compose panels into the multi-panel figures used by
``histexpr explain`` and ``histexpr report``; :func:`figure_png` and
:func:`save_figure` render them with the Agg renderer.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from histexpr.atomic import atomic_path
from histexpr.data.dataset import BIN_SIZE, MARKS, HistoneDataset
from histexpr.evaluate import compute_metrics

#: Line style of each training-history split.
SPLIT_STYLES = {"train": "-", "valid": "--", "trainval": ":"}
SIGNED_CMAP = "RdBu_r"
UNSIGNED_CMAP = "viridis"


class Histogram(NamedTuple):
    """A precomputed histogram (e.g. from ``data_summary.json``)."""

    counts: np.ndarray
    edges: np.ndarray


def _axes(ax: Axes | None, figsize=(6.0, 3.0)) -> Axes:
    if ax is not None:
        return ax
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def heatmap_panel(n_marks: int, width: float = 4.5) -> tuple[float, float]:
    """Panel size (inches) of a marks x bins heatmap: taller with more marks."""
    return (width, max(2.6, 1.1 + 0.3 * int(n_marks)))


def window_kb(n_bins: int, bin_size: int = BIN_SIZE) -> float:
    """Half-width of the window around the TSS in kb (5 for 100 bins of 100 bp)."""
    return n_bins * bin_size / 2000.0


def heatmap(
    values: np.ndarray,
    marks: Sequence[str] = MARKS,
    ax: Axes | None = None,
    signed: bool = False,
    title: str | None = None,
    bin_size: int = BIN_SIZE,
    cbar_label: str = "",
    vmax: float | None = None,
) -> Axes:
    """Draw a marks x bins map with the bin axis in kb relative to the TSS.

    Parameters
    ----------
    values : np.ndarray, shape (n_marks, n_bins)
    marks : sequence of str
        Row labels.
    signed : bool
        Diverging colormap centred at 0 (symmetric limits) instead of a sequential one.
    vmax : float, optional
        Upper colour limit (``|value|`` limit when signed); default the data maximum.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != len(marks):
        raise ValueError(f"expected ({len(marks)}, n_bins) values, got {values.shape}")
    ax = _axes(ax)
    half = window_kb(values.shape[1], bin_size)
    finite = values[np.isfinite(values)]
    if signed:
        top = vmax if vmax is not None else (float(np.abs(finite).max()) if finite.size else 1.0)
        top = top if top > 0 else 1.0
        lims = {"vmin": -top, "vmax": top, "cmap": SIGNED_CMAP}
    else:
        top = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
        low = float(finite.min()) if finite.size else 0.0
        lims = {
            "vmin": min(low, 0.0),
            "vmax": top if top > low else low + 1.0,
            "cmap": UNSIGNED_CMAP,
        }
    image = ax.imshow(
        values,
        aspect="auto",
        interpolation="nearest",
        extent=(-half, half, len(marks) - 0.5, -0.5),
        **lims,
    )
    ax.set_yticks(range(len(marks)), labels=list(marks))
    ax.set_ylabel("histone mark")
    ax.set_xlabel("position relative to TSS (kb)")
    ax.axvline(0.0, color="0.5", lw=0.6, ls=":")
    if title:
        ax.set_title(title, fontsize=10)
    ax.figure.colorbar(image, ax=ax, label=cbar_label, fraction=0.05, pad=0.02)
    return ax


def plot_input_heatmap(
    mean_signal: np.ndarray,
    marks: Sequence[str] = MARKS,
    ax: Axes | None = None,
    title: str | None = None,
    bin_size: int = BIN_SIZE,
    vmax: float | None = None,
) -> Axes:
    """Mean read count per mark and bin of one cell type.

    Parameters
    ----------
    mean_signal : np.ndarray, shape (n_marks, n_bins)
    """
    return heatmap(mean_signal, marks, ax, False, title, bin_size, "mean reads per bin", vmax)


def plot_attribution_heatmap(
    attribution: np.ndarray,
    marks: Sequence[str] = MARKS,
    ax: Axes | None = None,
    signed: bool = True,
    title: str | None = None,
    bin_size: int = BIN_SIZE,
    label: str | None = None,
    vmax: float | None = None,
) -> Axes:
    """Mean attribution per mark and bin; signed maps use a diverging map centred at 0.

    Parameters
    ----------
    attribution : np.ndarray, shape (n_marks, n_bins)
    """
    label = label if label is not None else ("attribution" if signed else "|attribution|")
    return heatmap(attribution, marks, ax, signed, title, bin_size, label, vmax)


def plot_expression_histogram(
    values: Mapping[str, np.ndarray | Histogram] | np.ndarray,
    ax: Axes | None = None,
    bins: int | np.ndarray = 40,
    title: str | None = None,
    xlabel: str = "expression (log2(RPKM+1))",
) -> Axes:
    """Overlaid histograms of expression values, one outline per cell type.

    Parameters
    ----------
    values : mapping of str to (np.ndarray, shape (n,) or Histogram), or np.ndarray
        Expression values per cell type (or precomputed histograms).
    bins : int or np.ndarray
        Bin count or shared edges for raw values.
    """
    ax = _axes(ax)
    if not isinstance(values, Mapping):
        values = {"": np.asarray(values)}
    raw = [np.asarray(v, dtype=np.float64) for v in values.values() if not isinstance(v, Histogram)]
    raw = [v[np.isfinite(v)] for v in raw]
    if isinstance(bins, int) and raw and any(v.size for v in raw):
        pooled = np.concatenate(raw)
        bins = np.histogram_bin_edges(pooled, bins=bins)
    for name, v in values.items():
        if isinstance(v, Histogram):
            counts, edges = np.asarray(v.counts), np.asarray(v.edges)
        else:
            v = np.asarray(v, dtype=np.float64)
            counts, edges = np.histogram(v[np.isfinite(v)], bins=bins)
        ax.stairs(counts, edges, label=name or None, lw=1.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("genes (count)")
    if len(values) > 1:
        ax.legend(fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_loss_curves(
    history: pd.DataFrame, ax: Axes | None = None, title: str | None = None, log: bool = False
) -> Axes:
    """Loss per epoch of every ensemble member and split.

    Parameters
    ----------
    history : pd.DataFrame
        Long format with columns ``member``, ``epoch``, ``split`` and ``loss``;
        colour encodes the member, line style the split.
    """
    missing = {"member", "epoch", "split", "loss"} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks column(s) {', '.join(sorted(missing))}")
    ax = _axes(ax)
    members = sorted(history["member"].unique())
    colors = [f"C{i % 10}" for i in range(len(members))]
    for member, color in zip(members, colors, strict=True):
        rows = history[history["member"] == member]
        for split, part in rows.groupby("split", sort=False):
            part = part.sort_values("epoch")
            ax.plot(part["epoch"], part["loss"], SPLIT_STYLES.get(split, "-."), color=color, lw=1.1)
    splits = [s for s in SPLIT_STYLES if s in set(history["split"])]
    splits += sorted(set(history["split"]) - set(splits))
    handles = [Line2D([], [], color="0.2", ls=SPLIT_STYLES.get(s, "-."), label=s) for s in splits]
    if 1 < len(members) <= 10:
        handles += [
            Line2D([], [], color=c, label=f"member {m}")
            for m, c in zip(members, colors, strict=True)
        ]
    ax.legend(handles=handles, fontsize=7, frameon=False, ncols=2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (training objective)")
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_pred_vs_obs(
    y: np.ndarray,
    yhat: np.ndarray,
    ax: Axes | None = None,
    metrics: Mapping[str, float] | None = None,
    title: str | None = None,
    max_points: int = 5000,
    seed: int = 0,
    unit: str = "log2(RPKM+1)",
) -> Axes:
    """Predicted against observed expression, with the metrics in a corner.

    Parameters
    ----------
    y, yhat : np.ndarray, shape (n,)
    metrics : mapping, optional
        Shown as ``name = value``; computed from ``y`` and ``yhat`` when omitted.
    max_points : int
        Points drawn (a random subset); metrics always use every point.
    unit : str
        Unit of the expression axes (empty for none).
    """
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    ax = _axes(ax, figsize=(4.0, 4.0))
    if metrics is None:
        ok = np.isfinite(y) & np.isfinite(yhat)
        metrics = compute_metrics(y[ok], yhat[ok]).as_dict()
    metrics = dict(metrics)
    idx = np.arange(y.size)
    if y.size > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(y.size, max_points, replace=False))
    ax.scatter(y[idx], yhat[idx], s=3, alpha=0.35, lw=0, rasterized=True)
    both = np.concatenate([y, yhat])
    both = both[np.isfinite(both)]
    if both.size:
        lo, hi = float(both.min()), float(both.max())
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--")
    lines = []
    for name in ("n", "mse", "pearson", "spearman", "r2", "auc", "mse_over_oracle"):
        value = metrics.get(name)
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            continue
        lines.append(f"{name} = {int(value)}" if name == "n" else f"{name} = {value:.3f}")
    ax.text(
        0.03,
        0.97,
        "\n".join(lines),
        transform=ax.transAxes,
        va="top",
        fontsize=8,
        bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8, "lw": 0},
    )
    suffix = f" ({unit})" if unit else ""
    ax.set_xlabel("observed expression" + suffix)
    ax.set_ylabel("predicted expression" + suffix)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# --- composite figures --------------------------------------------------------------------


def figure_grid(n_panels: int, ncols: int, panel=(4.5, 2.6)) -> tuple[Figure, list[Axes]]:
    """A figure with ``n_panels`` axes in rows of ``ncols`` (unused cells removed)."""
    n_panels = max(int(n_panels), 1)
    ncols = max(1, min(ncols, n_panels))
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel())
    for extra in axes[n_panels:]:
        extra.remove()
    return fig, axes[:n_panels]


def cell_mean_signal(data: HistoneDataset, cells: Sequence[str]) -> dict[str, np.ndarray]:
    """Mean read count per mark and bin of each cell type.

    Returns
    -------
    dict of str to np.ndarray, shape (n_marks, n_bins)
    """
    return {c: data.X[data.cell == c].mean(axis=0, dtype=np.float64) for c in cells}


def input_heatmaps_figure(
    mean_signal: Mapping[str, np.ndarray],
    marks: Sequence[str] = MARKS,
    bin_size: int = BIN_SIZE,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """One input heatmap per cell type, sharing one colour scale (``title`` above them)."""
    labels = labels or {}
    fig, axes = figure_grid(len(mean_signal), 2, panel=heatmap_panel(len(marks)))
    top = max((float(np.nanmax(v)) for v in mean_signal.values()), default=1.0)
    for ax, (cell, values) in zip(axes, mean_signal.items(), strict=False):
        plot_input_heatmap(values, marks, ax, labels.get(cell, cell), bin_size, vmax=top)
    return _suptitle(fig, title)


def attribution_figure(
    cells: Sequence[str],
    signed: np.ndarray,
    absolute: np.ndarray,
    marks: Sequence[str] = MARKS,
    method: str = "",
    labels: Mapping[str, str] | None = None,
    bin_size: int = BIN_SIZE,
    title: str | None = None,
) -> Figure:
    """Signed (left) and absolute (right) mean attribution maps, one row per cell type.

    Parameters
    ----------
    signed, absolute : np.ndarray, shape (n_cells, n_marks, n_bins)
    """
    labels = labels or {}
    fig, axes = figure_grid(2 * len(cells), 2, panel=heatmap_panel(len(marks)))
    vmax_s = float(np.nanmax(np.abs(signed))) if signed.size else None
    vmax_a = float(np.nanmax(absolute)) if absolute.size else None
    for i, cell in enumerate(cells):
        name = labels.get(cell, cell)
        plot_attribution_heatmap(
            signed[i],
            marks,
            axes[2 * i],
            True,
            f"{name}: {method} (signed)",
            bin_size,
            vmax=vmax_s or None,
        )
        plot_attribution_heatmap(
            absolute[i],
            marks,
            axes[2 * i + 1],
            False,
            f"{name}: {method} (absolute)",
            bin_size,
            vmax=vmax_a or None,
        )
    return _suptitle(fig, title)


def pred_vs_obs_figure(
    groups: Mapping[str, tuple[np.ndarray, np.ndarray]],
    metrics: Mapping[str, Mapping[str, float] | None] | None = None,
    model: str = "",
    max_points: int = 5000,
    title: str | None = None,
    unit: str = "log2(RPKM+1)",
) -> Figure:
    """One predicted-vs-observed panel per group (e.g. seen and unseen cell types).

    Parameters
    ----------
    groups : mapping of str to (y, yhat)
    metrics : mapping of str to metrics, optional
        Per group; missing groups get metrics computed from the points.
    title : str, optional
        Figure title above the panels; default "MODEL: predicted vs observed expression".
    unit : str
        Unit of the expression axes.
    """
    metrics = metrics or {}
    fig, axes = figure_grid(len(groups), min(len(groups), 3), panel=(3.8, 3.6))
    for ax, (group, (y, yhat)) in zip(axes, groups.items(), strict=False):
        plot_pred_vs_obs(y, yhat, ax, metrics.get(group), group, max_points, unit=unit)
    if title is None and model:
        title = f"{model}: predicted vs observed expression"
    return _suptitle(fig, title)


def plot_model_scores(
    scores: Mapping[str, float],
    ax: Axes | None = None,
    best: str | None = None,
    reference: float | None = None,
    reference_label: str = "oracle",
    xlabel: str = "",
    title: str | None = None,
) -> Axes:
    """Horizontal bars of one score per model, the first on top, ``best`` highlighted.

    Parameters
    ----------
    scores : mapping of str to float
        Model -> score, in the order to draw (NaN: no bar, "n/a" written instead).
    best : str, optional
        The model drawn in the highlight colour with a bold label.
    reference : float, optional
        A dashed vertical line (e.g. the oracle's score), labelled ``reference_label``.
    """
    names = list(scores)
    values = np.array([scores[n] for n in names], dtype=np.float64)
    ax = _axes(ax, figsize=(4.0, 0.4 * len(names) + 1.2))
    colors = ["C1" if n == best else "#9bb0c8" for n in names]
    pos = np.arange(len(names))
    ax.barh(pos, np.nan_to_num(values), color=colors, height=0.7)
    ax.set_yticks(pos, labels=names)
    for label in ax.get_yticklabels():
        label.set_fontweight("bold" if label.get_text() == best else "normal")
    finite = values[np.isfinite(values)]
    top = max([0.0, *finite.tolist(), reference if reference is not None else 0.0])
    low = min([0.0, *finite.tolist()])
    span = (top - low) or 1.0
    for p, v in zip(pos, values, strict=True):
        text = f"{v:.3g}" if np.isfinite(v) else "n/a"
        ax.text(max(v, 0.0) if np.isfinite(v) else 0.0, p, " " + text, va="center", fontsize=9)
    ax.set_xlim(low - 0.02 * span if low < 0 else 0.0, top + 0.22 * span)
    ax.set_ylim(len(names) - 0.5, -1.0)  # room above the bars for the reference's name
    if reference is not None and np.isfinite(reference):
        ax.axvline(reference, color="0.3", ls="--", lw=0.9)
        ax.text(
            reference,
            -0.75,
            reference_label,
            ha="center",
            va="center",
            fontsize=8,
            bbox={"fc": "white", "lw": 0, "pad": 1},
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("model")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def model_comparison_figure(
    panels: Sequence[tuple[Mapping[str, float], str, str | None, float | None]],
    title: str | None = None,
    reference_label: str = "oracle",
) -> Figure:
    """Side-by-side :func:`plot_model_scores` panels sharing the model order.

    Parameters
    ----------
    panels : sequence of (scores, xlabel, best, reference)
        One panel each, e.g. MSE over the oracle and Pearson r of every model in a group.
    reference_label : str
        Legend of the reference lines.
    """
    n_models = max((len(p[0]) for p in panels), default=1)
    fig, axes = figure_grid(len(panels), len(panels), panel=(3.1, 0.36 * n_models + 1.5))
    for ax, (scores, xlabel, best, reference) in zip(axes, panels, strict=True):
        plot_model_scores(scores, ax, best, reference, reference_label, xlabel)
    for ax in axes[1:]:
        ax.set_ylabel("")
    return _suptitle(fig, title)


def _suptitle(fig: Figure, title: str | None) -> Figure:
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes with the Agg renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig: Figure, path, dpi: int = 120) -> Path:
    """Write a figure as PNG, atomically."""
    path = Path(path)
    data = figure_png(fig, dpi)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
