"""The one batched prediction primitive for torch models.

Used by :meth:`histexpr.estimators.neural.NeuralEstimator.predict` and by evaluation and
explanation code. It runs the model in eval mode (batch norm uses its running
statistics, dropout is off, so a prediction does not depend on the batch it
happens to be in) and leaves the caller's module untouched: mode, device and
parameters are as before.

Speed (see ``docs/benchmarks.md``): by default an eval-mode copy with every
``Conv1d -> BatchNorm1d`` pair folded into one convolution runs
(:func:`histexpr.models.fuse.fold_batchnorm`; same outputs up to float
rounding), in batches of 1024. ``precision="bf16"`` runs under bfloat16
autocast, about twice as fast on CPUs with AVX512-BF16 or AMX, at about 3
significant digits.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from histexpr._runtime import model_device, preserved_mode, torch_threads
from histexpr.errors import ConfigError

#: Examples per forward pass; large batches amortise per-call overhead on CPU.
DEFAULT_BATCH_SIZE = 1024

#: Accepted precision names (Lightning's spellings included) -> autocast dtype or None.
PRECISIONS: dict[str, torch.dtype | None] = {
    "32": None,
    "32-true": None,
    "fp32": None,
    "bf16": torch.bfloat16,
    "bf16-mixed": torch.bfloat16,
    "bf16-true": torch.bfloat16,
}


def autocast_dtype(precision: str | None) -> torch.dtype | None:
    """The autocast dtype for a precision name (None: full float32).

    Raises
    ------
    ConfigError
        For an unknown name.
    """
    key = "32" if precision is None else str(precision).lower()
    if key not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[key]


def inference_module(model: nn.Module, fuse: bool = True) -> nn.Module:
    """An eval-mode module computing ``model.eval()``'s function, for prediction only.

    With ``fuse`` and batch norm present, a folded copy
    (:func:`~histexpr.models.fuse.fold_batchnorm`); otherwise ``model`` itself.
    """
    if fuse and any(isinstance(m, nn.BatchNorm1d) for m in model.modules()):
        from histexpr.models.fuse import fold_batchnorm

        return fold_batchnorm(model)
    return model


def _as_input(X):
    if isinstance(X, tuple | list):
        return tuple(_as_input(x) for x in X)
    return torch.as_tensor(X, dtype=torch.float32)


def _rows(X, start: int, stop: int, device):
    if isinstance(X, tuple):
        return tuple(_rows(x, start, stop, device) for x in X)
    return X[start:stop].to(device, non_blocking=True)


def predict(
    model: nn.Module,
    X,
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    precision: str | None = None,
    fuse: bool = True,
) -> np.ndarray:
    """Run ``model`` over ``X`` in batches, in eval mode without gradients.

    Parameters
    ----------
    model : nn.Module
        Any module mapping a batch ``(b, ...)`` to ``(b, ...)``.
    X : np.ndarray or torch.Tensor, shape (n, n_marks, n_bins), or a tuple of them
        Input; converted to float32. A model of several inputs (histone signal and
        side features, the two cells of a pair) takes a tuple of row-aligned
        inputs and is called as ``model(*batch)``.
    batch_size : int, optional
        Examples per forward pass (``None``: the default, 1024).
    device : str or torch.device, optional
        Where to run (default: where the model's parameters are). The model is
        moved back to its original device afterwards.
    precision : str, optional
        "32" (default) or "bf16" (bfloat16 autocast); Lightning's names
        ("32-true", "bf16-mixed") are accepted too.
    fuse : bool
        Fold batch norm into the convolutions (a copy; ``model`` is not changed).

    Returns
    -------
    np.ndarray, shape (n, ...), float32
        The concatenated outputs.
    """
    batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    dtype = autocast_dtype(precision)
    original_device = model_device(model)
    device = torch.device(device) if device is not None else original_device
    X = _as_input(X)
    n = len(X[0]) if isinstance(X, tuple) else X.shape[0]
    outs = []
    cast = (
        torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    )
    # The caller's module keeps its mode and device; the runner may be a folded copy.
    with preserved_mode(model, device=original_device), torch_threads():
        runner = inference_module(model, fuse)
        runner.to(device)
        runner.eval()
        with torch.inference_mode(), cast:
            if n == 0:
                parts = X if isinstance(X, tuple) else (X,)
                probe = runner(*(torch.zeros((1, *x.shape[1:]), device=device) for x in parts))
                return np.zeros((0, *probe.shape[1:]), dtype=np.float32)
            for start in range(0, n, batch_size):
                batch = _rows(X, start, start + batch_size, device)
                out = runner(*batch) if isinstance(batch, tuple) else runner(batch)
                outs.append(out.float().cpu())
    return torch.cat(outs).numpy().astype(np.float32, copy=False)
