"""Mark dropout: train a network that tolerates missing marks.

A model trained with ``mark_dropout = p > 0`` sees, for every example, each
mark replaced by a "missing" input with probability ``p`` (at least one mark is
always kept). The network gets the normalised signal with missing marks set to
zero, followed by one explicit mask channel per mark (1: present, 0: missing,
constant over the bins), so its input has ``2 * n_marks`` channels.

At prediction time a missing mark is marked by NaN in the raw counts (see
:func:`mark_missing`); the same mask then tells the network which marks are
absent. Pure tensor code, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from histexpr.errors import ConfigError


def check_mark_dropout(p: float) -> float:
    """Validate a mark-dropout probability (``0 <= p < 1``) and return it as float."""
    if not isinstance(p, int | float) or not 0.0 <= float(p) < 1.0:
        raise ConfigError(f"mark_dropout must be in [0, 1), got {p!r}")
    return float(p)


def mark_missing(X: np.ndarray, marks: Sequence[str], missing: Sequence[str]) -> np.ndarray:
    """Raw counts with the ``missing`` marks set to NaN (a copy when any is missing).

    Parameters
    ----------
    X : np.ndarray, shape (n, n_marks, n_bins)
    marks : sequence of str, length n_marks
        Names of axis 1.
    missing : sequence of str
        Marks absent from the data (their rows of ``X`` are ignored).
    """
    if not missing:
        return X
    X = np.array(X, dtype=np.float32, copy=True)
    for m in missing:
        X[:, list(marks).index(m)] = np.nan
    return X


class MarkMask(nn.Module):
    """Zero missing marks and append their mask channels; random masking in training.

    Parameters
    ----------
    n_marks : int
    p : float
        Per-example, per-mark probability of masking a present mark while training.
    """

    def __init__(self, n_marks: int, p: float):
        super().__init__()
        self.n_marks = int(n_marks)
        self.p = check_mark_dropout(p)

    def extra_repr(self) -> str:
        return f"n_marks={self.n_marks}, p={self.p}"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        z : torch.Tensor, shape (n, n_marks, n_bins)
            Normalised signal; a mark whose values are NaN counts as missing.

        Returns
        -------
        torch.Tensor, shape (n, 2 * n_marks, n_bins)
            Signal with missing marks zeroed, then the presence mask (1/0) per mark.
        """
        present = ~torch.isnan(z).any(dim=2)
        if self.training and self.p > 0:
            drop = torch.rand(present.shape, device=z.device) < self.p
            keep = present & ~drop
            # Keep at least one mark per example: restore the first present one.
            none_left = ~keep.any(dim=1)
            if none_left.any():
                first = torch.argmax(present.to(torch.int8), dim=1)
                keep[none_left, first[none_left]] = present[none_left, first[none_left]]
            present = keep
        mask = present.to(z.dtype)[:, :, None]
        values = torch.where(mask > 0, torch.nan_to_num(z, nan=0.0), torch.zeros_like(z))
        return torch.cat([values, mask.expand_as(z)], dim=1)
