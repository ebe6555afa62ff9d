"""Workflow of ``histexpr predict``: every example of a data file, or the change of pairs.

A model of any kind predicts a pair ``--pair A:B`` (:mod:`histexpr.workflows.pairs`): a
differential kind its own change, any other kind the difference of its two predictions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from histexpr.data.validate import check_unique_examples
from histexpr.errors import HistexprError
from histexpr.estimators.bundle import model_task, read_header
from histexpr.workflows.pairs import check_pair_given, one_pair, pair_table, parse_pairs
from histexpr.workflows.stream import (
    DEFAULT_MEMORY_BUDGET,
    load_model,
    parse_size,
    refuse_input_as_output,
    rows_for_budget,
    stream_predictions,
)

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "FORMATS",
    "model_uns",
    "parse_size",
    "predict_file",
    "predict_pairs",
    "rows_for_budget",
]
# the loader predict_file calls (tests swap it for one that flags predictions)
_load_model = load_model

#: Output formats of :func:`predict_file`.
FORMATS = ("tidy", "submission")


#: Per-example flags an estimator may leave after ``predict`` (attribute -> column).
FLAG_ATTRIBUTES = {"atlas_used_": "atlas_used"}


def _flags(est, block) -> dict[str, np.ndarray]:
    """Per-example flags a model reports about its latest predictions, for the tidy output.

    Either a method ``prediction_flags(data) -> {name: (n,) array}`` or the
    attributes of :data:`FLAG_ATTRIBUTES` (e.g. ``atlas_used_`` of the atlas kinds,
    set by ``predict`` for the block just predicted).
    """
    hook = getattr(est, "prediction_flags", None)
    if callable(hook):
        return dict(hook(block))
    out = {}
    for attr, column in FLAG_ATTRIBUTES.items():
        value = getattr(est, attr, None)
        if value is not None and len(value) == len(block):
            out[column] = np.asarray(value).astype(bool)
    return out


def predict_file(
    model_dir,
    data_path,
    out,
    memory_budget: int | str = DEFAULT_MEMORY_BUDGET,
    fmt: str = "tidy",
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    split: str | None = None,
    reader_opts: dict | None = None,
    interval: float | None = None,
    pair: str | None = None,
    names: str | None = None,
) -> int:
    """Predict every example of a data file, or the change of pairs, and write them.

    HDF5 datasets are streamed in blocks that fit ``memory_budget``, so files
    larger than memory work. The output appears only when complete.

    Parameters
    ----------
    model_dir, data_path, out : path
    memory_budget : int or str
        Input block budget, e.g. ``"512MB"``.
    fmt : {"tidy", "submission"}
        "tidy": columns ``cell``, ``gene``, ``prediction`` (``probability_high`` for a
        classifier) and any flag columns the model reports; Parquet when ``out`` ends in
        ``.parquet``, tab-separated for ``.tsv``, AnnData when it ends in ``.h5ad``
        (:mod:`histexpr.data.h5ad`, with the observed values when the data has them), else
        CSV. "submission": the course CSV (``id``, ``expression``; ``probability_high`` for a
        classifier; other suffixes than ``.csv`` are refused).
    progress : bool
        Show a progress bar over the examples.
    log : callable, optional
        Receives one line per flag column: how many predictions it marks.
    split : str, optional
        Predict only the examples of this published split (e.g. "test").
    reader_opts : dict, optional
        Reader options of a non-HDF5 input (e.g. a deepTools matrix's ``marks``).
    interval : float in (0, 1), optional
        Add the columns ``lower`` and ``upper`` of the prediction interval of this
        level (tidy format; the model must be calibrated, ``train --intervals``).
    pair : str, optional
        ``"A:B"``: write the predicted change of ``A`` vs ``B`` instead
        (:func:`predict_pairs`). A differential model needs one.
    names : str, optional
        DeepDiff folder: ``NAME=CELL,...`` cell ids of its file names (with ``pair``).

    Returns
    -------
    int
        Number of predictions written.
    """
    if pair:
        if reader_opts:
            raise HistexprError("--marks and --cell do not apply with --pair; convert first")
        return predict_pairs(model_dir, data_path, pair, out, names, split, interval)
    if names:
        raise HistexprError("--names applies with --pair (or to train a diff-* model)")
    from histexpr.data.submission import (
        is_parquet,
        output_gene_ids,
        prediction_table,
        table_sep,
        value_column,
        write_predictions,
        write_submission,
    )

    if fmt not in FORMATS:
        raise HistexprError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    from histexpr.data.h5ad import is_h5ad

    anndata_out = is_h5ad(out)
    if fmt == "submission" and (is_parquet(out) or anndata_out or table_sep(out) != ","):
        raise HistexprError(f"{out}: the submission format is CSV; use a .csv name")
    refuse_input_as_output(data_path, out)
    calibration = _calibration(model_dir, interval, fmt)
    est = _load_model(model_dir)
    check_pair_given(est.kind, pair)
    preds, cells, genes, flags, observed, canonical = [], [], [], [], [], []
    for block, pred in stream_predictions(
        model_dir,
        data_path,
        memory_budget,
        need_target=False,
        progress=progress,
        est=est,
        split=split,
        reader_opts=reader_opts,
        keep_target=anndata_out,
    ):
        preds.append(pred)
        observed.append(block.y)
        cells.append(block.cell)
        # Gene ids are canonical (ENSG...) in memory; course npz input keeps its integer ids.
        genes.append(output_gene_ids(block.gene, block.meta))
        canonical.append(block.gene)
        if fmt == "tidy":
            flags.append(_flags(est, block))
    if not preds or sum(len(p) for p in preds) == 0:
        raise HistexprError(f"{data_path}: no examples to predict")
    pred = np.concatenate(preds)
    cell, gene = np.concatenate(cells), np.concatenate(genes)
    check_unique_examples(cell, gene, data_path)
    task = model_task(read_header(model_dir))
    if fmt == "submission":
        write_submission(pred, cell, gene, out, value_column(task, "submission"))
        return len(pred)
    names = [n for n in (flags[0] if flags else {}) if all(n in f for f in flags)]
    columns = {n: np.concatenate([f[n] for f in flags]) for n in names}
    for name, column in columns.items():
        if log is not None and column.dtype == bool:
            log(f"{name}: {int(column.sum())} of {len(column)} predictions")
    if calibration is not None:
        columns = {
            **_interval_columns(
                model_dir, calibration, interval, pred, cell, np.concatenate(canonical), log
            ),
            **columns,
        }
    table = prediction_table(pred, cell, gene, value_column(task), columns)
    if not anndata_out:
        write_predictions(table, out)
        return len(pred)
    from histexpr.data.h5ad import write_anndata

    if all(y is not None for y in observed):
        table["observed"] = np.concatenate(observed).astype(np.float64)
    write_anndata(table, out, uns=model_uns(read_header(model_dir)))
    return len(pred)


def predict_pairs(model_dir, data_path, pair, out, names=None, split=None, interval=None) -> int:
    """Write ``gene, cell_a, cell_b, predicted_lfc`` of one pair to ``out``; the rows.

    The value column is named by :func:`histexpr.data.submission.value_column`
    (``probability_high_difference`` for a classifier). ``interval``: add ``lower`` and
    ``upper`` (a calibrated model). An ``out`` ending in ``.h5ad`` gets an AnnData file
    (:mod:`histexpr.data.h5ad`): one observation per pair (several pairs allowed there,
    ``A:B,C:D``), layers ``predicted``, ``lower``/``upper`` with ``interval`` and, when
    the data has expression, ``observed``.
    """
    from histexpr.data.h5ad import is_h5ad, write_anndata
    from histexpr.data.submission import write_table

    anndata = is_h5ad(out)
    pairs = parse_pairs(pair) if anndata else [one_pair(pair)]
    if not pairs:
        raise HistexprError("give at least one pair (--pair A:B)")
    refuse_input_as_output(data_path, out)
    est = _load_model(model_dir)
    table = pair_table(model_dir, est, data_path, pairs, names, split, interval, anndata)
    if anndata:
        uns = model_uns(read_header(model_dir))
        write_anndata(table, out, obs_keys=("cell_a", "cell_b"), uns=uns)
    else:
        write_table(table, out, float_format="%.6g")
    return len(table)


def model_uns(header) -> dict:
    """What an AnnData output records of the model: kind, task, input contract."""
    from dataclasses import asdict

    return {
        "model_kind": header.kind,
        "task": model_task(header),
        "contract": asdict(header.contract),
    }


def _calibration(model_dir, interval: float | None, fmt: str = "tidy"):
    """The model's interval calibration when ``interval`` asks for one (checked first)."""
    if interval is None:
        return None
    from histexpr.estimators.intervals import check_level, model_calibration

    check_level(interval)
    if fmt != "tidy":
        raise HistexprError("--interval adds lower and upper columns to the tidy format only")
    if model_task(read_header(model_dir)) != "regression":
        raise HistexprError("--interval applies to regression models, not classifiers")
    return model_calibration(model_dir, interval)[0]


def _interval_columns(model_dir, calibration, level, pred, cell, gene, log=None) -> dict:
    """``{"lower": (n,), "upper": (n,)}`` of a calibrated model's predictions."""
    from histexpr.estimators.intervals import bounds, describe_use
    from histexpr.evaluate import assign_groups

    header = read_header(model_dir)
    cells, genes = header.contract.cells, header.train_genes  # None: cell groups, pooled
    group = assign_groups(cell, gene, train_cells=cells, train_genes=genes)
    lower, upper, used = bounds(calibration, level, pred, group, cell)
    if log is not None:
        log(describe_use(used))
    return {"lower": lower, "upper": upper}
