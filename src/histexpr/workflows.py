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
from histexpr.bundle import check_input, read_header
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import HistexprError
from histexpr.estimators import NEURAL_KINDS, load_estimator, make_estimator
from histexpr.evaluate import Evaluation, evaluate_predictions
from histexpr.experiment import ExperimentConfig, ExperimentResult, run_experiment

#: Neural settings of the demo only: smaller widths and few epochs keep it within
#: a few minutes on 2 CPU cores. The default configs remain the seed's.
DEMO_NEURAL = (
    "channels=32,32,64,64,128,128,256,256",
    "epochs=12",
    "patience=4",
    "batch_size=256",
)
DEMO_MODELS = ("global-mean", "gene-mean", "ridge", "random-forest", "lightgbm", "ensemble")


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`."""

    model_dir: Path
    valid_metrics: pd.DataFrame | None


def _load(path) -> HistoneDataset:
    from histexpr.data.convert import load_dataset

    return load_dataset(path)


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

    data = _load(data_path)
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
        est.metrics = {**getattr(est, "metrics", {}), "valid": valid_table.iloc[0].to_dict()}
    est.save(out)
    return TrainResult(Path(out), valid_table)


def evaluate_model(model_dir, data_path, unseen_cells: Sequence[str] = (), out=None) -> Evaluation:
    """Score a saved model on a data file with expression values."""
    est = load_estimator(model_dir)
    data = _load(data_path)
    if not data.has_target:
        raise HistexprError(f"{data_path}: no expression values to evaluate against")
    header = read_header(model_dir)
    check_input(header, data.marks, data.n_bins, source=str(data_path))
    evaluation = evaluate_predictions(
        data.y, data.cell, {header.kind: est.predict(data)}, unseen_cells
    )
    if out is not None:
        with atomic_path(out) as tmp:
            evaluation.table.to_csv(tmp, index=False)
    return evaluation


def predict_file(model_dir, data_path, out, batch_size: int = 65536) -> int:
    """Predict every example of a data file and write a submission CSV.

    HDF5 datasets are streamed in blocks of ``batch_size`` examples, so files
    larger than memory work.
    """
    from histexpr.data.hdf5 import is_h5, open_h5
    from histexpr.data.submission import write_submission

    est = load_estimator(model_dir)
    header = read_header(model_dir)
    preds, cells, genes = [], [], []
    if is_h5(data_path):
        with open_h5(data_path) as h:
            check_input(header, h.marks, h.n_bins, source=str(data_path))
            for block in h.iter_batches(batch_size):
                preds.append(est.predict(block))
                cells.append(block.cell)
                genes.append(block.gene)
    else:
        data = _load(data_path)
        check_input(header, data.marks, data.n_bins, source=str(data_path))
        preds, cells, genes = [est.predict(data)], [data.cell], [data.gene]
    if not preds:
        raise HistexprError(f"{data_path}: no examples to predict")
    pred = np.concatenate(preds)
    write_submission(pred, np.concatenate(cells), np.concatenate(genes), out)
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
    data = _load(path)
    config = ExperimentConfig(models=tuple(models or DEMO_MODELS), neural=DEMO_NEURAL)
    result = run_experiment(data, run_dir, config, data_path=str(path), log=log)
    if report:
        try:
            from histexpr.report import write_report
        except ImportError:  # report module not available
            return result
        html = write_report(result.run_dir)
        log(f"report: {html}")
    return result
