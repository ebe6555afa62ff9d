"""Differential expression between two cell types (DeepDiffChrome's task).

The target of a pair of cell types ``(A, B)`` on a gene is the log fold change
``log2(eA + 1) - log2(eB + 1)``, i.e. ``yA - yB`` on the data's own transform
(RPKM for Roadmap data, read counts for DeepDiff's files: the model contract
records which). One model serves every pair: it is trained on pairs drawn among
the training cell types (all pairs, up to ``max_pairs``, or the pairs given), so it
applies to pairs it never saw, and ``f(B, A) = -f(A, B)`` holds exactly.

Kinds:

- ``diff-ridge`` and ``diff-lightgbm`` (:mod:`histexpr.estimators.diff_levels`): each
  cell's pooled levels and the per-bin difference, fitted on each training pair in its
  given orientation; ridge blended with a single-cell ridge's difference, LightGBM
  boosting the ridge's residual;
- ``diff-convnet`` (:mod:`histexpr.estimators.diff_neural`): a siamese ConvNet, one
  trunk on each cell, the embeddings' difference and concatenation into the head,
  auxiliary heads for each cell's own expression, trained in both orientations.

Every kind explains a pair's change per gene, mark and bin
(:meth:`PairModel.attribute_pair`): ridge as ``coef * feature`` (exact), LightGBM by
its SHAP values (``pred_contrib``), diff-convnet by integrated gradients.

The baseline every differential model must beat is the difference of two
single-cell predictions of any trained histexpr model: :func:`diff_from_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import NamedTuple

import numpy as np

from histexpr.data.dataset import HistoneDataset
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators.tabular import TabularEstimator

__all__ = [
    "DiffConfig",
    "PairAttribution",
    "PairModel",
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


class PairModel(TabularEstimator):
    """Shared pair plumbing: the training pairs, pair prediction and attribution.

    A subclass predicts a pair's rows (:meth:`_predict_pair_rows`) and their
    contributions (:meth:`_contributions`), given the pair's orientation
    (:meth:`orientation`: +1 trained as given, -1 reversed, 0 otherwise).
    """

    config_cls = DiffConfig

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
