"""Workflow of ``histexpr train``: one model from a data file, genes held out for validation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from histexpr.data.convert import load_dataset
from histexpr.data.validate import check_cells
from histexpr.errors import HistexprError
from histexpr.estimators import fit_estimator, make_estimator, trains_network
from histexpr.evaluate import evaluate_predictions


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
    overrides: Sequence[str] | dict = (),
    resume: bool = False,
    log: Callable[[str], None] = print,
    target: str = "auto",
    train_split: str | None = None,
    valid_split: str | None = None,
    missing: str | None = None,
) -> TrainResult:
    """Train one model on a data file.

    Validation data: the examples of ``valid_split`` when given (the published protocol:
    train on ``train_split``, choose on ``valid_split``), else ``valid_fraction`` of the
    genes held out at random. ``train_split`` restricts training to one split of the
    data's ``split`` field; ``missing`` ("error"/"drop") is the DeepChrome RPKM join's
    choice for genes without RPKM.
    """
    from histexpr.data.splits import hold_out_genes

    opts = {"missing": missing} if missing else {}
    data = load_dataset(data_path, target=target, **opts)  # auto|yes|no, see load_dataset
    if cells:
        data = data.select_cells(check_cells(cells, data.cells, "--cells"))
    if exclude_cells:
        data = data.select_cells(
            check_cells(exclude_cells, data.cells, "--exclude-cells"), exclude=True
        )
    if len(data) == 0:
        raise HistexprError(f"{data_path}: no examples left after cell selection")
    if not data.has_target:
        raise HistexprError(f"{data_path}: no expression values to train on")
    est = make_estimator(kind, overrides or None)
    valid = None
    if valid_split:
        valid = data.select_split(valid_split)
    if train_split:
        data = data.select_split(train_split)
    elif valid_split:
        data = data.subset(data.split != valid_split)
    if valid_split:
        log(f"validation: split {valid_split!r} ({len(valid)} examples)")
    elif valid_fraction > 0:
        data, valid = hold_out_genes(data, valid_fraction, seed)
    log(f"training {kind} on {len(data)} examples ({len(data.cells)} cell types)")
    fit_kw = {"resume": True} if (resume and trains_network(kind)) else {}
    fit_estimator(est, data, valid, run_dir=Path(out), **fit_kw)
    if est.metrics_.get("selection"):
        log(f"{kind}: {est.metrics_['selection']}")
    valid_table = None
    if valid is not None and len(valid):
        ev = evaluate_predictions(valid.y, valid.cell, {kind: est.predict(valid)})
        valid_table = ev.table[ev.table.group == "all"].reset_index(drop=True)
        est.metrics_ = {**est.metrics_, "heldout_genes": valid_table.iloc[0].to_dict()}
    est.save(out)
    return TrainResult(Path(out), valid_table)
