"""The one batched prediction primitive for torch models.

Used by :meth:`histexpr.train.NeuralEstimator.predict` and by evaluation and
explanation code. It switches the model to eval mode (batch norm uses its
running statistics, dropout is off, so a prediction does not depend on the
batch it happens to be in) and restores the caller's mode and device afterwards.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

DEFAULT_BATCH_SIZE = 1024


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def predict(
    model: nn.Module,
    X: np.ndarray | torch.Tensor,
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Run ``model`` over ``X`` in batches, in eval mode without gradients.

    Parameters
    ----------
    model : nn.Module
        Any module mapping a batch ``(b, ...)`` to ``(b, ...)``.
    X : np.ndarray or torch.Tensor, shape (n, n_marks, n_bins)
        Input; converted to float32.
    batch_size : int, optional
        Examples per forward pass (``None``: the default, 1024).
    device : str or torch.device, optional
        Where to run (default: where the model's parameters are). The model is
        moved back to its original device afterwards.

    Returns
    -------
    np.ndarray, shape (n, ...), float32
        The concatenated outputs.
    """
    batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    original_device = _model_device(model)
    device = torch.device(device) if device is not None else original_device
    was_training = [m.training for m in model.modules()]
    X = torch.as_tensor(X, dtype=torch.float32)
    outs = []
    try:
        model.to(device)
        model.eval()
        with torch.inference_mode():
            for start in range(0, X.shape[0], batch_size):
                batch = X[start : start + batch_size].to(device, non_blocking=True)
                outs.append(model(batch).float().cpu())
    finally:
        model.to(original_device)
        # Restore per-module flags: a caller may have frozen some submodules in eval mode.
        for m, flag in zip(model.modules(), was_training, strict=True):
            m.training = flag
    if not outs:
        with torch.inference_mode():
            probe = model.eval()(torch.zeros((1, *X.shape[1:]), device=original_device))
        for m, flag in zip(model.modules(), was_training, strict=True):
            m.training = flag
        return np.zeros((0, *probe.shape[1:]), dtype=np.float32)
    return torch.cat(outs).numpy().astype(np.float32, copy=False)
