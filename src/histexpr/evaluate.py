"""Metrics of predicted expression: overall, per cell type, seen vs unseen.

Metrics follow the field: MSE (the seed's loss), Pearson and Spearman
correlation, R2, and the AUC of a median split — each cell type's genes are
labelled 1 when their expression is above that cell type's median, the task of
DeepChrome and AttentiveChrome — scored by the predicted value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

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


def median_split_labels(y: np.ndarray, cell: np.ndarray | None = None) -> np.ndarray:
    """1 where ``y`` exceeds its cell type's median (the global median without ``cell``).

    Parameters
    ----------
    y : np.ndarray, shape (n,)
    cell : np.ndarray, shape (n,), optional

    Returns
    -------
    np.ndarray, shape (n,), int8
    """
    y = np.asarray(y, dtype=np.float64)
    if cell is None:
        return (y > np.median(y)).astype(np.int8)
    cell = np.asarray(cell)
    labels = np.zeros(len(y), dtype=np.int8)
    for c in np.unique(cell):
        m = cell == c
        labels[m] = y[m] > np.median(y[m])
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


@dataclass
class Evaluation:
    """Evaluation of several models on the same examples.

    Attributes
    ----------
    table : pd.DataFrame
        One row per (model, group) with group in "all", "seen", "unseen";
        columns model, group, n and the metrics, plus ``mse_over_oracle``.
    per_cell : pd.DataFrame
        One row per (model, cell): model, cell, seen, n and the metrics.
    """

    table: pd.DataFrame
    per_cell: pd.DataFrame


def evaluate_predictions(
    y: np.ndarray,
    cell: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    unseen_cells: Sequence[str] = (),
    oracle: str | None = "oracle",
) -> Evaluation:
    """Score each model's predictions overall, per cell type and by seen/unseen group.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Observed expression.
    cell : np.ndarray, shape (n,)
        Cell type per example.
    predictions : mapping of str to np.ndarray, shape (n,)
        Model name -> predictions.
    unseen_cells : sequence of str
        Cell types never seen in training; the others count as seen.
    oracle : str or None
        Name of the entry in ``predictions`` holding the Bayes-oracle prediction;
        when present every model's MSE is also reported relative to it.
    """
    cell = np.asarray(cell).astype(str)
    unseen = np.isin(cell, list(unseen_cells))
    groups = {"all": np.ones(len(cell), bool), "seen": ~unseen, "unseen": unseen}
    rows, cell_rows = [], []
    for name, yhat in predictions.items():
        yhat = np.asarray(yhat)
        if yhat.shape != y.shape:
            raise ValueError(f"predictions of {name} have shape {yhat.shape}, expected {y.shape}")
        for group, mask in groups.items():
            if mask.any():
                m = compute_metrics(y[mask], yhat[mask], cell[mask])
                rows.append({"model": name, "group": group, **m.as_dict()})
        for c in pd.unique(cell):
            mask = cell == c
            m = compute_metrics(y[mask], yhat[mask])
            cell_rows.append({"model": name, "cell": c, "seen": not unseen[mask][0], **m.as_dict()})
    table = pd.DataFrame(rows)
    if oracle is not None and oracle in predictions and len(table):
        ref = table[table.model == oracle].set_index("group")["mse"]
        table["mse_over_oracle"] = table["mse"] / table["group"].map(ref)
    else:
        table["mse_over_oracle"] = np.nan
    return Evaluation(table=table, per_cell=pd.DataFrame(cell_rows))
