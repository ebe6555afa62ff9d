"""The atlas maths of the atlas kinds: gene statistics and the cell-similarity prior.

What an expression atlas (:class:`histexpr.data.atlas.Atlas`) tells a model about
a gene in a cell type, in pure numpy:

- :func:`gene_statistics`: the gene's mean, spread and quantiles over the reference
  cells (features of every atlas kind);
- :func:`similarity_correlations`: how much a cell type's per-gene profile (its
  histone score) departs from the reference mean like each reference cell does;
- :func:`softmax_weights` and :func:`weighted_prior`: the prior, the reference
  cells' expression averaged with ``softmax(corr / T)``;
- :func:`choose_temperature`: the ``T`` whose prior best predicts cells held out of
  the reference, leave-one-cell-out.

Per cell type state (its similarity and temperature from all its genes) is built on
these in :mod:`histexpr.estimators.atlas_cells`, the features of a model in
:mod:`histexpr.estimators.atlas_features`. No leakage: callers pass the reference
without the predicted cell's own column (:meth:`histexpr.data.atlas.Atlas.without`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "STAT_NAMES",
    "TEMPERATURES",
    "choose_temperature",
    "gene_statistics",
    "similarity_correlations",
    "softmax_weights",
    "weighted_prior",
]

#: Names of the columns of :func:`gene_statistics`.
STAT_NAMES: tuple[str, ...] = ("mean", "sd", "min", "q10", "q25", "q50", "q75", "q90", "max")
#: Softmax temperatures tried by :func:`choose_temperature` (``inf`` = plain mean).
TEMPERATURES: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, float("inf"))


def gene_statistics(values: np.ndarray) -> np.ndarray:
    """Mean, spread and quantiles of each gene over the reference cells (NaN-aware).

    Parameters
    ----------
    values : np.ndarray, shape (n, n_ref)

    Returns
    -------
    np.ndarray, shape (n, len(STAT_NAMES)), float32; rows with no finite value are NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    out = np.full((v.shape[0], len(STAT_NAMES)), np.nan)
    ok = np.isfinite(v).any(axis=1) if v.shape[1] else np.zeros(v.shape[0], bool)
    levels = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
    full = np.isfinite(v).all(axis=1) if v.shape[1] else ok
    if full.any():  # complete rows: the vectorised quantiles (nanquantile loops per row)
        w = v[full]
        out[full, 0], out[full, 1] = w.mean(axis=1), w.std(axis=1)
        out[full, 2:] = np.quantile(w, levels, axis=1).T
    gaps = ok & ~full
    if gaps.any():
        w = v[gaps]
        out[gaps, 0], out[gaps, 1] = np.nanmean(w, axis=1), np.nanstd(w, axis=1)
        out[gaps, 2:] = np.nanquantile(w, levels, axis=1).T
    return out.astype(np.float32)


def similarity_correlations(score: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """How much a cell type's per-gene profile resembles each reference cell's.

    Both the profile and the reference columns are centred on each gene's
    reference mean, so the correlation measures cell-type-specific departures and
    not the (shared) gene-to-gene differences.

    Parameters
    ----------
    score : np.ndarray, shape (n_genes,)
        A per-gene activity estimate of the new cell type from its histone signal.
    ref : np.ndarray, shape (n_genes, n_ref)
        The reference cells' expression of the same genes (NaN where unknown).

    Returns
    -------
    np.ndarray, shape (n_ref,), Pearson correlations (0 where undefined).
    """
    ref = np.asarray(ref, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    if ref.shape[1] == 0:
        return np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(ref, axis=1)
    rows = np.isfinite(mean) & np.isfinite(score)
    d = score[rows] - mean[rows]
    r = ref[rows] - mean[rows, None]
    out = np.zeros(ref.shape[1])
    for k in range(ref.shape[1]):
        m = np.isfinite(r[:, k])
        if m.sum() < 3:
            continue
        a, b = d[m] - d[m].mean(), r[m, k] - r[m, k].mean()
        den = np.sqrt((a * a).sum() * (b * b).sum())
        out[k] = (a @ b) / den if den > 0 else 0.0
    return out


def softmax_weights(corr: np.ndarray, temperature: float) -> np.ndarray:
    """Weights over reference cells: ``softmax(corr / T)``; uniform for ``T = inf``."""
    corr = np.asarray(corr, dtype=np.float64)
    if len(corr) == 0:
        return corr
    if not np.isfinite(temperature):
        return np.full(len(corr), 1.0 / len(corr))
    z = corr / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def weighted_prior(ref: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The reference cells' expression of each gene averaged with ``weights``.

    Weights are renormalised over each gene's known (finite) entries.

    Returns
    -------
    np.ndarray, shape (n_genes,), float32; NaN for genes with no known entry.
    """
    ref = np.asarray(ref, dtype=np.float64)
    known = np.isfinite(ref)
    w = known * np.asarray(weights, dtype=np.float64)[None, :]
    tot = w.sum(axis=1)
    num = (np.where(known, ref, 0.0) * w).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(tot > 0, num / tot, np.nan)
    return out.astype(np.float32)


def choose_temperature(cases, temperatures: Sequence[float] = TEMPERATURES) -> float:
    """The softmax temperature whose prior best predicts held-out cells (mean MSE).

    Parameters
    ----------
    cases : iterable of (corr, ref, y)
        One per training cell type, computed leave-one-cell-out: the correlations
        of that cell with the other reference cells, their expression of its genes
        (n_genes, n_ref) and its true expression (n_genes,).
    """
    cases = [c for c in cases if len(c[0])]
    if not cases:
        return float("inf")
    losses = []
    for t in temperatures:
        errs = []
        for corr, ref, y in cases:
            p = weighted_prior(ref, softmax_weights(corr, t))
            m = np.isfinite(p)
            if m.any():
                errs.append(float(np.mean((p[m] - y[m]) ** 2)))
        losses.append(np.mean(errs) if errs else np.inf)
    return float(temperatures[int(np.argmin(losses))])
