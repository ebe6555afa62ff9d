"""Workflow of ``histexpr evaluate``: score a saved model on a data file (streamed).

The table is split by what the model was trained on, as recorded in its model
directory (see :data:`histexpr.evaluate.GROUPS`): cell types trained on or not,
genes trained on or not. Examples that are training genes of training cell types
are scored apart (``seen/train``) with a warning, never pooled into an honest
group. Models that record no training genes (older model directories) are split
by cell type only; models that record no training cell types fall back to
``--unseen`` (every other cell type counts as seen).

Outputs of ``-o OUT``: the group table at ``OUT`` and the per-cell table beside it
at ``OUT``'s name with ``.per_cell`` before the suffix (``eval.csv`` ->
``eval.per_cell.csv``); Parquet when ``OUT`` ends in ``.parquet``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr.data.submission import write_table
from histexpr.data.validate import check_cells, check_unique_examples
from histexpr.errors import HistexprError
from histexpr.estimators.bundle import (
    check_input,
    check_target,
    holds_labels,
    model_task,
    read_header,
)
from histexpr.estimators.intervals import DEFAULT_LEVEL, model_calibration
from histexpr.evaluate import (
    METRIC_NAMES,
    Evaluation,
    evaluate_predictions,
    fitting_metrics,
    keep_metrics,
)
from histexpr.workflows.pairs import (
    SCORE_COLUMNS,
    PairEvaluation,
    check_pair_given,
    load_pair_data,
    pair_bounds,
    pair_prediction,
    pair_scores,
    parse_pairs,
    score_label,
    trained_cells,
)
from histexpr.workflows.stream import (
    DEFAULT_MEMORY_BUDGET,
    load_model,
    refuse_input_as_output,
    stream_predictions,
)

#: Header keys (fields of the bundle header or keys of its ``extra``) that may hold
#: the training cell types and genes, newest first.
_CELL_KEYS = ("train_cells", "cells")
_GENE_KEYS = ("train_genes", "genes")


def _recorded(header, keys) -> list[str] | None:
    for key in keys:
        value = getattr(header, key, None)
        if value is None:
            value = header.extra.get(key)
        # an empty record is no record (older writers left the list empty)
        if value is not None and not isinstance(value, str | bytes) and len(value):
            return [str(v) for v in value]
    return None


def training_record(model_dir, header=None) -> tuple[list[str] | None, list[str] | None]:
    """The training cell types and training genes recorded with a saved model.

    ``header``: the model's :class:`~histexpr.estimators.bundle.BundleHeader` when
    already read.

    Returns
    -------
    (cells, genes) : list of str or None each
        None where the model directory does not record them. Genes are in the
        canonical form of :func:`histexpr.data.dataset.canonical_gene_ids`.
    """
    header = read_header(model_dir) if header is None else header
    cells = _recorded(header, _CELL_KEYS)
    genes = _recorded(header, _GENE_KEYS)
    if genes is None:
        for name in ("train_genes.txt", "genes.txt"):
            path = Path(model_dir) / name
            if path.is_file():
                genes = [g for g in path.read_text().split() if g]
                break
    if genes is not None:
        try:
            from histexpr.data.dataset import canonical_gene_ids
        except ImportError:  # pragma: no cover - older layouts
            pass
        else:
            genes = canonical_gene_ids(np.asarray(genes, dtype=str)).tolist()
    return (cells or None), genes


def _check_unseen(unseen: list[str], data_cells: list[str], train_cells) -> None:
    check_cells(unseen, data_cells, "--unseen")
    if train_cells is not None:
        trained = [c for c in unseen if c in set(train_cells)]
        if trained:
            raise HistexprError(
                f"--unseen: {', '.join(trained)} is a training cell type of the model "
                f"(trained on: {', '.join(train_cells[:12])}"
                f"{', ...' if len(train_cells) > 12 else ''})"
            )


def per_cell_path(out) -> Path:
    """Where ``-o OUT`` puts the per-cell table: ``eval.csv`` -> ``eval.per_cell.csv``."""
    out = Path(out)
    suffix = out.suffix or ".csv"
    return out.with_name(f"{out.stem if out.suffix else out.name}.per_cell{suffix}")


def intervals_path(out) -> Path:
    """Where ``-o OUT`` puts the interval coverage table: ``eval.csv`` -> ``eval.intervals.csv``."""
    out = Path(out)
    suffix = out.suffix or ".csv"
    return out.with_name(f"{out.stem if out.suffix else out.name}.intervals{suffix}")


def output_paths(out, pair=None) -> list[Path]:
    """Every file ``-o OUT`` may write: the table, and without ``pair`` the tables beside it."""
    if out is None:
        return []
    return [Path(out)] if pair else [Path(out), per_cell_path(out), intervals_path(out)]


def evaluate_model(
    model_dir,
    data_path,
    unseen_cells: Sequence[str] = (),
    out=None,
    memory_budget: int | str = DEFAULT_MEMORY_BUDGET,
    progress: bool = False,
    split: str | None = None,
    target: str = "auto",
    interval: float | None = None,
    pair: str | None = None,
    from_model=None,
    names: str | None = None,
) -> Evaluation | PairEvaluation:
    """Score a saved model on a data file with expression values (streamed).

    With ``pair`` (``"A:B[,C:D]"``) the predicted changes of those pairs are scored
    instead (:func:`evaluate_pairs`); a differential model needs them.

    ``split`` scores only the examples of that split of the data's ``split`` field
    (e.g. ``"test"`` of a DeepChrome folder).

    Parameters
    ----------
    model_dir, data_path : path
    unseen_cells : sequence of str
        Cell types to report as unseen. With recorded training cell types this is a
        check only (each must be in the data and not a training cell type); without
        a record it decides the seen / unseen split.
    out : path, optional
        Write the group table there and the per-cell table at :func:`per_cell_path`.
    memory_budget : int or str
        Input block budget, e.g. ``"512MB"``.
    progress : bool
        Show a progress bar over the examples.
    target : {"auto", "yes"}
        How a course npz's expression column is read (auto: per key, by content).
    interval : float in (0, 1), optional
        Level of the prediction intervals scored (coverage and mean width per group,
        ``Evaluation.intervals``, written at :func:`intervals_path`). Default: 0.9
        when the model is calibrated (``train --intervals``), else none.

    pair, from_model, names :
        See :func:`evaluate_pairs` (``from_model`` and ``names`` apply with ``pair`` only).

    Returns
    -------
    Evaluation or PairEvaluation
        ``notes`` holds the warnings to show (training genes scored, no record).
    """
    if pair:
        return evaluate_pairs(model_dir, data_path, pair, from_model, names, split, out, interval)
    if names or from_model:
        raise HistexprError("--names and --from-model apply with --pair")
    unseen = [str(c) for c in unseen_cells]
    for path in output_paths(out)[:2]:
        refuse_input_as_output(data_path, path)
    header = read_header(model_dir)
    check_pair_given(header.kind, pair)
    calibration, level = model_calibration(model_dir, interval, DEFAULT_LEVEL)
    train_cells, train_genes = training_record(model_dir, header)
    ys, cells, genes, preds, target_name = [], [], [], [], None
    stream = stream_predictions(
        model_dir,
        data_path,
        memory_budget,
        need_target=True,
        on_open=lambda data_cells: _check_unseen(unseen, data_cells, train_cells),
        progress=progress,
        desc="evaluating",
        split=split,  # selected before predicting: other examples cost nothing
        target=target,
    )
    for block, pred in stream:
        target_name = block.target if target_name is None else target_name
        ys.append(block.y)
        cells.append(block.cell)
        genes.append(block.gene)
        preds.append(pred)
    if not preds or not sum(len(p) for p in preds):
        where = f" in split {split!r}" if split is not None else ""
        raise HistexprError(f"{data_path}: no examples to evaluate{where}")
    kind = header.kind
    cell, gene, y = np.concatenate(cells), np.concatenate(genes), np.concatenate(ys)
    # blocks are checked one at a time; a pair repeated across blocks is caught here
    check_unique_examples(cell, gene, data_path)
    # the contract's target check, now with every value read (0/1 labels or expression)
    check_target(header, target_name, y, str(data_path))
    task, labels = model_task(header), holds_labels(target_name, y)
    evaluation = evaluate_predictions(
        y,
        cell,
        {kind: np.concatenate(preds)},
        unseen,
        gene=gene,
        train_cells=train_cells,
        train_genes=train_genes,
    )
    fitting = fitting_metrics(task, labels)
    if len(fitting) < len(METRIC_NAMES):
        keep_metrics(evaluation, fitting)
        evaluation.notes.append(
            f"the model is a classifier (it predicts the probability of expression above the "
            f"cell type's median) and the data holds expression values: scored by "
            f"{', '.join(fitting)} of the median split only"
        )
    if train_cells is None:
        evaluation.notes.append(
            "the model records no training cell types: cell types count as seen unless "
            "--unseen names them"
        )
    if train_genes is None:
        evaluation.notes.append(
            "the model records no training genes: genes are not split into known / new, "
            "and training genes of seen cell types are not told apart"
        )
    if calibration is not None:
        from histexpr.estimators.intervals import bounds
        from histexpr.evaluate import assign_groups, interval_coverage

        group = assign_groups(cell, gene, unseen, train_cells, train_genes)
        lower, upper, _ = bounds(calibration, level, np.concatenate(preds), group, cell)
        evaluation.intervals = interval_coverage(np.concatenate(ys), lower, upper, group, level)
        evaluation.notes += [f"intervals: {n}" for n in calibration.notes if "too narrow" in n]
    if out is not None:
        write_table(evaluation.table, Path(out))
        write_table(evaluation.per_cell, per_cell_path(out))
        if evaluation.intervals is not None:
            write_table(evaluation.intervals, intervals_path(out))
    return evaluation


def evaluate_pairs(
    model_dir, data_path, pairs, from_model=None, names=None, split=None, out=None, interval=None
) -> PairEvaluation:
    """Score the predicted log fold changes of ``pairs`` by any model; ``from_model`` beside it.

    Rows per model, pair and gene group (:func:`~histexpr.workflows.pairs.pair_scores`);
    a single-cell model's row is its difference. ``interval``: also score the prediction
    intervals of that level of the (calibrated) model: columns ``level``, ``coverage``
    and ``mean_width`` (default: 0.9 when the model is calibrated).
    """
    from histexpr.data.dataset import canonical_gene_ids
    from histexpr.evaluate import interval_coverage

    pairs = parse_pairs(pairs)
    if not pairs:
        raise HistexprError("give at least one pair (--pair A:B)")
    if out is not None:
        refuse_input_as_output(data_path, out)
    data = load_pair_data(data_path, names, split, target="yes")
    models = [Path(model_dir)] + ([Path(from_model)] if from_model else [])
    rows, notes = [], []
    calibration, interval = model_calibration(model_dir, interval, DEFAULT_LEVEL)
    for path in models:
        header = read_header(path)
        check_input(header, data, source=str(data_path))  # the one contract check
        if model_task(header) == "classification":
            raise HistexprError(
                f"{path}: a classifier predicts probabilities, not expression: the difference "
                "of two is no log fold change to score (use a regression model)"
            )
        est = load_model(path)
        preds = [pair_prediction(est, data, a, b) for a, b in pairs]
        _, genes = training_record(path, header)
        known = None if genes is None else set(genes)
        scored = pair_scores(score_label(est, path), preds, trained_cells(est), known)
        if calibration is not None and path == models[0]:
            for p in preds:
                lower, upper = pair_bounds(path, calibration, interval, est, p)
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
    return PairEvaluation(table, notes)
