"""Workflows of differential expression between two cell types (``--pair A:B``).

- :func:`train_diff` -- ``histexpr train --model diff-ridge|diff-lightgbm|diff-convnet
  [--pairs A:B,...]``
- :func:`predict_diff` -- ``histexpr predict MODEL DATA --pair A:B``: a tidy table
  ``gene, cell_a, cell_b, predicted_lfc``;
- :func:`evaluate_diff` -- ``histexpr evaluate MODEL DATA --pair A:B [--from-model OTHER]``;
- :func:`explain_diff` -- ``histexpr explain MODEL --data D --pair A:B``;
- :func:`run_diff_demo` -- the demo's differential section (two pairs).

Any trained histexpr model works where a differential one does: a single-cell model
predicts the change as the difference of its two predictions
(:func:`~histexpr.estimators.diff.diff_from_model`), the baseline of every
differential model. DeepDiff folders take ``names={"NAME": "CELL"}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr.atomic import atomic_path
from histexpr.config import parse_overrides
from histexpr.data.convert import load_dataset
from histexpr.data.dataset import HistoneDataset, canonical_gene_ids
from histexpr.data.submission import output_gene_ids, value_column, write_table
from histexpr.data.validate import check_cells
from histexpr.errors import HistexprError
from histexpr.estimators import DIFF_KINDS, fit_estimator, load_estimator, make_estimator
from histexpr.estimators.auto import choose
from histexpr.estimators.bundle import check_input, model_task, read_header, record_auto
from histexpr.estimators.diff import PairPrediction, diff_from_model, parse_pairs
from histexpr.estimators.intervals import DEFAULT_LEVEL, model_calibration
from histexpr.evaluate import diff_metrics, interval_coverage
from histexpr.workflows.evaluate import training_record

__all__ = [
    "DiffEvaluation",
    "DiffTrainResult",
    "evaluate_diff",
    "explain_diff",
    "is_diff_kind",
    "load_pair_data",
    "pair_prediction",
    "predict_diff",
    "run_diff_demo",
    "train_diff",
]

#: Columns of a differential score table.
SCORE_COLUMNS = (
    "model", "pair", "cells", "genes", "n", "pearson", "spearman", "mse", "auc", "n_changed",
)  # fmt: skip


def is_diff_kind(kind: str | None) -> bool:
    """Whether ``kind`` is a differential model kind (or ``diff-auto``, the choice among them)."""
    return kind in DIFF_KINDS or kind == "diff-auto"


def load_pair_data(path, names=None, split: str | None = None, target="auto") -> HistoneDataset:
    """A dataset for pairs: any format; ``names`` maps DeepDiff names to cell ids."""
    opts = {"names": names} if names else {}
    data = load_dataset(path, target=target, **opts)
    return data.select_split(split) if split else data


@dataclass
class DiffTrainResult:
    """Outcome of :func:`train_diff`: the model and its held-out-gene scores per pair."""

    model_dir: Path
    valid_metrics: pd.DataFrame | None
    #: The kind trained (the chosen one for ``diff-auto``).
    kind: str = ""


def _score_rows(
    model: str, preds: Sequence[PairPrediction], trained: set[str], known=None
) -> list[dict]:
    """One row per pair and gene group.

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
                {
                    "model": model,
                    "pair": f"{p.cell_a}:{p.cell_b}",
                    "cells": seen,
                    "genes": genes,
                    "n": m.n,
                    "pearson": m.pearson,
                    "spearman": m.spearman,
                    "mse": m.mse,
                    "auc": m.auc,
                    "n_changed": m.n_changed,
                }
            )
    return rows


def train_diff(
    data_path,
    out,
    kind: str,
    pairs: Sequence[str] | str = (),
    cells: Sequence[str] = (),
    exclude_cells: Sequence[str] = (),
    valid_fraction: float = 0.1,
    seed: int = 0,
    overrides: dict | Sequence[str] = (),
    names=None,
    train_split: str | None = None,
    valid_split: str | None = None,
    log: Callable[[str], None] = print,
    intervals: bool = False,
) -> DiffTrainResult:
    """Train a differential model on pairs of the data's cell types and save it.

    Validation (scored per training pair): the examples of ``valid_split`` when given,
    else ``valid_fraction`` of the genes held out at random. ``intervals``: also
    calibrate prediction intervals of the change (:mod:`histexpr.estimators.intervals`).
    """
    from histexpr.data.splits import hold_out_genes

    if not is_diff_kind(kind):
        raise HistexprError(f"{kind} is not a differential kind ({', '.join(DIFF_KINDS)})")
    data = load_pair_data(data_path, names, None, target="yes")
    valid = data.select_split(valid_split) if valid_split else None
    if train_split:
        data = data.select_split(train_split)
    elif valid_split:
        data = data.subset(data.split != valid_split)
    if cells:
        data = data.select_cells(check_cells(cells, data.cells, "--cells"))
    if exclude_cells:
        data = data.select_cells(
            check_cells(exclude_cells, data.cells, "--exclude-cells"), exclude=True
        )
    over = dict(overrides) if isinstance(overrides, dict) else list(overrides)
    if pairs:
        text = ",".join(f"{a}:{b}" for a, b in parse_pairs(pairs))
        over = {**over, "pairs": text} if isinstance(over, dict) else [*over, f"pairs={text}"]
    if valid is not None:
        valid = valid.select_cells([c for c in valid.cells if c in data.cells])
    elif valid_fraction > 0:
        data, valid = hold_out_genes(data, valid_fraction, seed)
    auto = None
    if kind == "diff-auto":  # chosen by CV over genes on the training part, then as named
        auto = choose(data, parse_overrides(over), seed, diff=True, log=log)
        log(auto.summary())
        kind, over = auto.chosen, auto.overrides
    est = make_estimator(kind, over or None)
    log(f"training {kind} on {len(data.cells)} cell types, {len(np.unique(data.gene))} genes")
    fit_estimator(est, data, valid, run_dir=Path(out))
    log(f"{kind}: {len(est.pairs_)} training pairs")
    table = None
    if valid is not None and len(valid):
        preds = [est.predict_pair(valid, a, b) for a, b in est.pairs_]
        table = pd.DataFrame(_score_rows(kind, preds, set(data.cells)))
        est.metrics_ = {
            **est.metrics_,
            "heldout_genes": {
                "mean_pearson": float(table.pearson.mean()),
                "mean_mse": float(table.mse.mean()),
            },
        }
    est.save(out)
    if intervals:
        from histexpr.estimators.intervals import calibrate, save_calibration

        save_calibration(out, calibrate(kind, over or None, est, data, valid, seed=seed, log=log))
    if auto is not None:
        record_auto(out, auto.table())
    return DiffTrainResult(Path(out), table, kind)


def pair_prediction(estimator, data: HistoneDataset, a: str, b: str) -> PairPrediction:
    """Predicted change ``a`` vs ``b``: a differential model's own, else the difference."""
    if hasattr(estimator, "predict_pair"):
        return estimator.predict_pair(data, a, b)
    return diff_from_model(estimator, data, a, b)


def _one_pair(pair) -> tuple[str, str]:
    pairs = parse_pairs(pair)
    if len(pairs) != 1:
        raise HistexprError(f"give one pair A:B, got {len(pairs)}")
    return pairs[0]


def predict_diff(model_dir, data_path, pair, out, names=None, split=None, interval=None) -> int:
    """Write ``gene, cell_a, cell_b, predicted_lfc`` of one pair to ``out`` (CSV); rows.

    The value column is named by :func:`histexpr.data.submission.value_column`
    (``probability_high_difference`` for a classifier). ``interval``: add ``lower`` and
    ``upper``, the prediction interval of that level (a calibrated model, ``train
    --intervals``). An ``out`` ending in ``.h5ad`` gets an AnnData file instead
    (:mod:`histexpr.data.h5ad`): one observation per pair (several pairs allowed there,
    ``A:B,C:D``), layers ``predicted``, ``lower``/``upper`` with ``interval`` and, when
    the data has expression, ``observed``.
    """
    from histexpr.data.h5ad import is_h5ad, write_anndata
    from histexpr.workflows.predict import model_uns

    anndata = is_h5ad(out)
    pairs = parse_pairs(pair) if anndata else [_one_pair(pair)]
    if not pairs:
        raise HistexprError("give at least one pair (--pair A:B)")
    table = _pair_table(model_dir, data_path, pairs, names, split, interval, anndata)
    if anndata:
        uns = model_uns(read_header(model_dir))
        write_anndata(table, out, obs_keys=("cell_a", "cell_b"), uns=uns)
    else:
        write_table(table, out, float_format="%.6g")
    return len(table)


def _pair_table(model_dir, data_path, pairs, names, split, interval, anndata: bool):
    """Predicted changes of ``pairs``: one row per pair and shared gene.

    ``anndata``: canonical gene ids and the observed change (``observed_lfc``) when the
    data has expression; else the gene ids of predict's tidy output.
    """
    calibration, interval = model_calibration(model_dir, interval)
    header = read_header(model_dir)
    est = load_estimator(model_dir)
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
            part["lower"], part["upper"] = _pair_bounds(model_dir, calibration, interval, est, p)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _pair_bounds(model_dir, calibration, level, est, p: PairPrediction):
    """(lower, upper), shape (n,) each, of one pair's predicted changes."""
    from histexpr.estimators.bundle import read_header
    from histexpr.estimators.intervals import bounds, mondrian_groups, pair_label

    genes = read_header(model_dir).train_genes or ()
    seen = {p.cell_a, p.cell_b} <= _trained_cells(est)
    group = mondrian_groups(np.full(len(p.gene), seen), np.isin(p.gene, list(genes)))
    label = np.full(len(p.gene), pair_label(p.cell_a, p.cell_b))
    lower, upper, _ = bounds(calibration, level, p.predicted, group, label)
    return lower, upper


@dataclass
class DiffEvaluation:
    """Scores per model and pair (:data:`SCORE_COLUMNS`), and notes."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _trained_cells(est) -> set[str]:
    pairs = getattr(est, "pairs_", None)
    if pairs:
        return {c for p in pairs for c in p}
    contract = getattr(est, "contract_", None)
    return set(getattr(contract, "cells", None) or ())


def evaluate_diff(
    model_dir, data_path, pairs, from_model=None, names=None, split=None, out=None, interval=None
) -> DiffEvaluation:
    """Score predicted log fold changes of ``pairs``; ``from_model``: the baseline beside it.

    ``interval``: also score the prediction intervals of that level of the (calibrated)
    model: columns ``level``, ``coverage`` and ``mean_width`` (default: 0.9 when
    the model is calibrated).
    """
    pairs = parse_pairs(pairs)
    if not pairs:
        raise HistexprError("give at least one pair (--pair A:B)")
    data = load_pair_data(data_path, names, split, target="yes")
    models = [Path(model_dir)] + ([Path(from_model)] if from_model else [])
    rows, notes = [], []
    calibration, interval = model_calibration(model_dir, interval, DEFAULT_LEVEL)
    for path in models:
        check_input(read_header(path), data, source=str(data_path))  # the one contract check
        if model_task(read_header(path)) == "classification":
            raise HistexprError(
                f"{path}: a classifier predicts probabilities, not expression: the difference "
                "of two is no log fold change to score (use a regression model)"
            )
        est = load_estimator(path)
        label = f"{est.kind} ({path.name})"
        if not hasattr(est, "predict_pair"):
            label = f"{est.kind} difference ({path.name})"
        preds = [pair_prediction(est, data, a, b) for a, b in pairs]
        _, genes = training_record(path)
        known = None if genes is None else set(genes)
        scored = _score_rows(label, preds, _trained_cells(est), known)
        if calibration is not None and path == models[0]:
            for p in preds:
                lower, upper = _pair_bounds(path, calibration, interval, est, p)
                is_known = np.isin(canonical_gene_ids(p.gene), sorted(known or ()))
                masks = {"all": np.ones(len(p.gene), bool), "new": ~is_known, "train": is_known}
                for row in (r for r in scored if r["pair"] == f"{p.cell_a}:{p.cell_b}"):
                    m = masks[row["genes"]]
                    cov = interval_coverage(
                        p.observed[m], lower[m], upper[m], np.full(m.sum(), "all"), interval
                    )
                    row.update(cov.iloc[0][["level", "coverage", "mean_width"]].to_dict())
        rows += scored
        gene = canonical_gene_ids(preds[0].gene)
        overlap = 0 if known is None else int(np.isin(gene, sorted(known)).sum())
        if overlap:
            notes.append(
                f"{path.name}: {overlap} of {len(gene)} genes were training genes: scored "
                "apart (genes = train, optimistic), left out of the new-gene rows"
            )
        elif known is None:
            notes.append(
                f"{path.name}: the model records no training genes: genes are not split "
                "into training / new"
            )
    extra = ["level", "coverage", "mean_width"] if calibration is not None else []
    table = pd.DataFrame(rows, columns=[*SCORE_COLUMNS, *extra])
    if out is not None:
        write_table(table, out, float_format="%.6g")
    return DiffEvaluation(table, notes)


def explain_diff(
    model_dir, data_path, pair, out=None, names=None, split=None, threshold: float = 1.0
) -> list[Path]:
    """Per-gene attributions of a pair's predicted change, and their mean over up/down genes.

    Writes ``attributions_A_vs_B.npz`` (gene, attribution (n, marks, bins), predicted,
    observed, marks) and ``attribution_A_vs_B.png`` (mean over genes that go up and over
    those that go down: observed ``|LFC| >= threshold`` when known, else predicted sign).
    """
    from histexpr.plot import figure_grid, plot_attribution_heatmap, save_figure

    a, b = _one_pair(pair)
    est = load_estimator(model_dir)
    if not hasattr(est, "attribute_pair"):
        raise HistexprError(f"explain --pair needs a differential model ({', '.join(DIFF_KINDS)})")
    data = load_pair_data(data_path, names, split, target="auto")
    check_input(read_header(model_dir), data, source=str(data_path))  # the one contract check
    att = est.attribute_pair(data, a, b)
    out = Path(out) if out is not None else Path(f"{model_dir}.explain")
    ref = att.observed if att.observed is not None else att.predicted
    thr = threshold if att.observed is not None else 0.0
    groups = {"up": ref >= max(thr, 1e-12), "down": ref <= -max(thr, 1e-12)}
    stem = f"{a}_vs_{b}"
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"attributions_{stem}.npz", out / f"attribution_{stem}.png"]
    arrays = {
        "gene": att.gene.astype(str),
        "attribution": att.attribution,
        "predicted": att.predicted,
        "marks": np.array(est.marks, dtype=str),
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
            est.marks,
            ax=ax,
            title=f"{a} vs {b}: {name} ({int(groups[name].sum())} genes)",
            bin_size=int(data.meta.get("bin_size", 100)),
            label="contribution to LFC",
            vmax=top,
        )
    save_figure(fig, files[1])
    return files


def run_diff_demo(
    data: HistoneDataset,
    out_dir,
    train_cells: Sequence[str],
    unseen_cells: Sequence[str],
    test_genes: Sequence[str] | None = None,
    max_pairs: int = 6,
    log: Callable[[str], None] = print,
) -> DiffEvaluation:
    """The demo's differential section: ``diff-ridge`` vs the ridge difference on two pairs.

    Both models train on ``train_cells`` x the genes not in ``test_genes``; the pairs are
    two training cell types (seen) and an unseen cell type vs a training one, scored on
    ``test_genes`` (default: every gene). Writes ``OUT_DIR/differential.csv``.
    """
    train_cells, unseen_cells = list(train_cells), list(unseen_cells)
    if len(train_cells) < 2:
        raise HistexprError("the differential demo needs two training cell types")
    test_genes = np.unique(data.gene) if test_genes is None else np.asarray(test_genes)
    fit_genes = np.setdiff1d(np.unique(data.gene), test_genes)
    train = data.select_cells(train_cells)
    train = train.select_genes(fit_genes) if len(fit_genes) else train
    pairs = [(train_cells[0], train_cells[1])]
    if unseen_cells:
        pairs.append((unseen_cells[0], train_cells[0]))
    test = data.select_cells(sorted({c for p in pairs for c in p})).select_genes(test_genes)
    names = ", ".join(f"{a}:{b}" for a, b in pairs)
    log(f"differential: diff-ridge on {len(train.cells)} cell types, pairs {names}")
    rows = []
    for kind, over in (("diff-ridge", [f"max_pairs={max_pairs}"]), ("ridge", None)):
        est = make_estimator(kind, over).fit(train)
        label = kind if is_diff_kind(kind) else f"{kind} difference"
        preds = [pair_prediction(est, test, a, b) for a, b in pairs]
        rows += _score_rows(label, preds, set(train.cells))
    table = pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
    out = Path(out_dir) / "differential.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return DiffEvaluation(table, [f"wrote {out}"])
