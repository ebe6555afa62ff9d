"""The atlas features shared by every atlas kind (:class:`AtlasFeatures`).

Per example of a (possibly new) cell type: the departure of its pooled histone
profile from the gene's average profile in the training cells, the gene's atlas
statistics (mean, spread, quantiles over the reference cells), the
cell-similarity-weighted prior and a histone-only score. Used by atlas-ridge and
atlas-lightgbm (:mod:`histexpr.estimators.atlas`) and atlas-convnet
(:mod:`histexpr.estimators.atlas_neural`), so the three see the same features and
the same no-leakage rules.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from histexpr._runtime import notice
from histexpr.data.atlas import (
    Atlas,
    AtlasNotice,
    choose_temperature,
    gene_statistics,
    similarity_correlations,
    softmax_weights,
    weighted_prior,
)
from histexpr.data.dataset import HistoneDataset, canonical_gene_ids
from histexpr.estimators.baselines import RidgeBaseline, RidgeConfig, _load_arrays, pooled_log1p

__all__ = ["AtlasFeatures", "fit_scorer"]


def _gene_sums(genes: np.ndarray, P: np.ndarray):
    """Sorted unique genes, per-gene sums of ``P`` rows and counts."""
    uniq, inv = np.unique(genes, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(len(uniq)))
    sums = np.add.reduceat(P[order].astype(np.float64), starts, axis=0)
    return uniq, sums.astype(np.float32), np.bincount(inv, minlength=len(uniq))


class AtlasFeatures:
    """Per-example atlas features of one training set: shared by every atlas kind.

    Holds what the features need besides the example itself: the atlas, the
    histone-only scorer whose per-gene scores drive the cell similarity, the
    per-gene sums of the training cells' pooled histone profiles and the softmax
    temperature. No leakage: an example of cell type ``c`` always sees the atlas
    without ``c``'s column; while training its own cell is also left out of its
    gene's reference profile (leave-one-cell-out).

    Parameters
    ----------
    atlas : Atlas
    scorer : RidgeBaseline
        Histone-only model; its predictions are a cell's per-gene activity scores.
    pool_bins : int
        Bins per mark of the pooled histone profile (:func:`pooled_log1p`).
    ref_genes, ref_sum, ref_count : np.ndarray
        Sorted training genes, sums of their pooled profiles (n_genes, n_marks *
        pool_bins) and the number of training examples in each sum.
    temperature : float
    """

    STATE = "state.npz"

    def __init__(self, atlas, scorer, pool_bins, ref_genes, ref_sum, ref_count, temperature):
        self.atlas, self.scorer, self.pool_bins = atlas, scorer, int(pool_bins)
        self.ref_genes, self.ref_sum, self.ref_count = ref_genes, ref_sum, ref_count
        self.temperature = float(temperature)

    @classmethod
    def fit(cls, train, atlas, scorer, pool_bins, temperature=0.0, P=None):
        """The features of ``train``; returns ``(features, cases of train)``.

        ``temperature`` 0 means: choose it leave-one-cell-out (each training cell's
        prior from the other cells' columns) with :func:`choose_temperature`. ``P``:
        :func:`pooled_log1p` of ``train.X`` when the caller has it already (the
        callers pass the same array on to :meth:`features`).
        """
        genes = canonical_gene_ids(train.gene)
        if P is None:
            P = pooled_log1p(train.X, pool_bins)
        ref_genes, ref_sum, ref_count = _gene_sums(genes, P)
        feats = cls(atlas, scorer, pool_bins, ref_genes, ref_sum, ref_count, np.inf)
        cases = list(feats.cases(train, genes, True))
        if temperature > 0:
            feats.temperature = float(temperature)
        else:
            loo = [(corr, ref, train.y[idx][found]) for _, idx, found, ref, corr, _ in cases]
            feats.temperature = choose_temperature(loo)
        return feats, cases

    def cases(self, data: HistoneDataset, genes: np.ndarray, training: bool):
        """Per cell type: its rows, atlas rows found, reference values, correlations, scores."""
        own = [c for c in data.cells if c in set(self.atlas.cells)]
        if not training and own:
            # one notice per call, however many cell types: each is predicted without
            # its own atlas column
            shown = ", ".join(own[:5]) + (f" and {len(own) - 5} more" if len(own) > 5 else "")
            notice(
                f"atlas column(s) of {shown} excluded while predicting them (no leakage)",
                AtlasNotice,
                stacklevel=4,
            )
        for c in data.cells:
            idx = np.flatnonzero(data.cell == c)
            atlas = self.atlas.without([c])
            rows, found = atlas.rows(genes[idx])
            ref = atlas.values[rows[found]]
            score = self.scorer.predict(data.subset(idx)).astype(np.float64)
            corr = similarity_correlations(score[found], ref)
            yield c, idx, found, ref, corr, score

    def features(self, data, genes, training, P_all, histone=None, cases=None):
        """Atlas feature matrix, prior and mask of the rows that use the atlas.

        Parameters
        ----------
        data : HistoneDataset
        genes : np.ndarray, shape (n,), canonical gene ids of ``data``
        training : bool
            ``data`` is the training data (leave its own cell out of the reference
            profiles); otherwise a warning names each excluded atlas column.
        P_all : np.ndarray, shape (n, n_marks * pool_bins)
            :func:`pooled_log1p` of ``data.X``.
        histone : np.ndarray, shape (n, d), optional
            Histone features put first in each row (none for a network that reads
            the signal itself).
        cases : list, optional
            :meth:`cases` of ``data`` when already computed.

        Returns
        -------
        F : np.ndarray, shape (m, d + n_marks * pool_bins + len(STAT_NAMES) + 2), float32
            For the m rows whose gene is in the atlas: histone features, departure
            of the pooled profile from the gene's reference profile, the gene's
            atlas statistics, the prior and the histone score.
        order : np.ndarray, shape (m,), the rows of ``data`` of ``F``
        prior : np.ndarray, shape (n,), float32 (NaN where the atlas is not used)
        used : np.ndarray, shape (n,), bool
        """
        n = len(data)
        used = np.zeros(n, dtype=bool)
        prior = np.full(n, np.nan, dtype=np.float32)
        parts, rows_out = [], []
        if cases is None:
            cases = list(self.cases(data, genes, training))
        for _c, idx, found, ref, corr, score in cases:
            if not found.any():
                continue
            sel = idx[found]
            p = weighted_prior(ref, softmax_weights(corr, self.temperature))
            stats = gene_statistics(ref)
            P = P_all[sel]
            pos = np.clip(np.searchsorted(self.ref_genes, genes[sel]), 0, len(self.ref_genes) - 1)
            known = self.ref_genes[pos] == genes[sel]
            s, k = self.ref_sum[pos], self.ref_count[pos].astype(np.float32)
            if training:  # leave the example's own cell out of its reference profile
                s, k = s - P, k - 1
            known &= k > 0
            ref_p = np.divide(s, np.maximum(k, 1)[:, None])
            delta = np.where(known[:, None], P - ref_p, 0.0).astype(np.float32)
            block = [delta, stats, p[:, None], score[found, None]]
            if histone is not None:
                block.insert(0, histone[sel])
            parts.append(np.hstack(block).astype(np.float32))
            rows_out.append(sel)
            prior[sel], used[sel] = p, True
        order = np.concatenate(rows_out) if rows_out else np.zeros(0, dtype=np.int64)
        F = np.vstack(parts) if parts else np.zeros((0, 0), np.float32)
        return F, order, prior, used

    # -- saving ----------------------------------------------------------------------
    def save(self, directory: Path, scorer: bool = True, **extra) -> None:
        """``atlas.npz``, ``state.npz`` (with ``extra`` arrays) and, with ``scorer``,
        the scorer in ``scorer/`` (off when the scorer is saved elsewhere)."""
        self.atlas.save(directory)
        if scorer:
            self.scorer.save(directory / "scorer")
        np.savez(
            directory / self.STATE,
            ref_genes=self.ref_genes.astype("U"),
            ref_sum=self.ref_sum,
            ref_count=self.ref_count,
            temperature=np.float64(self.temperature),
            **extra,
        )

    @classmethod
    def load(cls, directory: Path, pool_bins: int, scorer=None):
        """The features saved in ``directory`` and the arrays of its ``state.npz``."""
        atlas = Atlas.load(directory)
        if scorer is None:
            scorer = RidgeBaseline.load(directory / "scorer")
        z = _load_arrays(directory / cls.STATE)
        feats = cls(
            atlas,
            scorer,
            pool_bins,
            z["ref_genes"].astype(str),
            z["ref_sum"],
            z["ref_count"],
            float(z["temperature"]),
        )
        return feats, z


def fit_scorer(train, alpha, cv_folds):
    """The histone-only ridge whose scores drive the cell similarity of :class:`AtlasFeatures`."""
    return RidgeBaseline(RidgeConfig(alpha, cv_folds)).fit(train)
