"""A ridge read-out of the pooled input, added to a network's output (a linear floor).

At a few hundred genes a convolutional network with early stopping can end above a
cross-validated ridge (issue 22: the ConvNet at 1.2 x ridge's held-out MSE on 400-500
simulated and 100 real genes). :class:`LinearSkip` is a linear model inside the network:
the normalised input ``(n, marks, bins)`` is averaged over ``regions`` equal stretches of
bins, and ``w . pooled + b`` is added to the network's output. Before training,
:func:`histexpr.training.skip.fit_linear_skips` solves it in closed form (ridge, penalty chosen by 5-fold CV,
:func:`histexpr.training.ridge.fit_ridge_cv`) on the member's training examples, and
the network's own read-out starts at zero, so training starts from the ridge fit and the
network learns the residual; the skip's weights are buffers, not trained (weight decay
and the optimiser leave them as fitted). Early stopping then keeps the best validated
weights, so the network ends near ridge or better.

A model saved before this module existed has no skip weights: loading fills them with
zeros, i.e. no skip, and it predicts exactly as before.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class LinearSkip(nn.Module):
    """``w . avgpool(x, regions) + b`` on normalised input (weights are buffers).

    Parameters
    ----------
    n_marks : int
        Input channels.
    regions : int
        Stretches of bins averaged into one feature each (adaptive average pooling).
    """

    def __init__(self, n_marks: int, regions: int):
        super().__init__()
        self.regions = int(regions)
        self.register_buffer("weight", torch.zeros(n_marks * self.regions))
        self.register_buffer("bias", torch.zeros(()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled input, shape ``(n, n_marks * regions)``."""
        return F.adaptive_avg_pool1d(x, self.regions).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, n_marks, n_bins) -> (n, 1)``."""
        return (self.features(x) @ self.weight + self.bias).unsqueeze(1)

    def _load_from_state_dict(self, state, prefix, *args, **kwargs):
        # Weights saved before the skip existed: no skip (zeros), same predictions as then.
        for name in ("weight", "bias"):
            state.setdefault(prefix + name, torch.zeros_like(getattr(self, name)))
        super()._load_from_state_dict(state, prefix, *args, **kwargs)

    @torch.no_grad()
    def set_linear(self, weight: np.ndarray, bias: float) -> None:
        """Set the read-out: ``weight`` (n_marks * regions,) on the pooled input, ``bias``."""
        self.weight.copy_(torch.as_tensor(np.asarray(weight), dtype=self.weight.dtype))
        self.bias.fill_(float(bias))
