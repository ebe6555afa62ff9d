"""Fitting the networks' ridge skip paths (:mod:`histexpr.models.linear_skip`) before training.

Each :class:`~histexpr.models.linear_skip.LinearSkip` of a member's network is solved in
closed form on the member's training examples (ridge on the standardised pooled input,
penalty by 5-fold CV over examples, :func:`histexpr.training.ridge.fit_ridge_cv`), and the
network's own output layer is zeroed: training starts at the ridge fit and the network
learns the residual.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from histexpr.models.linear_skip import LinearSkip
from histexpr.training.ridge import fit_ridge_cv

_CHUNK = 8192


def fit_skip(skip: LinearSkip, pooled: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Set ``skip`` to ridge on ``pooled`` (n, p) -> ``y``; returns the chosen alpha."""
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
    skip.set_linear(w, res.intercept - float(np.dot(w, mu)))
    return float(res.alpha)


def fit_linear_skips(module: nn.Module, X, y, seed: int = 0) -> bool:
    """Fit every :class:`LinearSkip` of ``module`` (a Predictor) on raw ``X`` and ``y``.

    ``module`` must have a ``normalizer`` (raw counts -> the network's input); each
    skip's owner has its output layer as ``head`` (ConvNet) or ``out`` (AttentiveChrome),
    which is zeroed. Returns whether a skip was fitted (none for a network without one,
    an input of several arrays, or fewer than 10 examples).
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
        fit_skip(skip, pooled[id(skip)], target, seed)
        head = getattr(owner, "head", None) or getattr(owner, "out", None)
        if isinstance(head, nn.Linear | nn.Conv1d):
            with torch.no_grad():
                head.weight.zero_()
                if head.bias is not None:
                    head.bias.zero_()
    return True
