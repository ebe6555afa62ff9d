"""Attention weights of models that have them: the only extraction path.

A network exposes attention by an ``attention(x) -> AttentionMaps`` method on
normalised input (AttentiveChrome). histexpr models are
:class:`~histexpr.models.Predictor` s (normaliser + network), so the normaliser
is applied first. Weights come back as numpy arrays in the same
:class:`~histexpr.models.AttentionMaps` type the network returns.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from histexpr._runtime import model_device, preserved_mode
from histexpr.errors import HistexprError
from histexpr.models import AttentionMaps

__all__ = ["AttentionMaps", "AttentionModel", "attention_maps", "has_attention"]


@runtime_checkable
class AttentionModel(Protocol):
    """A model that exposes its attention weights (AttentiveChrome-like)."""

    def attention(self, x: torch.Tensor) -> AttentionMaps:
        """Return ``AttentionMaps(bins (n, n_marks, n_bins), marks (n, n_marks))``."""
        ...


def _attention_fn(model: nn.Module):
    if isinstance(model, AttentionModel):
        return model.attention
    # histexpr's Predictor = normalizer + net: the net's attention sees normalised input.
    net, norm = getattr(model, "net", None), getattr(model, "normalizer", None)
    if isinstance(net, AttentionModel) and callable(norm):
        return lambda x: net.attention(norm(x))
    return None


def has_attention(model: nn.Module) -> bool:
    """Whether :func:`attention_maps` can read this model's attention."""
    return _attention_fn(model) is not None


def attention_maps(model: nn.Module, X: np.ndarray, batch_size: int = 1024) -> AttentionMaps:
    """Attention weights of ``model`` for raw inputs ``X``.

    Parameters
    ----------
    model : nn.Module
        An :class:`AttentionModel`, or a Predictor whose network is one.
    X : np.ndarray, shape (n, n_marks, n_bins)

    Returns
    -------
    AttentionMaps
        ``bins`` (n, n_marks, n_bins) and ``marks`` (n, n_marks), float32 arrays.
    """
    fn = _attention_fn(model)
    if fn is None:
        raise HistexprError(f"{type(model).__name__} exposes no attention(x) method")
    X = np.asarray(X, dtype=np.float32)
    device = model_device(model)
    bins, marks = [], []
    with preserved_mode(model), torch.no_grad():
        for lo in range(0, len(X), batch_size):
            b, m = fn(torch.as_tensor(X[lo : lo + batch_size], device=device))
            bins.append(b.detach().cpu().numpy())
            marks.append(m.detach().cpu().numpy())
    n_marks, n_bins = X.shape[1:]
    return AttentionMaps(
        np.concatenate(bins).reshape(len(X), n_marks, n_bins).astype(np.float32),
        np.concatenate(marks).reshape(len(X), n_marks).astype(np.float32),
    )
