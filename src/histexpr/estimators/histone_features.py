"""Features of the histone tensor shared by the non-neural kinds.

Every non-neural kind reads the binned signal through these: log1p counts of every
bin (:func:`log1p_features`), log1p counts pooled into groups of bins
(:func:`pooled_log1p`, :func:`pool_edges`) and the bins most correlated with the
target (:func:`select_correlated_features`, the random forest's selection).
"""

from __future__ import annotations

import numpy as np

__all__ = ["log1p_features", "pool_edges", "pooled_log1p", "select_correlated_features"]


def log1p_features(X: np.ndarray) -> np.ndarray:
    """Flatten log1p counts.

    Parameters
    ----------
    X : np.ndarray, shape (n_examples, n_marks, n_bins)

    Returns
    -------
    np.ndarray, shape (n_examples, n_marks * n_bins), float32
    """
    X = np.asarray(X, dtype=np.float32)
    return np.log1p(X.reshape(X.shape[0], -1))


def pool_edges(n_bins: int, pool_bins: int) -> np.ndarray:
    """Bin edges of ``min(pool_bins, n_bins)`` near-equal groups of ``n_bins`` bins.

    Returns
    -------
    np.ndarray, shape (groups + 1,), int
    """
    return np.linspace(0, n_bins, min(pool_bins, n_bins) + 1).astype(int)


def pooled_log1p(X: np.ndarray, pool_bins: int) -> np.ndarray:
    """log1p counts averaged over ``pool_bins`` equal groups of bins per mark
    (:func:`pool_edges`).

    Parameters
    ----------
    X : np.ndarray, shape (n, n_marks, n_bins)

    Returns
    -------
    np.ndarray, shape (n, n_marks * groups), float32
    """
    L = np.log1p(np.asarray(X, dtype=np.float32))
    edges = pool_edges(L.shape[2], pool_bins)
    pooled = np.add.reduceat(L, edges[:-1], axis=2) / np.diff(edges)[None, None, :]
    return pooled.reshape(L.shape[0], -1).astype(np.float32)


def select_correlated_features(F: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` feature columns with the largest |Pearson r| with ``y``.

    Parameters
    ----------
    F : np.ndarray, shape (n_examples, n_features)
    y : np.ndarray, shape (n_examples,)
    k : int

    Returns
    -------
    np.ndarray, shape (k,), sorted column indices
    """
    Fc = F - F.mean(axis=0)
    yc = y - y.mean()
    denom = np.sqrt((Fc**2).sum(axis=0) * (yc**2).sum())
    r = np.divide(Fc.T @ yc, denom, out=np.zeros(F.shape[1]), where=denom > 0)
    k = min(k, F.shape[1])
    return np.sort(np.argsort(-np.abs(r), kind="stable")[:k])
