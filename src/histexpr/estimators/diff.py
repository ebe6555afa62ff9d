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
    n_estimators, learning_rate, num_leaves, min_child_samples : LightGBM settings.
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
    min_child_samples: int = 50
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
        if self.n_estimators < 1 or self.learning_rate <= 0 or self.num_leaves < 2:
            raise ConfigError("n_estimators >= 1, learning_rate > 0 and num_leaves >= 2 required")


class _Diff(_Baseline):
    """Shared pair plumbing: pair rows, both orientations, pair prediction."""

    config_cls = DiffConfig

    def _features(self, XA: np.ndarray, XB: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    #: Whether ``max_rows`` applies (row subsampling before the features are built).
    subsample_rows = False

    def _pair_rows(self, data: HistoneDataset, pairs):
        """Features, targets and genes of every pair in both orientations.

        With :attr:`subsample_rows` and ``max_rows``, each pair keeps the same random
        share of its genes (seeded), so peak memory follows ``max_rows``.
        """
        examples = [pair_examples(data, a, b) for a, b in pairs]
        total = 2 * sum(len(g) for g, *_ in examples)
        cap = self.config.max_rows if self.subsample_rows else 0
        keep = cap / total if 0 < cap < total else 1.0
        rng = np.random.default_rng(self.config.seed)
        feats, ys, genes = [], [], []
        for gene, XA, XB, lfc in examples:
            if keep < 1:
                rows = np.sort(rng.choice(len(gene), max(1, round(keep * len(gene))), False))
                gene, XA, XB, lfc = gene[rows], XA[rows], XB[rows], lfc[rows]
            for F, y in ((self._features(XA, XB), lfc), (self._features(XB, XA), -lfc)):
                feats.append(F)
                ys.append(y)
                genes.append(gene)
        return np.concatenate(feats), np.concatenate(ys), np.concatenate(genes)

    def fit(self, train, valid=None, run_dir=None):
        self._require_target(train)
        c = self.config
        self.pairs_ = training_pairs(train.cells, c.pairs, c.max_pairs, c.seed)
        F, y, gene = self._pair_rows(train, self.pairs_)
        self._fit_rows(F, y, gene)
        self.metrics_ = {
            **self.metrics_,
            "pairs": [f"{a}:{b}" for a, b in self.pairs_],
            "n_pair_rows": len(y),
            "target": f"log fold change of {train.target}",
        }
        return self

    def predict(self, data, batch_size=None):
        raise HistexprError(
            f"{self.kind} predicts the change between two cell types: give a pair (--pair A:B)"
        )

    def _predict_pair_rows(self, XA, XB) -> np.ndarray:
        return self._predict_rows(self._features(XA, XB))

    def predict_pair(self, data: HistoneDataset, a: str, b: str) -> PairPrediction:
        """Predicted log fold change ``A`` vs ``B`` on the genes both cell types have."""
        data = self._check(data)
        gene, XA, XB, lfc = pair_examples(data, a, b)
        pred = np.asarray(self._predict_pair_rows(XA, XB), dtype=np.float32)
        return PairPrediction(a, b, gene, pred, lfc)

    def attribute_pair(self, data: HistoneDataset, a: str, b: str) -> PairAttribution:
        """Contributions of each gene's marks and bins to its predicted change ``A`` vs ``B``."""
        data = self._check(data)
        gene, XA, XB, lfc = pair_examples(data, a, b)
        contrib, base = self._contributions(XA, XB)
        shape = (len(gene), XA.shape[1], XA.shape[2])
        attribution = contrib.reshape(shape).astype(np.float32)
        pred = np.asarray(self._predict_pair_rows(XA, XB), dtype=np.float32)
        return PairAttribution(a, b, gene, attribution, float(base), pred, lfc)

    def _contributions(self, XA, XB) -> tuple[np.ndarray, float]:
        raise NotImplementedError


class DiffRidge(_Diff):
    """Ridge on ``log1p(XA) - log1p(XB)``: antisymmetric, the linear differential baseline."""

    kind = "diff-ridge"

    def _features(self, XA, XB):
        return log1p_features(XA) - log1p_features(XB)

    def _fit_rows(self, F, y, gene):
        from histexpr.estimators.linear import fit_ridge_cv

        sd = F.std(axis=0, dtype=np.float64) + 1e-6
        self.sd_ = sd.astype(np.float32)
        res = fit_ridge_cv(
            lambda rows: F[rows].astype(np.float64) / sd, len(F), y, gene, self.config.cv_folds
        )
        self.coef_ = res.coef.astype(np.float32)
        # both orientations: the fitted intercept is 0 up to rounding; exactly 0 keeps
        # f(B, A) = -f(A, B) exact
        self.intercept_ = np.float32(0.0)
        self.metrics_ = {"alpha": float(res.alpha), "cv_folds": res.folds}

    def _predict_rows(self, F):
        return (F / self.sd_) @ self.coef_ + self.intercept_

    def _contributions(self, XA, XB):
        return self._features(XA, XB) * (self.coef_ / self.sd_), float(self.intercept_)

    def _save_state(self, directory):
        np.savez(
            directory / "state.npz",
            sd=self.sd_,
            coef=self.coef_,
            intercept=self.intercept_,
            pairs=np.array([f"{a}:{b}" for a, b in self.pairs_], dtype=str),
        )

    def _load_state(self, directory):
        z = _load_arrays(directory / "state.npz")
        self.sd_, self.coef_, self.intercept_ = z["sd"], z["coef"], z["intercept"]
        self.pairs_ = list(parse_pairs([str(p) for p in z["pairs"]]))


class DiffLightGBM(_Diff):
    """LightGBM on both cells' log1p signals and their difference."""

    kind = "diff-lightgbm"
    subsample_rows = True

    def _features(self, XA, XB):
        # Both cells' levels pooled to pool_bins per mark, their difference at full
        # resolution: the change is in the difference, the levels say where a change
        # matters; 600 features instead of 1,500 make boosting 2-3x cheaper.
        pa, pb = pooled_log1p(XA, self.config.pool_bins), pooled_log1p(XB, self.config.pool_bins)
        return np.concatenate([pa, pb, log1p_features(XA) - log1p_features(XB)], axis=1)

    def _fit_rows(self, F, y, gene):
        import lightgbm as lgb

        from histexpr.estimators.linear import gene_folds

        c = self.config
        params = {
            "objective": "regression",
            "learning_rate": c.learning_rate,
            "num_leaves": c.num_leaves,
            "min_child_samples": c.min_child_samples,
            "feature_fraction": 0.5,
            "max_bin": 63,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "seed": c.seed,
            "num_threads": choose_threads(c.n_jobs, len(F)),
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        # rounds chosen on held-out genes (a fifth), then a refit on every gene
        held = gene_folds(gene, 5, seed=c.seed) == 0
        probe = lgb.train(
            params,
            lgb.Dataset(F[~held], y[~held]),
            num_boost_round=c.n_estimators,
            valid_sets=[lgb.Dataset(F[held], y[held])],
            callbacks=[lgb.early_stopping(c.early_stopping, verbose=False)],
        )
        rounds = int(probe.best_iteration or c.n_estimators)
        self.booster_ = lgb.train(params, lgb.Dataset(F, y), num_boost_round=rounds)
        self.metrics_ = {"best_iteration": rounds, "n_fit_rows": len(y)}

    def _predict_rows(self, F):
        return self.booster_.predict(F, num_threads=choose_threads(self.config.n_jobs, len(F)))

    def _predict_pair_rows(self, XA, XB):
        # antisymmetrised: f(A, B) = (g(A, B) - g(B, A)) / 2, so f(B, A) = -f(A, B)
        return 0.5 * (
            self._predict_rows(self._features(XA, XB)) - self._predict_rows(self._features(XB, XA))
        )

    def _contributions(self, XA, XB):
        def shap(F):
            threads = choose_threads(self.config.n_jobs, len(F))
            out = self.booster_.predict(F, pred_contrib=True, num_threads=threads)
            return out[:, :-1], out[:, -1]

        (pa, ea), (pb, eb) = shap(self._features(XA, XB)), shap(self._features(XB, XA))
        n_marks, n_bins = XA.shape[1], XA.shape[2]
        spread = _pool_spread(n_marks, n_bins, self.config.pool_bins)  # (pooled, k)
        q = spread.shape[0]

        def by_position(c):
            # features are [pooled A, pooled B, A - B]: a pooled feature's share goes
            # equally to the bins it averages, so each position sums all its routes
            return c[:, :q] @ spread + c[:, q : 2 * q] @ spread + c[:, 2 * q :]

        return 0.5 * (by_position(pa) - by_position(pb)), float(np.mean(0.5 * (ea - eb)))

    def _save_state(self, directory):
        self.booster_.save_model(str(directory / "model.txt"))
        (directory / "pairs.txt").write_text("".join(f"{a}:{b}\n" for a, b in self.pairs_))

    def _load_state(self, directory):
        import lightgbm as lgb

        for name in ("model.txt", "pairs.txt"):
            if not (directory / name).is_file():
                raise HistexprError(f"{directory}: model directory is missing {name}")
        self.booster_ = lgb.Booster(model_file=str(directory / "model.txt"))
        self.pairs_ = list(parse_pairs((directory / "pairs.txt").read_text().split()))


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
