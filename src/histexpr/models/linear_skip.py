"""A ridge read-out of the pooled input, added to a network's output (a linear floor).

At a few hundred genes a convolutional network with early stopping can end above a
cross-validated ridge (issue 22: the ConvNet at 1.2 x ridge's held-out MSE on 400-500
simulated and 100 real genes). :class:`LinearSkip` is a linear model inside the network:
the normalised input ``(n, marks, bins)`` is averaged over ``regions`` equal stretches of
bins, and ``w . pooled + b`` is added to the network's output. Before training,
:func:`fit_linear_skips` solves it in closed form (ridge, penalty chosen by 5-fold CV,
:func:`histexpr.estimators.linear.fit_ridge_cv`) on the member's training examples, and
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

_CHUNK = 8192


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
    def fit(self, pooled: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
        """Set the weights to ridge on ``pooled`` (n, p) -> ``y``; returns the chosen alpha."""
        from histexpr.estimators.linear import fit_ridge_cv

        pooled = np.asarray(pooled, dtype=np.float64)
        mu = pooled.mean(axis=0)
        sd = pooled.std(axis=0)
        sd[sd < 1e-8] = 1.0
        n = len(pooled)
        rows = np.arange(n).astype(str)  # one "gene" per row: folds over examples
        res = fit_ridge_cv(
            lambda s: (pooled[s] - mu) / sd, n, np.asarray(y, np.float64), rows, seed=seed
        )
        w = res.coef / sd
        self.weight.copy_(torch.as_tensor(w, dtype=self.weight.dtype))
        self.bias.fill_(float(res.intercept - np.dot(w, mu)))
        return float(res.alpha)


def fit_linear_skips(module: nn.Module, X, y, seed: int = 0) -> bool:
    """Fit every :class:`LinearSkip` of ``module`` (a Predictor) on raw ``X`` and ``y``.

    ``module`` must be a :class:`~histexpr.models.normalize.Predictor` (its normaliser
    maps raw counts to the network's input); each skip's owner has its output layer as
    ``head`` (ConvNet) or ``out`` (AttentiveChrome), which is zeroed so training starts at the ridge fit. Returns
    whether a skip was fitted (none for a network without one or a non-tensor input).
    """
    skips = [(m, s) for m in module.modules() for s in m.children() if isinstance(s, LinearSkip)]
    normalizer = getattr(module, "normalizer", None)
    if not skips or normalizer is None or not isinstance(X, torch.Tensor) or len(X) < 10:
        return False
    was_training = normalizer.training
    normalizer.eval()  # no mark dropout while computing the features
    try:
        with torch.no_grad():
            pooled = {
                id(s): np.concatenate(
                    [
                        s.features(normalizer(X[i : i + _CHUNK].float())).double().numpy()
                        for i in range(0, len(X), _CHUNK)
                    ]
                )
                for _, s in skips
            }
    finally:
        normalizer.train(was_training)
    target = np.asarray(y, dtype=np.float64)
    for owner, skip in skips:
        skip.fit(pooled[id(skip)], target, seed)
        head = getattr(owner, "head", None) or getattr(owner, "out", None)
        if isinstance(head, nn.Linear | nn.Conv1d):
            with torch.no_grad():
                head.weight.zero_()
                if head.bias is not None:
                    head.bias.zero_()
    return True
