"""diff-ridge and diff-lightgbm: models of each cell's own levels and their difference.

Both read ``[pooled log1p of A, pooled log1p of B, A - B per bin]`` and are fitted on
each training pair in its given orientation (:class:`LevelDiff`); exactness of
``f(B, A) = -f(A, B)`` and the pair plumbing come from :mod:`histexpr.estimators.diff`.
"""

from __future__ import annotations

import numpy as np

from histexpr._runtime import choose_threads
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import HistexprError
from histexpr.estimators.diff import PairModel, pair_examples, parse_pairs
from histexpr.estimators.histone_features import log1p_features, pool_edges, pooled_log1p
from histexpr.estimators.linear import StandardisedRidge, apply_standardised, fit_standardised
from histexpr.estimators.tabular import load_arrays
from histexpr.estimators.trees import load_booster

__all__ = ["DiffLightGBM", "DiffRidge", "LevelDiff"]

#: Share of the training genes on which diff-lightgbm chooses its boosting rounds.
HOLDOUT_FRACTION = 0.2


class LevelDiff(PairModel):
    """A model ``g`` of ``[pooled levels of A, pooled levels of B, A - B per bin]``.

    It is fitted on each training pair in the orientation it was given. The levels
    let it learn how the change of a known pair depends on each cell's own signal
    (the two cells differ in depth and in how their marks read), which a model of
    the difference alone cannot (docs/benchmarks.md: single simulated pairs).
    Antisymmetry stays exact:

    - a training pair ``(A, B)``: ``f(A, B) = g(A, B)`` and ``f(B, A) = -g(A, B)``;
    - any other pair: ``f(A, B) = (g(A, B) - g(B, A)) / 2``.
    """

    #: Saved layout: 1 = models saved before levels were read (antisymmetrised on
    #: every pair), 2 = levels + difference fitted in the training orientation.
    layout_ = 2
    #: Whether ``max_rows`` applies (row subsampling before the features are built).
    subsample_rows = False

    def _features(self, XA: np.ndarray, XB: np.ndarray) -> np.ndarray:
        """``[pooled A, pooled B, A - B]``, shape (n, 2 * n_marks * groups + n_marks * n_bins)."""
        pa, pb = pooled_log1p(XA, self.config.pool_bins), pooled_log1p(XB, self.config.pool_bins)
        return np.concatenate([pa, pb, log1p_features(XA) - log1p_features(XB)], axis=1)

    def _pair_rows(self, data: HistoneDataset, pairs):
        """Features, targets and genes of every pair in its training orientation.

        With :attr:`subsample_rows` and ``max_rows``, each pair keeps the same random
        share of its genes (seeded), so peak memory follows ``max_rows``.
        """
        examples = [pair_examples(data, a, b) for a, b in pairs]
        total = sum(len(g) for g, *_ in examples)
        cap = self.config.max_rows if self.subsample_rows else 0
        keep = cap / total if 0 < cap < total else 1.0
        rng = np.random.default_rng(self.config.seed)
        feats, ys, genes = [], [], []
        for gene, XA, XB, lfc in examples:
            if keep < 1:
                rows = np.sort(rng.choice(len(gene), max(1, round(keep * len(gene))), False))
                gene, XA, XB, lfc = gene[rows], XA[rows], XB[rows], lfc[rows]
            feats.append(self._features(XA, XB))
            ys.append(lfc)
            genes.append(gene)
        return np.concatenate(feats), np.concatenate(ys), np.concatenate(genes)

    def orientation(self, a: str, b: str) -> int:
        if self.layout_ < 2:
            return 0
        known = set(self.pairs_)
        forward, backward = (a, b) in known, (b, a) in known
        return 0 if forward == backward else (1 if forward else -1)

    def _oriented(self, fn, XA, XB, sign: int):
        """``fn`` of the pair's features in its trained orientation (class docstring)."""
        if sign > 0:
            return fn(self._features(XA, XB))
        if sign < 0:
            return -fn(self._features(XB, XA))
        return 0.5 * (fn(self._features(XA, XB)) - fn(self._features(XB, XA)))

    def _predict_pair_rows(self, XA, XB, sign: int = 0) -> np.ndarray:
        return self._oriented(self._predict_rows, XA, XB, sign)

    def _contributions(self, XA, XB, sign: int = 0):
        # a pooled level's share goes equally to the bins it averages, so each
        # position sums its routes (level of A, level of B, difference)
        spread = _pool_spread(XA.shape[1], XA.shape[2], self.config.pool_bins)

        def by_position(F):
            c, base = self._feature_contributions(F)
            q = (c.shape[1] - XA.shape[1] * XA.shape[2]) // 2  # 0: the difference alone
            if q:
                c = c[:, :q] @ spread + c[:, q : 2 * q] @ spread + c[:, 2 * q :]
            return np.column_stack([c, np.full(len(c), base)])

        both = self._oriented(by_position, XA, XB, sign)
        return both[:, :-1], float(np.mean(both[:, -1]))

    def _feature_contributions(self, F) -> tuple[np.ndarray, float]:
        """Per-feature contributions of ``g`` on rows ``F`` and the base they add to."""
        raise NotImplementedError


class DiffRidge(LevelDiff):
    """Ridge on both cells' pooled levels and their difference, blended with the
    difference of a single-cell ridge.

    ``g = lam * direct + (1 - lam) * (s(A) - s(B))``: ``direct`` is a ridge of the
    change on :meth:`_features`; ``s`` a ridge of each cell's own expression on its
    log1p bins, trained on every cell type of the pairs (its difference is linear in
    the per-bin difference, so it adds no input, only a fit of the same bins from
    the levels, which carry more signal when two cells differ little). ``lam`` is
    chosen on out-of-fold predictions over genes, so the model is at least as good
    on held-out genes as either part alone, up to the CV noise. Alphas by CV too.
    """

    kind = "diff-ridge"
    #: The blend weight of the direct model (1.0: models saved before the blend).
    lam_ = 1.0

    def _features(self, XA, XB):
        if self.layout_ < 2:  # saved before levels were read: the difference alone
            return log1p_features(XA) - log1p_features(XB)
        return super()._features(XA, XB)

    def _fit_pairs(self, train, pairs):
        from histexpr.data.splits import gene_fold_of

        F, y, gene = self._pair_rows(train, pairs)
        cells = train.select_cells(sorted({c for p in pairs for c in p}))
        p = train.X.shape[1] * train.X.shape[2]
        n_genes = len(np.unique(gene))
        k = min(self.config.cv_folds, n_genes)
        fold = gene_fold_of(gene, k, seed=self.config.seed)
        # each cell's row of a gene falls in that gene's fold (-1: a gene of no pair)
        pair_genes, first = np.unique(gene, return_index=True)
        at = np.clip(np.searchsorted(pair_genes, cells.gene), 0, len(pair_genes) - 1)
        cell_fold = np.where(pair_genes[at] == cells.gene, fold[first][at], -1)
        direct_oof, single_oof = np.zeros(len(y)), np.zeros(len(y))
        if k >= 2:
            for i in range(k):
                out = fold == i
                direct = self._direct(F[~out], y[~out], gene[~out])
                direct_oof[out] = apply_standardised(F[out], *direct[:4])
                single_oof[out] = F[out, -p:] @ self._single(cells.subset(cell_fold != i))
            grid = np.linspace(0.0, 1.0, 11)
            mse = [np.mean((g * direct_oof + (1 - g) * single_oof - y) ** 2) for g in grid]
            self.lam_ = float(grid[int(np.argmin(mse))])
        self.mu_, self.sd_, self.coef_, self.intercept_, alpha = self._direct(F, y, gene)
        self.single_ = self._single(cells).astype(np.float32)
        self.metrics_ = {"alpha": alpha, "cv_folds": k, "blend_direct": self.lam_}
        return len(y)

    def _direct(self, F, y, gene) -> StandardisedRidge:
        """Ridge of the change on ``F``, alpha by CV over genes."""
        direct, _ = fit_standardised(F, y, gene, self.config.cv_folds, seed=self.config.seed)
        return direct

    def _single(self, cells: HistoneDataset) -> np.ndarray:
        """Per-bin weights ``v`` of a single-cell ridge: ``s(A) - s(B) = v . (A - B)``."""
        from histexpr.estimators.baseline_config import RidgeConfig
        from histexpr.estimators.baselines import RidgeBaseline

        est = RidgeBaseline(RidgeConfig(cv_folds=self.config.cv_folds)).fit(cells)
        return (est.coef_ / est.sd_).astype(np.float64)

    def _predict_rows(self, F):
        direct = apply_standardised(F, self.mu_, self.sd_, self.coef_, self.intercept_)
        if self.lam_ >= 1.0:
            return direct
        return self.lam_ * direct + (1 - self.lam_) * (F[:, -len(self.single_) :] @ self.single_)

    def _feature_contributions(self, F):
        c = self.lam_ * (F - self.mu_) * (self.coef_ / self.sd_)
        if self.lam_ < 1.0:
            p = len(self.single_)
            c[:, -p:] += (1 - self.lam_) * F[:, -p:] * self.single_
        return c, float(self.lam_ * self.intercept_)

    def _state(self) -> dict:
        return {
            "layout": np.int64(self.layout_),
            "mu": self.mu_,
            "sd": self.sd_,
            "coef": self.coef_,
            "intercept": self.intercept_,
            "lam": np.float64(self.lam_),
            "single": self.single_,
        }

    def _set_state(self, z: dict) -> None:
        self.layout_ = int(z.get("layout", 1))
        self.sd_, self.coef_, self.intercept_ = z["sd"], z["coef"], z["intercept"]
        self.mu_ = z.get("mu", np.zeros_like(self.sd_))
        self.lam_ = float(z.get("lam", 1.0))
        self.single_ = z.get("single", np.zeros(0, dtype=np.float32))

    def _save_state(self, directory):
        pairs = np.array([f"{a}:{b}" for a, b in self.pairs_], dtype=str)
        np.savez(directory / "state.npz", pairs=pairs, **self._state())

    def _load_state(self, directory):
        z = load_arrays(directory / "state.npz")
        self._set_state(z)
        self.pairs_ = list(parse_pairs([str(p) for p in z["pairs"]]))


class DiffLightGBM(LevelDiff):
    """Gradient boosting on the residual of :class:`DiffRidge`, on the same features.

    The ridge carries the linear part of the change; boosting adds what it misses,
    for as many rounds as improve held-out genes (none, when nothing does), so the
    model is never worse than the ridge on held-out genes at the rounds chosen,
    whether it sees a few hundred genes or many thousands.
    """

    kind = "diff-lightgbm"
    subsample_rows = True

    def _params(self, n_rows: int) -> dict:
        c = self.config
        # min_child_samples=0: a leaf of at least 1% of the rows, within 5..50, so a
        # few hundred genes still grow trees and thousands are not overfitted
        leaf = c.min_child_samples or int(np.clip(n_rows // 100, 5, 50))
        return {
            "objective": "regression",
            "learning_rate": c.learning_rate,
            "num_leaves": c.num_leaves,
            "min_child_samples": leaf,
            "feature_fraction": 0.5,
            "max_bin": 63,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "seed": c.seed,
            "num_threads": choose_threads(c.n_jobs, n_rows),
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }

    def _fit_pairs(self, train, pairs):
        import lightgbm as lgb

        from histexpr.data.splits import holdout_mask

        c = self.config
        # rounds chosen on held-out genes (a fifth), ridge and boosting both fitted
        # without them; then both refitted on every gene
        genes = np.unique(train.gene)
        held_genes = genes[holdout_mask(genes, HOLDOUT_FRACTION, c.seed, draw="folds")]
        fit_part = train.select_genes(held_genes, exclude=True)
        probe_ridge = DiffRidge(self.config)
        probe_ridge._fit_pairs(fit_part, pairs)
        F, y, gene = self._pair_rows(train, pairs)
        held = np.isin(gene, held_genes)
        params = self._params(int((~held).sum()))
        init_fit, init_held = (
            probe_ridge._predict_rows(F[~held]),
            probe_ridge._predict_rows(F[held]),
        )
        probe = lgb.train(
            params,
            lgb.Dataset(F[~held], y[~held], init_score=init_fit),
            num_boost_round=c.n_estimators,
            valid_sets=[lgb.Dataset(F[held], y[held], init_score=init_held)],
            callbacks=[lgb.early_stopping(c.early_stopping, verbose=False)],
        )
        rounds = int(probe.best_iteration or c.n_estimators)
        boosted = init_held + probe.predict(F[held], num_iteration=rounds)
        if np.mean((boosted - y[held]) ** 2) >= np.mean((init_held - y[held]) ** 2):
            rounds = 0  # boosting did not help on held-out genes: the ridge alone
        self.ridge_ = DiffRidge(self.config)
        self.ridge_._fit_pairs(train, pairs)
        self.booster_ = None
        if rounds:
            init = self.ridge_._predict_rows(F)
            self.booster_ = lgb.train(
                self._params(len(y)), lgb.Dataset(F, y, init_score=init), num_boost_round=rounds
            )
        self.metrics_ = {
            "best_iteration": rounds,
            "n_fit_rows": len(y),
            "ridge_alpha": self.ridge_.metrics_["alpha"],
            "blend_direct": self.ridge_.lam_,
        }
        return len(y)

    def _predict_rows(self, F):
        out = self.ridge_._predict_rows(F) if self.ridge_ is not None else 0.0
        if self.booster_ is None:
            return out
        return out + self.booster_.predict(
            F, num_threads=choose_threads(self.config.n_jobs, len(F))
        )

    def _feature_contributions(self, F):
        c, base = np.zeros(F.shape, dtype=np.float64), 0.0
        if self.ridge_ is not None:
            c, base = self.ridge_._feature_contributions(F)
        if self.booster_ is not None:
            threads = choose_threads(self.config.n_jobs, len(F))
            shap = self.booster_.predict(F, pred_contrib=True, num_threads=threads)
            c, base = c + shap[:, :-1], base + float(np.mean(shap[:, -1]))
        return c, base

    def _save_state(self, directory):
        if self.booster_ is not None:
            self.booster_.save_model(str(directory / "model.txt"))
        (directory / "pairs.txt").write_text("".join(f"{a}:{b}\n" for a, b in self.pairs_))
        np.savez(directory / "ridge.npz", **self.ridge_._state())

    def _load_state(self, directory):
        if not (directory / "pairs.txt").is_file():
            raise HistexprError(f"{directory}: model directory is missing pairs.txt")
        self.pairs_ = list(parse_pairs((directory / "pairs.txt").read_text().split()))
        self.ridge_, self.booster_, self.layout_ = None, None, 1
        if (directory / "ridge.npz").is_file():
            self.ridge_ = DiffRidge(self.config)
            self.ridge_._set_state(load_arrays(directory / "ridge.npz"))
            self.layout_ = self.ridge_.layout_
        elif not (directory / "model.txt").is_file():
            raise HistexprError(f"{directory}: model directory is missing model.txt")
        if (directory / "model.txt").is_file():
            self.booster_ = load_booster(directory, "model.txt")


def _pool_spread(n_marks: int, n_bins: int, pool_bins: int) -> np.ndarray:
    """Matrix (n_marks * groups, n_marks * n_bins) spreading a pooled value over its bins."""
    edges = pool_edges(n_bins, pool_bins)
    groups = len(edges) - 1
    out = np.zeros((n_marks * groups, n_marks * n_bins))
    for m in range(n_marks):
        for g in range(groups):
            lo, hi = edges[g], edges[g + 1]
            out[m * groups + g, m * n_bins + lo : m * n_bins + hi] = 1.0 / (hi - lo)
    return out
