"""Workflows behind the CLI commands: train, evaluate, predict and the demo.

Each function takes paths, calls the library and returns a result object; the
CLI only parses options and prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr.atomic import atomic_path
from histexpr.data.convert import load_dataset
from histexpr.data.validate import check_unique_examples, one_line, validate_dataset
from histexpr.errors import HistexprError
from histexpr.estimators import NEURAL_KINDS, load_estimator, make_estimator
from histexpr.estimators.bundle import check_input, read_header
from histexpr.evaluate import Evaluation, evaluate_predictions
from histexpr.workflows.experiment import (
    DEFAULT_MODELS,
    ExperimentConfig,
    ExperimentResult,
    run_experiment,
)

#: Neural settings of the demo only: smaller widths and few epochs keep it within
#: a few minutes on 2 CPU cores. The default configs remain the seed's.
DEMO_NEURAL = (
    "channels=32,32,64,64,128,128,256,256",
    "epochs=12",
    "patience=4",
    "batch_size=256",
)


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`."""

    model_dir: Path
    valid_metrics: pd.DataFrame | None


def train_model(
    data_path,
    out,
    kind: str,
    cells: Sequence[str] = (),
    exclude_cells: Sequence[str] = (),
    valid_fraction: float = 0.1,
    seed: int = 0,
    overrides: Sequence[str] = (),
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train one model on a data file, holding out a fraction of genes for validation."""
    from histexpr.data.splits import split_genes

    data = load_dataset(data_path)
    if cells:
        data = data.select_cells(cells)
    if exclude_cells:
        data = data.select_cells(exclude_cells, exclude=True)
    if len(data) == 0:
        raise HistexprError(f"{data_path}: no examples left after cell selection")
    if not data.has_target:
        raise HistexprError(f"{data_path}: no expression values to train on")
    est = make_estimator(kind, list(overrides) or None)
    valid = None
    if valid_fraction > 0:
        split = split_genes(
            np.unique(data.gene),
            "random",
            valid_fraction=valid_fraction,
            test_fraction=0.0,
            seed=seed,
        )
        valid = data.select_genes(split.valid)
        data = data.select_genes(split.valid, exclude=True)
    log(f"training {kind} on {len(data)} examples ({len(data.cells)} cell types)")
    fit_kw = {"resume": True} if (resume and kind in NEURAL_KINDS) else {}
    est.fit(data, valid, run_dir=Path(out), **fit_kw)
    valid_table = None
    if valid is not None and len(valid):
        ev = evaluate_predictions(valid.y, valid.cell, {kind: est.predict(valid)})
        valid_table = ev.table[ev.table.group == "all"].reset_index(drop=True)
        est.metrics_ = {**est.metrics_, "heldout_genes": valid_table.iloc[0].to_dict()}
    est.save(out)
    return TrainResult(Path(out), valid_table)


#: Default memory budget of predict / evaluate for the input block.
DEFAULT_MEMORY_BUDGET = 512 * 2**20
#: A block in memory costs its float32 X plus model working memory (log1p copy,
#: normalised tensor, features); budget rows on about 4 x the raw size.
_BLOCK_OVERHEAD = 4


def parse_size(text: str | int) -> int:
    """Bytes from ``"512MB"``, ``"2GiB"``, ``"100k"`` or a plain number."""
    if isinstance(text, int):
        return text
    t = str(text).strip().upper().replace("IB", "B")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        if t.endswith("B"):
            t = t[:-1]
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(float(t))
    except ValueError:
        raise HistexprError(f"cannot read memory size {text!r} (e.g. 512MB, 2GB)") from None


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


def _stream(model_dir, data_path, memory_budget, need_target: bool):
    """Yield (block, prediction) over a data file, block by block.

    HDF5 files are read in blocks sized by ``memory_budget``; other formats are
    loaded whole (they have no lazy reader). Every block is validated before it
    reaches the model, so a bad count is reported, never silently predicted.
    """
    from histexpr.data.hdf5 import is_h5, open_h5

    est = _load_model(model_dir)
    header = read_header(model_dir)
    if is_h5(data_path):
        with open_h5(data_path) as h:
            check_input(header, h.marks, h.n_bins, source=str(data_path))
            if need_target and not h.has_target:
                raise HistexprError(f"{data_path}: no expression values to evaluate against")
            if len(h) == 0:
                raise HistexprError(f"{data_path}: no examples")
            rows = rows_for_budget(parse_size(memory_budget), len(h.marks), h.n_bins)
            for block in h.iter_batches(rows):
                validate_dataset(block, data_path, marks=None, n_bins=None, unique=False)
                yield block, est.predict(block)
        return
    data = load_dataset(data_path)
    check_input(header, data.marks, data.n_bins, source=str(data_path))
    if need_target and not data.has_target:
        raise HistexprError(f"{data_path}: no expression values to evaluate against")
    if len(data) == 0:
        raise HistexprError(f"{data_path}: no examples")
    yield data, est.predict(data)


def evaluate_model(
    model_dir,
    data_path,
    unseen_cells: Sequence[str] = (),
    out=None,
    memory_budget: int | str = DEFAULT_MEMORY_BUDGET,
) -> Evaluation:
    """Score a saved model on a data file with expression values (streamed)."""
    ys, cells, genes, preds = [], [], [], []
    for block, pred in _stream(model_dir, data_path, memory_budget, need_target=True):
        ys.append(block.y)
        cells.append(block.cell)
        genes.append(block.gene)
        preds.append(pred)
    if not preds:
        raise HistexprError(f"{data_path}: no examples to evaluate")
    kind = read_header(model_dir).kind
    cell = np.concatenate(cells)
    # blocks are checked one at a time; a pair repeated across blocks is caught here
    check_unique_examples(cell, np.concatenate(genes), data_path)
    evaluation = evaluate_predictions(
        np.concatenate(ys), cell, {kind: np.concatenate(preds)}, unseen_cells
    )
    if out is not None:
        with atomic_path(out) as tmp:
            evaluation.table.to_csv(tmp, index=False)
    return evaluation


def predict_file(
    model_dir, data_path, out, memory_budget: int | str = DEFAULT_MEMORY_BUDGET
) -> int:
    """Predict every example of a data file and write a submission CSV.

    HDF5 datasets are streamed in blocks that fit ``memory_budget``, so files
    larger than memory work. The CSV appears only when complete.
    """
    from histexpr.data.submission import write_submission

    preds, cells, genes = [], [], []
    for block, pred in _stream(model_dir, data_path, memory_budget, need_target=False):
        preds.append(pred)
        cells.append(block.cell)
        genes.append(block.gene)
    if not preds or sum(len(p) for p in preds) == 0:
        raise HistexprError(f"{data_path}: no examples to predict")
    pred = np.concatenate(preds)
    cell, gene = np.concatenate(cells), np.concatenate(genes)
    check_unique_examples(cell, gene, data_path)
    write_submission(pred, cell, gene, out)
    return len(pred)


def run_demo(
    run_dir,
    models: Sequence[str] | None = None,
    report: bool = True,
    log: Callable[[str], None] = print,
) -> ExperimentResult:
    """The main job on the embedded simulated data set (generated once, then cached)."""
    from histexpr.simulator import default_dataset

    path = default_dataset()
    log(f"data: {path}")
    data = load_dataset(path)
    config = ExperimentConfig(models=tuple(models or DEFAULT_MODELS), neural=DEMO_NEURAL)
    result = run_experiment(data, run_dir, config, data_path=str(path), log=log)
    if report:
        from histexpr.report import write_data_summary, write_report

        write_data_summary(data, result.run_dir)
        neural = [m for m in config.models if m in NEURAL_KINDS]
        if neural:
            from histexpr.workflows.explain import explain_run

            # one seen and one unseen cell type, as the seed's Fig. 4 compares
            cells = result.train_cells[:1] + result.unseen_cells[:1]
            log(f"explaining {neural[0]} on {', '.join(cells)} ...")
            explain_run(
                result.run_dir,
                data.select_cells(cells),
                cells,
                model_kind=neural[0],
                max_per_cell=200,
                n_steps=32,
            )
        html = write_report(result.run_dir)
        log(f"report: {html}")
    return result
