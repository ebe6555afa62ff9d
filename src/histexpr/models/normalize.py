"""Input normalisation learned from training data and stored with the model.

Read counts differ in scale between marks and between experiments (sequencing
depth). Every neural model therefore sees ``(log1p(x) - mean_m) / std_m`` where
``mean_m`` and ``std_m`` are per-mark statistics of ``log1p`` counts over the
*training* data. They live in buffers, so they are saved with the weights and an
unseen cell type is transformed exactly like the training data. With mark
dropout (:mod:`histexpr.models.markmask`) the normaliser also masks marks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from histexpr.models.markmask import MarkMask, check_mark_dropout

#: Floor on the per-mark standard deviation, so a constant mark does not blow up.
MIN_STD = 1e-3


class NormStats(NamedTuple):
    """Per-mark statistics of ``log1p`` counts.

    Attributes
    ----------
    mean : np.ndarray, shape (n_marks,), float32
    std : np.ndarray, shape (n_marks,), float32
    """

    mean: np.ndarray
    std: np.ndarray


def norm_stats(X: np.ndarray, chunk: int = 65536) -> NormStats:
    """Per-mark mean and standard deviation of ``log1p(X)``.

    Parameters
    ----------
    X : np.ndarray, shape (n_examples, n_marks, n_bins)
        Non-negative read counts of the training data.
    chunk : int
        Examples per chunk; bounds the temporary memory for large data.

    Returns
    -------
    NormStats
    """
    n_marks = X.shape[1]
    total = np.zeros(n_marks, dtype=np.float64)
    total_sq = np.zeros(n_marks, dtype=np.float64)
    count = 0
    for start in range(0, X.shape[0], chunk):
        part = np.log1p(np.maximum(np.asarray(X[start : start + chunk], np.float64), 0.0))
        total += part.sum(axis=(0, 2))
        total_sq += (part**2).sum(axis=(0, 2))
        count += part.shape[0] * part.shape[2]
    count = max(count, 1)
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0)
    std = np.maximum(np.sqrt(var), MIN_STD)
    return NormStats(mean.astype(np.float32), std.astype(np.float32))


class InputNormalizer(nn.Module):
    """``(log1p(max(x, 0)) - mean) / std`` per mark, with statistics in buffers.

    Parameters
    ----------
    n_marks : int
        Number of input marks; the statistics start as identity (mean 0, std 1).
    mark_dropout : float
        When > 0, a :class:`~histexpr.models.markmask.MarkMask` follows the transform:
        missing (NaN) marks become zeros plus a mask channel per mark, and while
        training each mark is masked with this probability. The network then takes
        :attr:`n_outputs` = ``2 * n_marks`` channels.
    """

    def __init__(self, n_marks: int, mark_dropout: float = 0.0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, n_marks, 1))
        self.register_buffer("std", torch.ones(1, n_marks, 1))
        p = check_mark_dropout(mark_dropout)
        self.mark_mask = MarkMask(n_marks, p) if p > 0 else None

    @property
    def n_outputs(self) -> int:
        """Channels of the transformed input (what the network must accept)."""
        n = self.mean.shape[1]
        return 2 * n if self.mark_mask is not None else n

    def set_stats(self, stats: NormStats) -> InputNormalizer:
        """Copy ``stats`` into the buffers (in place) and return self."""
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(stats.mean, dtype=self.mean.dtype).view(1, -1, 1))
            self.std.copy_(torch.as_tensor(stats.std, dtype=self.std.dtype).view(1, -1, 1))
        return self

    def stats(self) -> NormStats:
        """The current statistics as numpy arrays."""
        return NormStats(
            self.mean.detach().cpu().numpy().reshape(-1).copy(),
            self.std.detach().cpu().numpy().reshape(-1).copy(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : torch.Tensor, shape (n, n_marks, n_bins)
            Raw read counts.

        Returns
        -------
        torch.Tensor, shape (n, n_outputs, n_bins)
        """
        z = (torch.log1p(torch.clamp(x, min=0.0)) - self.mean) / self.std
        return z if self.mark_mask is None else self.mark_mask(z)


class Predictor(nn.Module):
    """A network behind the input normaliser; the top-level module of every neural kind.

    Parameters
    ----------
    normalizer : InputNormalizer
    net : nn.Module
        Maps normalised input ``(n, n_marks, n_bins)`` to ``(n,)`` or ``(n, 1)``.
    """

    def __init__(self, normalizer: InputNormalizer, net: nn.Module):
        super().__init__()
        self.normalizer = normalizer
        self.net = net

    def forward(self, x: torch.Tensor, *side: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : torch.Tensor, shape (n, n_marks, n_bins)
            Raw read counts.
        *side : torch.Tensor, shape (n, ...)
            Further inputs of a network of several inputs (e.g. atlas features),
            passed to it unnormalised.

        Returns
        -------
        torch.Tensor, shape (n,) or (n, k) for multi-output nets
        """
        out = self.net(self.normalizer(x), *side)
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        return out
