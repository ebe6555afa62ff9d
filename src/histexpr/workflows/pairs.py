"""Pair-specific pieces of the workflows: ``--pair A:B`` for every model kind.

A pair ``A:B`` asks for the change of a gene's expression from cell type ``B`` to ``A``
(the log fold change on the data's transform). Every trained model answers it: a
differential kind (``kind_of(kind).pairs``) with its own prediction, any other kind with
the difference of its two single-cell predictions
(:func:`~histexpr.estimators.diff.diff_from_model`), the baseline of every differential
model. The train, predict, evaluate, explain and demo workflows call these pieces; there
is no separate differential workflow. DeepDiff folders take ``names={"NAME": "CELL"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr.atomic import atomic_path
from histexpr.data.convert import load_dataset
from histexpr.data.dataset import HistoneDataset, canonical_gene_ids
from histexpr.data.submission import output_gene_ids, value_column
from histexpr.errors import HistexprError
from histexpr.estimators import kind_of
from histexpr.estimators.bundle import check_input, model_task, read_header
from histexpr.estimators.diff import (
    PairAttribution,
    PairPrediction,
    diff_from_model,
    parse_pairs,
)
from histexpr.estimators.intervals import model_calibration
from histexpr.evaluate import diff_metrics

__all__ = [
    "SCORE_COLUMNS",
    "PairEvaluation",
    "check_pair_given",
    "load_pair_data",
    "one_pair",
    "pair_attribution",
    "pair_bounds",
    "pair_prediction",
    "pair_scores",
    "pair_table",
    "parse_pairs",
    "score_label",
    "trained_cells",
    "write_pair_explanation",
]

#: Columns of a table of pair scores (one row per model, pair and gene group).
SCORE_COLUMNS = (
    "model", "pair", "cells", "genes", "n", "pearson", "spearman", "mse", "auc", "n_changed",
)  # fmt: skip


@dataclass
class PairEvaluation:
    """Scores per model and pair (:data:`SCORE_COLUMNS`, plus interval columns), and notes."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def load_pair_data(path, names=None, split: str | None = None, target="auto") -> HistoneDataset:
    """A dataset for pairs: any format; ``names`` maps DeepDiff names to cell ids."""
    opts = {"names": names} if names else {}
    data = load_dataset(path, target=target, **opts)
    return data.select_split(split) if split else data


def one_pair(pair) -> tuple[str, str]:
    """The one pair of ``"A:B"``; more or fewer is a one-line error."""
    pairs = parse_pairs(pair)
    if len(pairs) != 1:
        raise HistexprError(f"give one pair A:B, got {len(pairs)}")
    return pairs[0]


def check_pair_given(kind: str, pair) -> None:
    """Refuse, in one line, a differential ``kind`` asked for without ``--pair``."""
    if not pair and kind_of(kind).pairs:
        raise HistexprError(
            f"{kind} predicts the change between two cell types: give a pair (--pair A:B)"
        )


def score_label(est, path: Path) -> str:
    """How a model's row of a pair table is named: a single-cell kind's is its difference."""
    what = est.kind if kind_of(est.kind).pairs else f"{est.kind} difference"
    return f"{what} ({path.name})"


def pair_prediction(est, data: HistoneDataset, a: str, b: str) -> PairPrediction:
    """Predicted change ``a`` vs ``b``: a differential model's own, else the difference."""
    if kind_of(est.kind).pairs:
        return est.predict_pair(data, a, b)
    return diff_from_model(est, data, a, b)


def trained_cells(est) -> set[str]:
    """The cell types a model trained on: its training pairs' or its contract's."""
    if kind_of(est.kind).pairs:
        return {c for p in est.pairs_ for c in p}
    contract = getattr(est, "contract_", None)
    return set(getattr(contract, "cells", None) or ())


def pair_scores(
    model: str, preds: Sequence[PairPrediction], trained: set[str], known=None
) -> list[dict]:
    """One row of :data:`SCORE_COLUMNS` per pair and gene group.

    ``known``: the model's training genes; then training genes (``genes`` "train",
    optimistic) are scored apart from the others ("new"), as single-cell evaluate
    does. Without a record every gene is in one row ("all").
    """
    rows = []
    for p in preds:
        seen = "seen" if {p.cell_a, p.cell_b} <= trained else "unseen"
        if known is None:
            groups = {"all": np.ones(len(p.gene), bool)}
        else:
            is_known = np.isin(canonical_gene_ids(p.gene), np.asarray(sorted(known), dtype=str))
            groups = {"new": ~is_known, "train": is_known}
        for genes, mask in groups.items():
            if not mask.any():
                continue
            m = diff_metrics(p.observed[mask], p.predicted[mask])
            rows.append(
                {"model": model, "pair": f"{p.cell_a}:{p.cell_b}", "cells": seen, "genes": genes}
                | {k: getattr(m, k) for k in SCORE_COLUMNS[4:]}
            )
    return rows


def pair_bounds(model_dir, calibration, level, est, p: PairPrediction):
    """(lower, upper), shape (n,) each, of one pair's predicted changes."""
    from histexpr.estimators.intervals import bounds, mondrian_groups, pair_label

    genes = read_header(model_dir).train_genes or ()
    seen = {p.cell_a, p.cell_b} <= trained_cells(est)
    group = mondrian_groups(np.full(len(p.gene), seen), np.isin(p.gene, list(genes)))
    label = np.full(len(p.gene), pair_label(p.cell_a, p.cell_b))
    lower, upper, _ = bounds(calibration, level, p.predicted, group, label)
    return lower, upper


def pair_table(model_dir, est, data_path, pairs, names, split, interval, anndata: bool):
    """Predicted changes of ``pairs``: one row per pair and shared gene.

    Columns ``gene, cell_a, cell_b`` and the value column of
    :func:`histexpr.data.submission.value_column` (``predicted_lfc``;
    ``probability_high_difference`` for a classifier), ``lower``/``upper`` with
    ``interval``. ``anndata``: canonical gene ids and the observed change
    (``observed_lfc``) when the data has expression; else the gene ids of predict's
    tidy output.
    """
    calibration, interval = model_calibration(model_dir, interval)
    header = read_header(model_dir)
    data = load_pair_data(data_path, names, split, target="auto")
    check_input(header, data, source=str(data_path))  # the one contract check
    # a classifier's difference is one of probabilities, not a log fold change
    column = value_column(model_task(header), "pair")
    parts = []
    for a, b in pairs:
        p = pair_prediction(est, data, a, b)
        gene = p.gene if anndata else output_gene_ids(p.gene, data.meta)
        part = pd.DataFrame({"gene": gene, "cell_a": a, "cell_b": b})
        part[column] = np.asarray(p.predicted, dtype=np.float64)
        if anndata and p.observed is not None:
            part["observed_lfc"] = np.asarray(p.observed, dtype=np.float64)
        if calibration is not None:
            part["lower"], part["upper"] = pair_bounds(model_dir, calibration, interval, est, p)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def pair_attribution(
    est, data: HistoneDataset, a: str, b: str, n_steps: int = 50, batch_size: int = 256
) -> PairAttribution:
    """Contributions of each gene's marks and bins to its predicted change ``a`` vs ``b``.

    A differential kind gives its own (exact for ridge and LightGBM, integrated gradients
    for diff-convnet). A single-cell network gives the integrated gradients of its
    prediction of ``a`` minus those of ``b`` (zero reference input): they sum to the
    predicted difference, as the reference's prediction is the same for both cells.
    Other kinds are refused in one line. ``data``: with the model's marks, in its order.
    """
    kind = kind_of(est.kind)
    if kind.pairs:
        return est.attribute_pair(data, a, b)
    if "attributions" not in kind.explain or "prior" in kind.explain:
        raise HistexprError(
            f"explain --pair explains a differential model or a network's difference, not "
            f"{est.kind} (explain it without --pair)"
        )
    from histexpr.estimators.diff import pair_examples
    from histexpr.explain import attribute

    gene, XA, XB, lfc = pair_examples(data, a, b)
    module = est.model_

    def ig(X):
        return attribute(module, X, "integrated_gradients", batch_size=batch_size, n_steps=n_steps)

    attribution = (ig(XA) - ig(XB)).astype(np.float32)
    pred = diff_from_model(est, data, a, b).predicted
    return PairAttribution(a, b, gene, attribution, 0.0, pred, lfc)


def write_pair_explanation(
    att: PairAttribution, marks, out: Path, bin_size: int, threshold: float = 1.0
) -> list[Path]:
    """Write one pair's attributions and the figure of their means over up and down genes.

    ``attributions_A_vs_B.npz``: gene, attribution (n, marks, bins), predicted, observed
    (when known), marks, base. ``attribution_A_vs_B.png``: the mean attribution over the
    genes that go up and over those that go down (observed ``|LFC| >= threshold`` when
    known, else the predicted sign).
    """
    from histexpr.plot import figure_grid, plot_attribution_heatmap, save_figure

    a, b = att.cell_a, att.cell_b
    ref = att.observed if att.observed is not None else att.predicted
    thr = max(threshold if att.observed is not None else 0.0, 1e-12)
    groups = {"up": ref >= thr, "down": ref <= -thr}
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"attributions_{a}_vs_{b}.npz", out / f"attribution_{a}_vs_{b}.png"]
    arrays = {
        "gene": att.gene.astype(str),
        "attribution": att.attribution,
        "predicted": att.predicted,
        "marks": np.array(marks, dtype=str),
        "base": np.float32(att.base),
    }
    if att.observed is not None:
        arrays["observed"] = att.observed
    with atomic_path(files[0]) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    fig, axes = figure_grid(2, 2)
    means = {
        name: att.attribution[rows].mean(axis=0) if rows.any() else att.attribution[0] * 0
        for name, rows in groups.items()
    }
    top = max(float(np.abs(m).max()) for m in means.values()) or 1.0
    for ax, (name, mean) in zip(axes, means.items(), strict=True):
        plot_attribution_heatmap(
            mean,
            marks,
            ax=ax,
            title=f"{a} vs {b}: {name} ({int(groups[name].sum())} genes)",
            bin_size=bin_size,
            label="contribution to LFC",
            vmax=top,
        )
    save_figure(fig, files[1])
    return files
