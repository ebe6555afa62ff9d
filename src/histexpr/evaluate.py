"""Metrics of predicted expression: overall, per cell type and per evaluation group.

Metrics follow the field: MSE (the seed's loss), Pearson and Spearman
correlation, R2, and the AUC of a median split — each cell type's genes are
labelled 1 when their expression is above that cell type's median, the task of
DeepChrome and AttentiveChrome — scored by the predicted value.

Evaluation groups (:data:`GROUPS`) say what the model knew about an example:
whether its cell type was trained on (*seen*) and whether its gene was a
training gene (*known*): ``seen/new``, ``unseen/known`` (the seed's test
setting), ``unseen/new``, and the flagged ``seen/train`` (training genes of
training cell types: not held out, never pooled into another group).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from histexpr.data.dataset import canonical_gene_ids

METRIC_NAMES = ("mse", "pearson", "spearman", "r2", "auc")


@dataclass(frozen=True)
class Metrics:
    """Regression metrics of one set of predictions (NaN where undefined)."""

    n: int
    mse: float
    pearson: float
    spearman: float
    r2: float
    auc: float

    def as_dict(self) -> dict:
        return asdict(self)


def is_label(y: np.ndarray) -> bool:
    """True when ``y`` holds only 0 and 1: binary labels (e.g. DeepChrome's), not expression."""
    y = np.asarray(y)
    return bool(y.size) and bool(np.isin(y, (0, 1)).all())


def cell_medians(y: np.ndarray, cell: np.ndarray) -> dict[str, float]:
    """Median of ``y`` per cell type (what a median split of training data uses)."""
    y, cell = np.asarray(y, dtype=np.float64), np.asarray(cell).astype(str)
    return {str(c): float(np.median(y[cell == c])) for c in np.unique(cell)}


def median_split_labels(
    y: np.ndarray, cell: np.ndarray | None = None, medians: Mapping[str, float] | None = None
) -> np.ndarray:
    """Binary labels: 1 where ``y`` exceeds its cell type's median (global without ``cell``).

    Labels are never re-derived from labels: when ``y`` holds only 0 and 1
    (:func:`is_label`) it is returned as it is (a median of a 0/1 column is 0 or 1
    and splits nothing, or everything to 0 when most genes are positive).

    Parameters
    ----------
    y : np.ndarray, shape (n,)
    cell : np.ndarray, shape (n,), optional
    medians : mapping of str to float, optional
        Median per cell type to split at (e.g. the training cell's, stored with
        a model); cell types not in it use the median of their own examples.

    Returns
    -------
    np.ndarray, shape (n,), int8
    """
    y = np.asarray(y, dtype=np.float64)
    if is_label(y):
        return y.astype(np.int8)
    if cell is None:
        return (y > np.median(y)).astype(np.int8)
    cell = np.asarray(cell).astype(str)
    medians = medians or {}
    labels = np.zeros(len(y), dtype=np.int8)
    for c in np.unique(cell):
        m = cell == c
        labels[m] = y[m] > medians.get(str(c), np.median(y[m]))
    return labels


def fit_metrics(y: np.ndarray, pred: np.ndarray, task: str, prefix: str) -> dict[str, float]:
    """The loss and one quality score of training-time predictions, for ``metrics.json``.

    Regression: ``{prefix}_mse`` and ``{prefix}_r`` (Pearson); classification
    (``pred`` are probabilities of the positive class): ``{prefix}_bce`` and
    ``{prefix}_auc``. A score that is undefined (one class, constant input) is left out.

    Parameters
    ----------
    y, pred : np.ndarray, shape (n,)
    task : {"regression", "classification"}
    prefix : str
        e.g. "train" or "valid".
    """
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if task == "classification":
        p = np.clip(pred, 1e-7, 1 - 1e-7)
        out = {f"{prefix}_bce": float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))}
        score = auc(y.astype(np.int8), pred)
        if np.isfinite(score):
            out[f"{prefix}_auc"] = score
        return out
    out = {f"{prefix}_mse": float(np.mean((pred - y) ** 2))}
    r = _pearson(y, pred) if len(y) > 1 else float("nan")
    if np.isfinite(r):
        out[f"{prefix}_r"] = r
    return out


def _rank(a: np.ndarray) -> np.ndarray:
    return pd.Series(a).rank(method="average").to_numpy()


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def auc(labels: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties count one half)."""
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _rank(score)
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def compute_metrics(y: np.ndarray, yhat: np.ndarray, cell: np.ndarray | None = None) -> Metrics:
    """All metrics of ``yhat`` against ``y``.

    Parameters
    ----------
    y, yhat : np.ndarray, shape (n,)
    cell : np.ndarray, shape (n,), optional
        Cell type per example; the median split is then taken per cell type.
        The AUC of binary labels (``y`` only 0/1) is against the labels themselves
        (see :func:`median_split_labels`).
    """
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    n = len(y)
    if n == 0:
        nan = float("nan")
        return Metrics(0, nan, nan, nan, nan, nan)
    mse = float(np.mean((y - yhat) ** 2))
    var = float(np.var(y))
    return Metrics(
        n=n,
        mse=mse,
        pearson=_pearson(y, yhat) if n > 1 else float("nan"),
        spearman=_pearson(_rank(y), _rank(yhat)) if n > 1 else float("nan"),
        r2=1.0 - mse / var if var > 0 else float("nan"),
        auc=auc(median_split_labels(y, cell), yhat),
    )


def fitting_metrics(task: str, labels: bool) -> tuple[str, ...]:
    """The metrics that fit a model's output against an observed target.

    Parameters
    ----------
    task : {"regression", "classification"}
        What the model predicts: expression, or the probability of expression above
        its cell type's median.
    labels : bool
        The observed target is 0/1 labels (else expression).

    Returns
    -------
    tuple of str
        Names of :data:`METRIC_NAMES`. A classifier scored on expression gets only
        ``auc`` (of the median split): MSE, R2 and correlations of a probability
        against expression values measure nothing. (A regression model is not scored
        on labels at all: :func:`histexpr.estimators.bundle.check_target` refuses.)
    """
    if task == "classification" and not labels:
        return ("auc",)
    return METRIC_NAMES


def keep_metrics(
    evaluation: Evaluation, names: Sequence[str], model: str | None = None
) -> Evaluation:
    """Blank (NaN) every metric not in ``names``, in place; return ``evaluation``.

    ``model``: only the rows of that model (default: every row).
    """
    drop = [m for m in METRIC_NAMES if m not in names]
    if not drop:
        return evaluation
    for table in (evaluation.table, evaluation.per_cell):
        if not len(table):
            continue
        rows = slice(None) if model is None else table["model"] == model
        for column in (*drop, "mse_over_oracle"):
            if column in table.columns and (column != "mse_over_oracle" or "mse" in drop):
                table.loc[rows, column] = np.nan
    return evaluation


#: Evaluation groups, from the cell types and genes the model was trained on.
#: Short names (used in tables and CSVs) -> meaning.
GROUPS: dict[str, str] = {
    "seen/new": "cell types trained on x genes held out of training",
    "unseen/known": "cell types never trained on x genes trained on (in other cell types)",
    "unseen/new": "cell types never trained on x genes never trained on",
    "seen/train": "cell types trained on x their training genes (not held out: flagged)",
}
#: Groups when the training genes are not known: cell types only.
CELL_GROUPS: dict[str, str] = {
    "seen": "cell types trained on (genes not split into known / new)",
    "unseen": "cell types never trained on (genes not split into known / new)",
}
#: The flagged group: scored on examples the model was fitted on. Never pooled.
TRAINING_GROUP = "seen/train"
#: Order of groups in tables.
GROUP_ORDER: tuple[str, ...] = ("seen/new", "unseen/known", "unseen/new", "seen", "unseen")


def assign_groups(
    cell: np.ndarray,
    gene: np.ndarray | None = None,
    unseen_cells: Sequence[str] = (),
    train_cells: Sequence[str] | None = None,
    train_genes: Sequence[str] | None = None,
) -> np.ndarray:
    """The evaluation group of every example (see :data:`GROUPS`).

    A cell type is *seen* when it is among ``train_cells`` (when given) or else
    when it is not among ``unseen_cells``. With ``gene`` and ``train_genes`` the
    genes are split too: a gene is *known* when it is a training gene. Without
    them the groups are :data:`CELL_GROUPS`.

    Parameters
    ----------
    cell : np.ndarray, shape (n,)
    gene : np.ndarray, shape (n,), optional
    unseen_cells : sequence of str
        Used only without ``train_cells``.
    train_cells, train_genes : sequence of str, optional
        What the model was trained on (as recorded with it).

    Returns
    -------
    np.ndarray, shape (n,), str
    """
    cell = np.asarray(cell).astype(str)
    if train_cells is not None:
        seen = np.isin(cell, np.asarray(list(train_cells), dtype=str))
    else:
        seen = ~np.isin(cell, np.asarray(list(unseen_cells), dtype=str))
    if gene is None or train_genes is None:
        return np.where(seen, "seen", "unseen").astype(object)
    # Canonical ids on both sides (a model may record its genes in an older form).
    known = np.isin(canonical_gene_ids(gene), canonical_gene_ids(list(train_genes)))
    out = np.empty(len(cell), dtype=object)
    out[seen & ~known] = "seen/new"
    out[~seen & known] = "unseen/known"
    out[~seen & ~known] = "unseen/new"
    out[seen & known] = TRAINING_GROUP
    return out


@dataclass
class Evaluation:
    """Evaluation of several models on the same examples.

    Attributes
    ----------
    table : pd.DataFrame
        One row per (model, group); columns model, group, n and the metrics, plus
        ``mse_over_oracle``. Groups: "all" (every example except the flagged
        ``seen/train`` ones), then those of :data:`GROUPS` (or :data:`CELL_GROUPS`
        when the training genes are unknown) that occur, in :data:`GROUP_ORDER`,
        then ``seen/train`` when it occurs.
    per_cell : pd.DataFrame
        One row per (model, cell, group): model, cell, group, seen, n and the
        metrics. ``group`` is "seen" or "unseen" (the cell type's honest
        examples) or ``seen/train`` (its training genes, apart).
    notes : list of str
        Warnings for the reader, e.g. how many examples are training genes.
    intervals : pd.DataFrame or None
        Coverage of prediction intervals per group (:func:`interval_coverage`), when
        the model has them.
    """

    table: pd.DataFrame
    per_cell: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    intervals: pd.DataFrame | None = None


def evaluate_predictions(
    y: np.ndarray,
    cell: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    unseen_cells: Sequence[str] = (),
    oracle: str | None = "oracle",
    gene: np.ndarray | None = None,
    train_cells: Sequence[str] | None = None,
    train_genes: Sequence[str] | None = None,
) -> Evaluation:
    """Score each model's predictions overall, per cell type and by group.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Observed expression.
    cell : np.ndarray, shape (n,)
        Cell type per example.
    predictions : mapping of str to np.ndarray, shape (n,)
        Model name -> predictions.
    unseen_cells : sequence of str
        Cell types never seen in training; the others count as seen. Ignored
        when ``train_cells`` is given.
    oracle : str or None
        Name of the entry in ``predictions`` holding the Bayes-oracle prediction;
        when present every model's MSE is also reported relative to it.
    gene : np.ndarray, shape (n,), optional
        Gene per example; with ``train_genes`` the groups split known / new genes.
    train_cells, train_genes : sequence of str, optional
        The cell types and genes the models were trained on (see :func:`assign_groups`).
    """
    y = np.asarray(y)
    cell = np.asarray(cell).astype(str)
    group = assign_groups(cell, gene, unseen_cells, train_cells, train_genes)
    flagged = group == TRAINING_GROUP
    present = set(group.tolist())
    masks = {"all": ~flagged}
    masks.update({g: group == g for g in GROUP_ORDER if g in present})
    masks[TRAINING_GROUP] = flagged
    seen_cell = ~np.isin(group, ("unseen", "unseen/known", "unseen/new"))
    rows, cell_rows = [], []
    for name, yhat in predictions.items():
        yhat = np.asarray(yhat)
        if yhat.shape != y.shape:
            raise ValueError(f"predictions of {name} have shape {yhat.shape}, expected {y.shape}")
        for g, mask in masks.items():
            if mask.any():
                m = compute_metrics(y[mask], yhat[mask], cell[mask])
                rows.append({"model": name, "group": g, **m.as_dict()})
        for c in pd.unique(cell):
            in_cell = cell == c
            seen = bool(seen_cell[in_cell][0])
            for g, mask in (("seen" if seen else "unseen", ~flagged), (TRAINING_GROUP, flagged)):
                mask = in_cell & mask
                if mask.any():
                    m = compute_metrics(y[mask], yhat[mask])
                    cell_rows.append(
                        {"model": name, "cell": c, "group": g, "seen": seen, **m.as_dict()}
                    )
    table = pd.DataFrame(rows)
    if oracle is not None and oracle in predictions and len(table):
        ref = table[table.model == oracle].set_index("group")["mse"]
        table["mse_over_oracle"] = table["mse"] / table["group"].map(ref)
    else:
        table["mse_over_oracle"] = np.nan
    notes = []
    if flagged.any():
        notes.append(
            f"{int(flagged.sum())} of {len(cell)} examples are training genes of training cell "
            f"types: scored apart as {TRAINING_GROUP} (optimistic), left out of every other group"
        )
    return Evaluation(table=table, per_cell=pd.DataFrame(cell_rows), notes=notes)


#: Columns of :func:`interval_coverage`.
INTERVAL_COLUMNS = ("group", "level", "n", "coverage", "mean_width")


def interval_coverage(y, lower, upper, group, level: float) -> pd.DataFrame:
    """Empirical coverage and mean width of prediction intervals, overall and per group.

    Parameters
    ----------
    y, lower, upper : array-like of float, shape (n,)
        Observed values and interval bounds.
    group : array-like of str, shape (n,)
        Evaluation group per example (:func:`assign_groups`); "all" pools every
        example but the flagged :data:`TRAINING_GROUP`, which has its own row.
    level : float
        The nominal coverage, copied to the ``level`` column.

    Returns
    -------
    pd.DataFrame
        Columns :data:`INTERVAL_COLUMNS`; ``coverage`` is the share of ``y`` inside
        ``[lower, upper]``.
    """
    y = np.asarray(y, dtype=np.float64)
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    group = np.asarray(group).astype(str)
    inside = (y >= lower) & (y <= upper)
    width = upper - lower
    flagged = group == TRAINING_GROUP
    masks = {"all": ~flagged}
    masks.update({g: group == g for g in (*GROUP_ORDER, TRAINING_GROUP) if (group == g).any()})
    rows = [
        {
            "group": g,
            "level": float(level),
            "n": int(m.sum()),
            "coverage": float(inside[m].mean()),
            "mean_width": float(width[m].mean()),
        }
        for g, m in masks.items()
        if m.any()
    ]
    return pd.DataFrame(rows, columns=list(INTERVAL_COLUMNS))


@dataclass(frozen=True)
class DiffMetrics:
    """Scores of predicted log fold changes between two cell types (NaN where undefined).

    ``auc`` separates up- from down-regulated genes among the ``n_changed`` genes with
    ``|observed| >= threshold`` (``n_up`` of them up), scored by the predicted change.
    """

    n: int
    pearson: float
    spearman: float
    mse: float
    auc: float
    n_changed: int
    n_up: int
    threshold: float

    def as_dict(self) -> dict:
        return asdict(self)


def diff_metrics(observed_lfc, predicted_lfc, threshold: float = 1.0) -> DiffMetrics:
    """Pearson r, Spearman, MSE and the AUC of up vs down of predicted log fold changes.

    Parameters
    ----------
    observed_lfc, predicted_lfc : np.ndarray, shape (n,)
    threshold : float
        Genes with ``|observed_lfc| >= threshold`` count as changed (up or down).
    """
    y = np.asarray(observed_lfc, dtype=np.float64)
    p = np.asarray(predicted_lfc, dtype=np.float64)
    n, nan = len(y), float("nan")
    changed = np.abs(y) >= threshold
    up = (y[changed] > 0).astype(np.int8)
    return DiffMetrics(
        n=n,
        pearson=_pearson(y, p) if n > 1 else nan,
        spearman=_pearson(_rank(y), _rank(p)) if n > 1 else nan,
        mse=float(np.mean((y - p) ** 2)) if n else nan,
        auc=auc(up, p[changed]) if changed.any() else nan,
        n_changed=int(changed.sum()),
        n_up=int(up.sum()),
        threshold=float(threshold),
    )


def split_half_coverage(residuals, level: float, seed: int = 0) -> tuple[float, float]:
    """Coverage and mean width of a split-conformal interval on residuals it never saw.

    The absolute residuals are split in two random halves; the conformal half-width
    of one half (the ``ceil((n + 1) * level)``-th smallest) is scored on the other,
    both ways, and the two averaged: an estimate of the coverage that new examples
    of the same kind get, from the calibration residuals alone.

    Parameters
    ----------
    residuals : array-like of float, shape (n,)
        Absolute residuals of one calibration category (n >= 2).
    level : float in (0, 1)
    seed : int

    Returns
    -------
    coverage : float
        Share of held-out residuals within the other half's half-width.
    width : float
        Mean full width (twice the half-width) of the two halves' intervals.
    """
    r = np.asarray(residuals, dtype=np.float64)
    order = np.random.default_rng(seed).permutation(len(r))
    a, b = np.sort(r[order[: len(r) // 2]]), np.sort(r[order[len(r) // 2 :]])

    def half_width(x: np.ndarray) -> float:
        k = int(np.ceil((len(x) + 1) * level))
        return float("inf") if k > len(x) else float(x[k - 1])

    qa, qb = half_width(a), half_width(b)
    coverage = 0.5 * (float(np.mean(b <= qa)) + float(np.mean(a <= qb)))
    return coverage, qa + qb
