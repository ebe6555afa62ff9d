"""Ridge regression with its penalty chosen by cross-validation over genes, in closed form.

A fixed penalty cannot suit every training size: ``alpha=1`` on 500 standardised
features over-fits 200 genes (test MSE above the variance of y) and barely matters
for 800,000 examples. :func:`fit_ridge_cv` chooses ``alpha`` from a log grid by
K-fold cross-validation whose folds are *genes* (all cell types of a gene fall in
one fold): the same gene in another cell type is nearly a copy of the example, so
leave-one-example-out (and GCV) would reward too little shrinkage whenever the
training data has several cell types, and the held-out genes are what ridge is
scored on.

Every fold is solved from sufficient statistics, as RidgeCV does from one SVD: one
pass over the data accumulates, per fold, the Gram matrix ``Z'Z``, ``Z'1``, ``Z'y``,
``y'y`` and the count. The training part of a fold is the total minus the fold; one
eigen-decomposition of its (centred) Gram matrix gives the coefficients for every
alpha of the grid at once, and the held-out squared error of each follows from the
fold's own statistics (a quadratic form), without a second pass over the data.
Cost: ``O(n p^2)`` for the pass plus ``O(K p^3)`` for the decompositions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from histexpr._runtime import choose_threads
from histexpr.data.splits import gene_fold_of

#: Relative penalty grid: ``alpha = lam * n_train`` for these ``lam`` (the Gram matrix of
#: standardised features grows with n, so a relative grid spans the same range at any n).
RELATIVE_GRID = np.logspace(-6, 3, 37)
_CHUNK = 32768


class RidgeCVResult(NamedTuple):
    """Outcome of :func:`fit_ridge_cv` (coefficients on the standardised features)."""

    coef: np.ndarray  # (p,) float64
    intercept: float
    alpha: float
    alphas: np.ndarray  # (n_alphas,) the grid that was searched
    cv_mse: np.ndarray  # (n_alphas,) cross-validated MSE of each alpha
    cv_mse_mean: float  # cross-validated MSE of predicting the training mean
    folds: int


def _moments(Z_of, n: int, y: np.ndarray, fold: np.ndarray, k: int):
    """Per-fold ``Z'Z``, ``Z'1``, ``Z'y``, ``y'y``, ``1'y`` and counts, in float64."""
    first = Z_of(slice(0, 1))
    p = first.shape[1]
    G = np.zeros((k, p, p))
    s = np.zeros((k, p))
    b = np.zeros((k, p))
    yy = np.zeros(k)
    ys = np.zeros(k)
    cnt = np.zeros(k)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        Z = Z_of(sl)
        yc = y[sl]
        fc = fold[sl]
        for f in np.unique(fc):
            m = fc == f
            Zf, yf = Z[m], yc[m]
            G[f] += Zf.T @ Zf
            s[f] += Zf.sum(axis=0)
            b[f] += Zf.T @ yf
            yy[f] += yf @ yf
            ys[f] += yf.sum()
            cnt[f] += m.sum()
    return G, s, b, yy, ys, cnt


def _solve_all(G, s, b, ys, cnt, alphas):
    """Coefficients for every alpha of a centred ridge fit from raw moments.

    Returns (coefs (p, n_alphas), x_mean (p,), y_mean).
    """
    xm = s / cnt
    ym = ys / cnt
    Gc = G - cnt * np.outer(xm, xm)
    bc = b - cnt * xm * ym
    evals, V = np.linalg.eigh(Gc)
    evals = np.clip(evals, 0.0, None)
    proj = V.T @ bc
    coefs = V @ (proj[:, None] / (evals[:, None] + alphas[None, :]))
    return coefs, xm, ym


def fit_ridge_cv(
    Z_of,
    n: int,
    y: np.ndarray,
    gene: np.ndarray,
    folds: int = 5,
    alpha: float | None = None,
    seed: int = 0,
) -> RidgeCVResult:
    """Ridge regression with ``alpha`` chosen by gene-grouped K-fold CV.

    Parameters
    ----------
    Z_of : callable
        ``Z_of(slice) -> np.ndarray (rows, p) float64``: standardised features of a
        block of rows (so the data need not be held standardised in memory).
    n : int
        Number of examples.
    y : np.ndarray, shape (n,)
    gene : np.ndarray, shape (n,), str
        Gene ids; folds never split a gene.
    folds : int
        Number of folds (reduced to the number of genes when there are fewer).
    alpha : float or None
        A fixed penalty (no search) when given.
    seed : int
        Seed of the gene-to-fold assignment.

    Returns
    -------
    RidgeCVResult
    """
    from threadpoolctl import threadpool_limits

    p = Z_of(slice(0, 1)).shape[1]
    # small problems: one BLAS thread (threads only add overhead, and oversubscribe
    # a shared machine badly: 20x slower seen with 2 cores and several processes);
    # large ones: the cores other processes leave free
    threads = 1 if n * p * p < 2e9 else choose_threads()
    with threadpool_limits(limits=threads, user_api="blas"):
        return _fit_ridge_cv(Z_of, n, y, gene, folds, alpha, seed)


def _fit_ridge_cv(Z_of, n, y, gene, folds, alpha, seed) -> RidgeCVResult:
    y = np.asarray(y, dtype=np.float64)
    n_genes = len(np.unique(gene))
    k = int(min(folds, n_genes))
    if alpha is not None or k < 2:
        alphas = np.asarray([alpha if alpha is not None else float(n)], dtype=np.float64)
        fold = np.zeros(n, dtype=np.int64)
        G, s, b, yy, ys, cnt = _moments(Z_of, n, y, fold, 1)
        coefs, xm, ym = _solve_all(G[0], s[0], b[0], ys[0], cnt[0], alphas)
        nan = np.full(1, np.nan)
        return RidgeCVResult(coefs[:, 0], float(ym - xm @ coefs[:, 0]), float(alphas[0]),
                             alphas, nan, float("nan"), 1)  # fmt: skip
    fold = gene_fold_of(gene, k, seed)
    G, s, b, yy, ys, cnt = _moments(Z_of, n, y, fold, k)
    Gt, st, bt, yst, cntt = G.sum(0), s.sum(0), b.sum(0), ys.sum(), cnt.sum()
    sse = np.zeros(len(RELATIVE_GRID))
    sse_mean = 0.0
    for f in range(k):
        n_tr = cntt - cnt[f]
        alphas = RELATIVE_GRID * n_tr
        C, xm, ym = _solve_all(Gt - G[f], st - s[f], bt - b[f], yst - ys[f], n_tr, alphas)
        # Held-out SSE of y - ym - (Z - xm) c from fold f's own moments.
        Zty = b[f] - s[f] * ym - xm * ys[f] + cnt[f] * xm * ym
        ZtZ = G[f] - np.outer(s[f], xm) - np.outer(xm, s[f]) + cnt[f] * np.outer(xm, xm)
        yty = yy[f] - 2 * ym * ys[f] + cnt[f] * ym**2
        sse += yty - 2 * (C.T @ Zty) + (C * (ZtZ @ C)).sum(axis=0)
        sse_mean += yty
    cv_mse = sse / cntt
    best = int(np.argmin(cv_mse))
    alphas = RELATIVE_GRID * cntt
    coefs, xm, ym = _solve_all(Gt, st, bt, yst, cntt, alphas[best : best + 1])
    coef = coefs[:, 0]
    return RidgeCVResult(
        coef=coef,
        intercept=float(ym - xm @ coef),
        alpha=float(alphas[best]),
        alphas=alphas,
        cv_mse=cv_mse,
        cv_mse_mean=float(sse_mean / cntt),
        folds=k,
    )
