"""Differential expression between two cell types (DeepDiffChrome's task).

The target of a pair of cell types ``(A, B)`` on a gene is the log fold change
``log2(eA + 1) - log2(eB + 1)``, i.e. ``yA - yB`` on the data's own transform
(RPKM for Roadmap data, read counts for DeepDiff's files: the model contract
records which). One model serves every pair: it is trained on pairs drawn among
the training cell types (all pairs, up to ``max_pairs``, or the pairs given),
each in both orientations, so it applies to pairs it never saw and predicts
``f(B, A) = -f(A, B)`` up to the fit.

Kinds:

- ``diff-ridge``: ridge on the difference of the two cells' log1p signals (gene-grouped
  CV chooses alpha, :func:`histexpr.estimators.linear.fit_ridge_cv`); antisymmetric by
  construction;
- ``diff-lightgbm``: gradient boosting on both cells' pooled log1p signals and their
  difference, early-stopped on held-out genes, rows subsampled to ``max_rows``;
  antisymmetrised at prediction, ``(g(A, B) - g(B, A)) / 2``;
- ``diff-convnet`` (:mod:`histexpr.estimators.diff_neural`): a siamese ConvNet, one
  trunk on each cell, the embeddings' difference and concatenation into the head,
  auxiliary heads for each cell's own expression.

Both explain a pair's change per gene, mark and bin (:meth:`_Diff.attribute_pair`):
ridge as ``coef * feature`` (exact), LightGBM by its SHAP values (``pred_contrib``).

The baseline every differential model must beat is the difference of two
single-cell predictions of any trained histexpr model: :func:`diff_from_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import NamedTuple

import numpy as np

from histexpr._runtime import choose_threads
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators.baselines import (
    _Baseline,
    _load_arrays,
    log1p_features,
    pool_edges,
    pooled_log1p,
)

__all__ = [
    "DiffConfig",
    "DiffLightGBM",
    "DiffRidge",
    "PairAttribution",
    "PairPrediction",
    "diff_from_model",
    "pair_examples",
    "pair_rows",
    "parse_pairs",
    "training_pairs",
]


class PairPrediction(NamedTuple):
    """Predicted (and, when known, observed) log fold changes of one pair on shared genes."""

    cell_a: str
    cell_b: str
    gene: np.ndarray  # (n,) str
    predicted: np.ndarray  # (n,) float32
    observed: np.ndarray | None  # (n,) float32: yA - yB, or None without targets


class PairAttribution(NamedTuple):
    """Per-gene contributions to a pair's predicted change.

    ``attribution.sum((1, 2)) + base == predicted`` (up to float error).
    """

    cell_a: str
    cell_b: str
    gene: np.ndarray  # (n,) str
    attribution: np.ndarray  # (n, n_marks, n_bins) float32
    base: float  # the prediction of no signal difference (intercept / expected value)
    predicted: np.ndarray  # (n,) float32
    observed: np.ndarray | None  # (n,) float32


def parse_pairs(pairs) -> tuple[tuple[str, str], ...]:
    """``"A:B,C:D"`` or ``["A:B", ...]`` -> ``(("A", "B"), ("C", "D"))``; one line on a bad item."""
    if isinstance(pairs, str):
        pairs = [p for p in pairs.split(",") if p.strip()]
    out = []
    for item in pairs:
        if isinstance(item, tuple | list) and len(item) == 2:
            a, b = item
        else:
            a, sep, b = str(item).strip().partition(":")
            a, b = a.strip(), b.strip()
            if not sep or not a or not b or ":" in b:
                raise ConfigError(f"pair {item!r} is not of the form CELL_A:CELL_B")
        if a == b:
            raise ConfigError(f"pair {a}:{b} compares a cell type with itself")
        if (str(a), str(b)) in out:
            raise ConfigError(f"pair {a}:{b} given twice")
        out.append((str(a), str(b)))
    return tuple(out)


def pair_rows(data: HistoneDataset, a: str, b: str):
    """The genes shared by cell types ``a`` and ``b`` and their rows in ``data``, aligned.

    Returns
    -------
    gene : np.ndarray, shape (n,), sorted
    ia, ib : np.ndarray, shape (n,), int
        Rows of ``a`` and of ``b`` holding each gene.
    """
    for c in (a, b):
        if c not in data.cells:
            raise HistexprError(f"cell type {c} not in the data (it has {', '.join(data.cells)})")
    ia, ib = np.flatnonzero(data.cell == a), np.flatnonzero(data.cell == b)
    gene, pa, pb = np.intersect1d(data.gene[ia], data.gene[ib], return_indices=True)
    if not len(gene):
        raise HistexprError(f"cell types {a} and {b} share no gene")
    return gene, ia[pa], ib[pb]


def pair_examples(data: HistoneDataset, a: str, b: str):
    """The genes shared by cell types ``a`` and ``b`` and their inputs, aligned.

    Returns
    -------
    gene : np.ndarray, shape (n,)
    XA, XB : np.ndarray, shape (n, n_marks, n_bins)
    lfc : np.ndarray, shape (n,) or None
        ``yA - yB`` when the data has targets.
    """
    gene, ia, ib = pair_rows(data, a, b)
    lfc = None if data.y is None else (data.y[ia] - data.y[ib]).astype(np.float32)
    return gene, data.X[ia], data.X[ib], lfc


def training_pairs(cells, pairs=(), max_pairs: int = 0, seed: int = 0):
    """The (unordered) pairs a differential model trains on.

    ``pairs`` given: those; else every pair of ``cells``, a random ``max_pairs`` of
    them when there are more (``max_pairs=0``: all).
    """
    if pairs:
        pairs = parse_pairs(pairs)
        unknown = sorted({c for p in pairs for c in p} - set(cells))
        if unknown:
            raise HistexprError(
                f"pair cell type(s) {', '.join(unknown)} not in the training data "
                f"(it has {', '.join(cells)})"
            )
        return list(pairs)
    every = list(combinations(sorted(cells), 2))
    if len(every) < 1:
        raise HistexprError("a differential model needs at least two training cell types")
    if 0 < max_pairs < len(every):
        pick = np.random.default_rng(seed).choice(len(every), max_pairs, replace=False)
        every = [every[i] for i in sorted(pick)]
    return every


@dataclass(frozen=True)
class DiffConfig:
    """Which pairs a differential model trains on, and the fit's settings.

    Attributes
    ----------
    pairs : tuple of str
        ``"A:B"`` pairs to train on (default: pairs of the training cell types).
    max_pairs : int
        At most this many random pairs when ``pairs`` is empty (0: all).
    seed : int
    cv_folds : int
        Gene-grouped folds of the ridge alpha search.
    n_estimators, learning_rate, num_leaves, min_child_samples : LightGBM settings
        (``min_child_samples=0``: 1% of the rows, within 5..50).
    early_stopping : int
        LightGBM rounds without improvement on held-out genes before stopping.
    max_rows : int
        LightGBM: at most this many random pair rows (both orientations) are fitted on
        (0: all); the cost of boosting grows with the rows.
    pool_bins : int
        LightGBM: each cell's own signal enters pooled to this many bins per mark
        (the difference of the two enters at full resolution).
    n_jobs : int
        LightGBM threads: 0 (default) lets histexpr choose from the cores other processes leave
        free (one for small data); N > 0 uses N; -1 every core.
    """

    pairs: tuple[str, ...] = ()
    max_pairs: int = 10
    seed: int = 0
    cv_folds: int = 5
    n_estimators: int = 2000
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_child_samples: int = 0
    early_stopping: int = 30
    max_rows: int = 50_000
    pool_bins: int = 10
    n_jobs: int = 0

    def __post_init__(self):
        parse_pairs(self.pairs)
        if self.max_rows < 0:
            raise ConfigError(f"max_rows must be >= 0 (0: all), got {self.max_rows}")
        if self.early_stopping < 1:
            raise ConfigError(f"early_stopping must be >= 1, got {self.early_stopping}")
        if not 1 <= self.pool_bins <= 1000:
            raise ConfigError(f"pool_bins must be in 1..1000, got {self.pool_bins}")
        if self.max_pairs < 0:
            raise ConfigError(f"max_pairs must be >= 0 (0: all), got {self.max_pairs}")
        if self.cv_folds < 2:
            raise ConfigError(f"cv_folds must be >= 2, got {self.cv_folds}")
        if self.min_child_samples < 0:
            raise ConfigError(
                f"min_child_samples must be >= 0 (0: by data size), got {self.min_child_samples}"
            )
        if self.n_estimators < 1 or self.learning_rate <= 0 or self.num_leaves < 2:
            raise ConfigError("n_estimators >= 1, learning_rate > 0 and num_leaves >= 2 required")


class _Diff(_Baseline):
    """Shared pair plumbing: the training pairs, pair prediction and attribution.

    A subclass predicts a pair's rows (:meth:`_predict_pair_rows`) and their
    contributions (:meth:`_contributions`), given the pair's orientation
    (:meth:`orientation`: +1 trained as given, -1 reversed, 0 otherwise).
    """

    config_cls = DiffConfig
    #: Whether ``max_rows`` applies (row subsampling before the features are built).
    subsample_rows = False

    def fit(self, train, valid=None, run_dir=None):
        self._require_target(train)
        c = self.config
        self.pairs_ = training_pairs(train.cells, c.pairs, c.max_pairs, c.seed)
        n_rows = self._fit_pairs(train, self.pairs_)
        self.metrics_ = {
            **self.metrics_,
            "pairs": [f"{a}:{b}" for a, b in self.pairs_],
            "n_pair_rows": n_rows,
            "target": f"log fold change of {train.target}",
        }
        return self

    def _fit_pairs(self, train: HistoneDataset, pairs) -> int:
        """Fit on ``pairs`` of ``train``; returns the number of pair rows fitted on."""
        raise NotImplementedError

    def predict(self, data, batch_size=None):
        raise HistexprError(
            f"{self.kind} predicts the change between two cell types: give a pair (--pair A:B)"
        )

    def orientation(self, a: str, b: str) -> int:
        """+1: ``(a, b)`` was trained on as given; -1: reversed; 0: either or neither.

        Only models that read each cell's own levels use it (:class:`_LevelDiff`).
        """
        return 0

    def predict_pair(self, data: HistoneDataset, a: str, b: str) -> PairPrediction:
        """Predicted log fold change ``A`` vs ``B`` on the genes both cell types have."""
        data = self._check(data)
        gene, XA, XB, lfc = pair_examples(data, a, b)
        pred = self._predict_pair_rows(XA, XB, self.orientation(a, b))
        return PairPrediction(a, b, gene, np.asarray(pred, dtype=np.float32), lfc)

    def attribute_pair(self, data: HistoneDataset, a: str, b: str) -> PairAttribution:
        """Contributions of each gene's marks and bins to its predicted change ``A`` vs ``B``."""
        data = self._check(data)
        gene, XA, XB, lfc = pair_examples(data, a, b)
        sign = self.orientation(a, b)
        contrib, base = self._contributions(XA, XB, sign)
        shape = (len(gene), XA.shape[1], XA.shape[2])
        attribution = contrib.reshape(shape).astype(np.float32)
        pred = np.asarray(self._predict_pair_rows(XA, XB, sign), dtype=np.float32)
        return PairAttribution(a, b, gene, attribution, float(base), pred, lfc)

    def _predict_pair_rows(self, XA, XB, sign: int = 0) -> np.ndarray:
        raise NotImplementedError

    def _contributions(self, XA, XB, sign: int = 0) -> tuple[np.ndarray, float]:
        raise NotImplementedError


class _LevelDiff(_Diff):
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


class DiffRidge(_LevelDiff):
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
        from histexpr.estimators.linear import gene_folds

        F, y, gene = self._pair_rows(train, pairs)
        cells = train.select_cells(sorted({c for p in pairs for c in p}))
        p = train.X.shape[1] * train.X.shape[2]
        n_genes = len(np.unique(gene))
        k = min(self.config.cv_folds, n_genes)
        fold = gene_folds(gene, k, seed=self.config.seed)
        # each cell's row of a gene falls in that gene's fold (-1: a gene of no pair)
        pair_genes, first = np.unique(gene, return_index=True)
        at = np.clip(np.searchsorted(pair_genes, cells.gene), 0, len(pair_genes) - 1)
        cell_fold = np.where(pair_genes[at] == cells.gene, fold[first][at], -1)
        direct_oof, single_oof = np.zeros(len(y)), np.zeros(len(y))
        if k >= 2:
            for i in range(k):
                out = fold == i
                direct = self._direct(F[~out], y[~out], gene[~out])
                direct_oof[out] = _ridge_apply(direct, F[out])
                single_oof[out] = F[out, -p:] @ self._single(cells.subset(cell_fold != i))
            grid = np.linspace(0.0, 1.0, 11)
            mse = [np.mean((g * direct_oof + (1 - g) * single_oof - y) ** 2) for g in grid]
            self.lam_ = float(grid[int(np.argmin(mse))])
        self.mu_, self.sd_, self.coef_, self.intercept_, alpha = self._direct(F, y, gene)
        self.single_ = self._single(cells).astype(np.float32)
        self.metrics_ = {"alpha": alpha, "cv_folds": k, "blend_direct": self.lam_}
        return len(y)

    def _direct(self, F, y, gene):
        """Ridge of the change on ``F``: (mu, sd, coef, intercept, alpha)."""
        from histexpr.estimators.linear import fit_ridge_cv

        mu = F.mean(axis=0, dtype=np.float64)
        sd = F.std(axis=0, dtype=np.float64) + 1e-6
        res = fit_ridge_cv(
            lambda rows: (F[rows].astype(np.float64) - mu) / sd,
            len(F),
            y,
            gene,
            self.config.cv_folds,
            seed=self.config.seed,
        )
        f32 = np.float32
        return (
            mu.astype(f32),
            sd.astype(f32),
            res.coef.astype(f32),
            f32(res.intercept),
            float(res.alpha),
        )

    def _single(self, cells: HistoneDataset) -> np.ndarray:
        """Per-bin weights ``v`` of a single-cell ridge: ``s(A) - s(B) = v . (A - B)``."""
        from histexpr.estimators.baseline_config import RidgeConfig
        from histexpr.estimators.baselines import RidgeBaseline

        est = RidgeBaseline(RidgeConfig(cv_folds=self.config.cv_folds)).fit(cells)
        return (est.coef_ / est.sd_).astype(np.float64)

    def _predict_rows(self, F):
        direct = ((F - self.mu_) / self.sd_) @ self.coef_ + self.intercept_
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
        z = _load_arrays(directory / "state.npz")
        self._set_state(z)
        self.pairs_ = list(parse_pairs([str(p) for p in z["pairs"]]))


def _ridge_apply(direct, F) -> np.ndarray:
    mu, sd, coef, intercept, _ = direct
    return ((F - mu) / sd) @ coef + intercept


class DiffLightGBM(_LevelDiff):
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

        from histexpr.estimators.linear import gene_folds

        c = self.config
        # rounds chosen on held-out genes (a fifth), ridge and boosting both fitted
        # without them; then both refitted on every gene
        genes = np.unique(train.gene)
        held_genes = genes[gene_folds(genes, 5, seed=c.seed) == 0]
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
        import lightgbm as lgb

        if not (directory / "pairs.txt").is_file():
            raise HistexprError(f"{directory}: model directory is missing pairs.txt")
        self.pairs_ = list(parse_pairs((directory / "pairs.txt").read_text().split()))
        self.ridge_, self.booster_, self.layout_ = None, None, 1
        if (directory / "ridge.npz").is_file():
            self.ridge_ = DiffRidge(self.config)
            self.ridge_._set_state(_load_arrays(directory / "ridge.npz"))
            self.layout_ = self.ridge_.layout_
        elif not (directory / "model.txt").is_file():
            raise HistexprError(f"{directory}: model directory is missing model.txt")
        if (directory / "model.txt").is_file():
            self.booster_ = lgb.Booster(model_file=str(directory / "model.txt"))


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


def diff_from_model(estimator, data: HistoneDataset, a: str, b: str) -> PairPrediction:
    """The baseline: the difference of two single-cell predictions of ``estimator``."""
    gene, XA, XB, lfc = pair_examples(data, a, b)

    def one(X, cell):
        part = HistoneDataset(
            X,
            None,
            np.full(len(X), cell),
            gene,
            marks=data.marks,
            target=data.target,
            meta=dict(data.meta),
        )
        return estimator.predict(part)

    pred = (one(XA, a) - one(XB, b)).astype(np.float32)
    return PairPrediction(a, b, gene, pred, lfc)
