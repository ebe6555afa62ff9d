"""Workflow of ``histexpr predict`` and the streamed model reader shared with evaluate."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from histexpr.data.convert import load_dataset
from histexpr.data.validate import check_unique_examples, one_line, validate_dataset
from histexpr.errors import HistexprError
from histexpr.estimators import load_estimator
from histexpr.estimators.bundle import check_input, model_task, read_header

#: Default memory budget of predict / evaluate for the input block.
DEFAULT_MEMORY_BUDGET = 512 * 2**20
#: A block in memory costs its float32 X plus model working memory (log1p copy,
#: normalised tensor, features); budget rows on about 4 x the raw size.
_BLOCK_OVERHEAD = 4


def parse_size(text: str | int) -> int:
    """Bytes from ``"512MB"``, ``"2GiB"``, ``"100k"`` or a plain number."""
    t = str(text).strip().upper().replace("IB", "B")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        if t.endswith("B"):
            t = t[:-1]
        if t and t[-1] in units:
            size = int(float(t[:-1]) * units[t[-1]])
        else:
            size = int(float(t))
    except (ValueError, OverflowError):
        raise HistexprError(f"cannot read memory size {text!r} (e.g. 512MB, 2GB)") from None
    if size <= 0:
        raise HistexprError(f"memory size must be positive (e.g. 512MB, 2GB), got {text}")
    return size


def rows_for_budget(budget_bytes: int, n_marks: int, n_bins: int) -> int:
    """Examples per block so that one block stays within ``budget_bytes``."""
    per_row = n_marks * n_bins * 4 * _BLOCK_OVERHEAD
    return max(1, int(budget_bytes) // per_row)


def _load_model(model_dir):
    """Load a saved model; a damaged directory is a one-line error, not a traceback."""
    import json
    import zipfile

    errors: tuple[type[BaseException], ...] = (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        EOFError,
        zipfile.BadZipFile,
        json.JSONDecodeError,
    )
    try:
        from safetensors import SafetensorError

        errors += (SafetensorError,)
    except ImportError:  # pragma: no cover - safetensors is a dependency
        pass
    try:
        from lightgbm.basic import LightGBMError

        errors += (LightGBMError,)
    except ImportError:  # pragma: no cover - lightgbm is optional
        pass
    try:
        return load_estimator(model_dir)
    except HistexprError:
        raise
    except errors as exc:
        # EOFError must not escape: click would report it as "aborted".
        raise HistexprError(f"{model_dir}: cannot load the model ({one_line(exc)})") from None


def predict_stream(
    model_dir,
    data_path,
    memory_budget,
    need_target: bool,
    on_open: Callable[[list[str]], None] | None = None,
    progress: bool = False,
    desc: str = "predicting",
    est=None,
    split: str | None = None,
    target: str = "auto",
    reader_opts: dict | None = None,
    keep_target: bool = False,
):
    """Yield (block, prediction) over a data file, block by block.

    ``target`` ("auto", "yes", "no") is how a course npz's expression column is
    read when targets are needed (prediction never reads it).

    HDF5 files are read in blocks sized by ``memory_budget``; other formats are
    loaded whole (they have no lazy reader). Every block is validated before it
    reaches the model, so a bad count is reported, never silently predicted.

    Parameters
    ----------
    on_open : callable, optional
        Called with the data's cell types once, before the first prediction (to
        check options against them before any work is done).
    progress : bool
        Show the progress bar over examples (:func:`histexpr._runtime.progress`).
    est : estimator, optional
        The model of ``model_dir`` when the caller has loaded it already.
    split : str, optional
        Only the examples of this published split (``HistoneDataset.split``, e.g.
        "test"); an error when the data has no split field or no such split.
    reader_opts : dict, optional
        Reader options of a non-HDF5 input (e.g. a deepTools matrix's ``marks``).
    keep_target : bool
        Without ``need_target``: keep the expression values the data has (to report
        them beside the predictions); data whose targets cannot be read are
        predicted without them.
    """
    from histexpr._runtime import progress as progress_bar
    from histexpr.data.hdf5 import is_h5, open_h5

    est = _load_model(model_dir) if est is None else est
    header = read_header(model_dir)
    if is_h5(data_path):
        if reader_opts:
            raise HistexprError(f"{data_path}: option(s) {', '.join(reader_opts)} do not apply")
        with open_h5(data_path) as h:
            check_input(header, h, source=str(data_path), targets=need_target)
            if need_target and not h.has_target:
                raise HistexprError(f"{data_path}: no expression values to evaluate against")
            if len(h) == 0:
                raise HistexprError(f"{data_path}: no examples")
            if on_open is not None:
                on_open(list(h.cells))
            rows = rows_for_budget(parse_size(memory_budget), len(h.marks), h.n_bins)
            names: set[str] = set()

            def blocks():
                for block in h.iter_batches(rows):
                    block = block if need_target or keep_target else block.without_target()
                    validate_dataset(block, data_path, marks=None, n_bins=None, unique=False)
                    n_read = len(block)
                    if split is not None:
                        block = _in_split(block, split, names, data_path)
                    yield block, n_read

            # A model that estimates something per cell type from all its genes (the atlas
            # kinds' similarity to the reference cells) sees the whole input first, so its
            # predictions do not depend on the memory budget (issue #24).
            prepare = getattr(est, "prepare_cells", None)
            if callable(prepare):
                prepare(b for b, _ in blocks() if len(b))
            try:
                with progress_bar(len(h), desc, unit="ex", enabled=progress) as bar:
                    kept = 0
                    for block, n_read in blocks():
                        kept += len(block)
                        if len(block):
                            yield block, est.predict(block)
                        bar.update(n_read)
            finally:
                if callable(prepare):
                    prepare(None)
            if split is not None and kept == 0:
                _in_split(None, split, names, data_path)
        return
    # predict never uses the expression column: NaN there must not stop it (issue 12).
    opts = reader_opts or {}
    data = None
    if keep_target and not need_target:
        try:
            data = load_dataset(data_path, target="auto", **opts)
        except HistexprError:
            data = None  # e.g. NaN in an expression column: predict without it
    if data is None:
        data = load_dataset(data_path, target=target if need_target else "no", **opts)
    check_input(header, data, source=str(data_path), targets=need_target)
    if need_target and not data.has_target:
        raise HistexprError(f"{data_path}: no expression values to evaluate against")
    if len(data) == 0:
        raise HistexprError(f"{data_path}: no examples")
    if split is not None:
        names = set()
        data = _in_split(data, split, names, data_path)
        if len(data) == 0:
            _in_split(None, split, names, data_path)
    if on_open is not None:
        on_open(data.cells)
    with progress_bar(len(data), desc, unit="ex", enabled=progress) as bar:
        yield data, est.predict(data)
        bar.update(len(data))


def _in_split(block, split: str, names: set[str], data_path):
    """The examples of ``block`` in ``split``; ``block=None``: the split matched nothing."""
    if block is not None and block.split is None:
        raise HistexprError(
            f"{data_path}: the data has no split field, so --split {split} cannot be used "
            "(DeepChrome folders and files converted from them carry one)"
        )
    if block is None:
        have = ", ".join(sorted(names)) or "none"
        raise HistexprError(f"{data_path}: no examples in split {split!r} (splits: {have})")
    names.update(np.unique(block.split).tolist())
    return block.subset(block.split == split)


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
) -> int:
    """Predict every example of a data file and write the predictions.

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

    Returns
    -------
    int
        Number of predictions written.
    """
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
    preds, cells, genes, flags, observed, canonical = [], [], [], [], [], []
    for block, pred in predict_stream(
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


def refuse_input_as_output(data_path, out) -> None:
    """An output must never replace the input it is computed from."""
    from pathlib import Path

    src, dst = Path(data_path), Path(out)
    if dst.is_dir():
        raise HistexprError(f"{out}: is a directory; give a file name for the output")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise HistexprError(f"{out}: is the input data; choose another output file")
