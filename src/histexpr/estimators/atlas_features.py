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
from histexpr.data.atlas import Atlas, AtlasNotice
from histexpr.data.dataset import HistoneDataset, canonical_gene_ids
from histexpr.estimators.atlas_cells import CellScores, CellState, cell_state, warn_few_genes
from histexpr.estimators.atlas_prior import (
    STAT_NAMES,
    gene_statistics,
    softmax_weights,
    weighted_prior,
)
from histexpr.estimators.baseline_config import RidgeConfig
from histexpr.estimators.baselines import RidgeBaseline
from histexpr.estimators.histone_features import pooled_log1p
from histexpr.estimators.tabular import load_arrays

__all__ = ["AtlasFeatures", "cell_metrics", "fit_scorer"]


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
    temperature. Each cell type's similarity to the reference cells (and, with
    ``temperature`` 0, its own temperature) comes from all its atlas-known genes in
    the input (:mod:`histexpr.estimators.atlas_cells`): from ``data`` itself, or from
    the states a first pass over a streamed file gave (:meth:`cell_states`). No leakage: an example of cell type ``c`` always sees the atlas
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
        Softmax temperature of every cell, or 0: chosen per cell from its genes.
    """

    STATE = "state.npz"

    def __init__(self, atlas, scorer, pool_bins, ref_genes, ref_sum, ref_count, temperature):
        self.atlas, self.scorer, self.pool_bins = atlas, scorer, int(pool_bins)
        self.ref_genes, self.ref_sum, self.ref_count = ref_genes, ref_sum, ref_count
        self.temperature = float(temperature)

    @classmethod
    def fit(cls, train, atlas, scorer, pool_bins, temperature=0.0, P=None):
        """The features of ``train``; returns ``(features, cases of train)``.

        ``temperature`` 0 means: chosen per cell type from its own genes, the same
        way while training and predicting (a temperature learned on the training
        cells does not carry over to an unlike cell type, issue #22). ``P``:
        :func:`pooled_log1p` of ``train.X`` when the caller has it already (the
        callers pass the same array on to :meth:`features`).
        """
        genes = canonical_gene_ids(train.gene)
        if P is None:
            P = pooled_log1p(train.X, pool_bins)
        ref_genes, ref_sum, ref_count = _gene_sums(genes, P)
        feats = cls(atlas, scorer, pool_bins, ref_genes, ref_sum, ref_count, temperature)
        cases = list(feats.cases(train, genes, True))
        return feats, cases

    def _score(self, data: HistoneDataset) -> np.ndarray:
        return self.scorer.predict(data).astype(np.float64)

    def cell_states(self, blocks) -> dict[str, CellState]:
        """:class:`CellState` of every cell type in ``blocks`` (a first pass over an input
        read in blocks), from all its atlas-known genes; one notice for those with too few."""
        seen = CellScores()
        for block in blocks:
            genes = canonical_gene_ids(block.gene)
            score = self._score(block)
            for c in block.cells:
                idx = np.flatnonzero(block.cell == c)
                _, found = self.atlas.without([c]).rows(genes[idx])
                seen.add(c, genes[idx][found], score[idx][found])
        states = {c: self._state(c, *seen.get(c)) for c in seen.cells()}
        warn_few_genes(states, stacklevel=3)
        return states

    def _state(self, cell: str, genes: np.ndarray, score: np.ndarray) -> CellState:
        atlas = self.atlas.without([cell])
        rows, _ = atlas.rows(genes)
        return cell_state(genes, score, atlas.values[rows], self.temperature)

    def cases(self, data: HistoneDataset, genes: np.ndarray, training: bool, states=None):
        """Per cell type: its rows, atlas rows found, reference values, state, scores.

        ``states`` (cell -> :class:`CellState`): those of a first pass over the whole
        input; a cell type without one gets its state from its genes in ``data``.
        """
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
        states = {} if states is None else states
        fresh = {}
        for c in data.cells:
            idx = np.flatnonzero(data.cell == c)
            atlas = self.atlas.without([c])
            rows, found = atlas.rows(genes[idx])
            ref = atlas.values[rows[found]]
            score = self._score(data.subset(idx))
            state = states.get(c)
            if state is None:
                state = fresh[c] = cell_state(
                    genes[idx][found], score[found], ref, self.temperature
                )
            yield c, idx, found, ref, state, score
        warn_few_genes({c: s for c, s in fresh.items() if s.n_genes}, stacklevel=4)

    def features(self, data, genes, training, P_all, histone=None, cases=None, states=None):
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
        states : dict, optional
            Cell states of a first pass over the whole input (:meth:`cell_states`).

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
            cases = list(self.cases(data, genes, training, states))
        for _c, idx, found, ref, state, score in cases:
            if not found.any():
                continue
            sel = idx[found]
            p = weighted_prior(ref, softmax_weights(state.corr, state.temperature))
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

    def departure(self, F: np.ndarray) -> slice:
        """The columns of the departure block in ``F`` of :meth:`features` (whatever the
        width of the histone block before it)."""
        width = self.ref_sum.shape[1]
        start = F.shape[1] - width - len(STAT_NAMES) - 2  # departure, statistics, prior, score
        return slice(start, start + width)

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
        z = load_arrays(directory / cls.STATE)
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


def cell_metrics(features: AtlasFeatures, cases) -> dict:
    """The temperature setting and each training cell's temperature (for ``metrics.json``)."""
    show = lambda t: t if np.isfinite(t) else "inf"  # noqa: E731 - JSON has no inf
    return {
        "temperature": show(features.temperature) if features.temperature > 0 else "per cell",
        "cell_temperatures": {c: show(state.temperature) for c, _, _, _, state, _ in cases},
    }


def fit_scorer(train, alpha, cv_folds):
    """The histone-only ridge whose scores drive the cell similarity of :class:`AtlasFeatures`."""
    return RidgeBaseline(RidgeConfig(alpha, cv_folds)).fit(train)
