"""Workflow of ``histexpr train``: one model from a data file, genes held out for validation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from histexpr.config import parse_overrides
from histexpr.data.convert import load_dataset
from histexpr.data.validate import check_cells
from histexpr.errors import HistexprError
from histexpr.estimators import fit_estimator, make_estimator, trains_network
from histexpr.estimators.auto import AutoResult, choose
from histexpr.estimators.bundle import record_auto
from histexpr.evaluate import evaluate_predictions


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`."""

    model_dir: Path
    valid_metrics: pd.DataFrame | None
    #: The kind trained (the chosen one for ``auto``).
    kind: str = ""
    #: The comparison of ``--model auto`` (None for a named kind).
    auto: AutoResult | None = None


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
    reader_opts: dict | None = None,
    intervals: bool = False,
) -> TrainResult:
    """Train one model on a data file.

    Validation data: the examples of ``valid_split`` when given (the published protocol:
    train on ``train_split``, choose on ``valid_split``), else ``valid_fraction`` of the
    genes held out at random. ``kind="auto"`` first chooses the kind by cross-validation on
    the training genes (:mod:`histexpr.estimators.auto`), then trains it like a named kind
    and records the comparison in ``model.json``. ``train_split`` restricts training to one split of the
    data's ``split`` field; ``missing`` ("error"/"drop") is the DeepChrome RPKM join's
    choice for genes without RPKM; ``reader_opts`` go to the reader (e.g. a deepTools
    matrix's ``marks``, ``cell``, ``expression``). ``intervals``: also calibrate prediction
    intervals and store them with the model (:func:`histexpr.estimators.intervals.calibrate`).
    """
    from histexpr.data.splits import hold_out_genes

    opts = {"missing": missing} if missing else {}
    opts.update(reader_opts or {})
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
    auto = None
    if kind == "auto":
        auto = choose(data, parse_overrides(overrides), seed, log=log)
        log(auto.summary())
        kind, overrides = auto.chosen, auto.overrides
    est = make_estimator(kind, overrides or None)
    if intervals and getattr(getattr(est, "train_cfg", None), "task", "") == "classification":
        raise HistexprError("--intervals applies to regression models, not classifiers")
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
    if intervals:
        from histexpr.estimators.intervals import calibrate, save_calibration

        cal = calibrate(kind, overrides or None, est, data, valid, seed=seed, log=log)
        save_calibration(out, cal)
    if auto is not None:
        record_auto(out, auto.table())
    return TrainResult(Path(out), valid_table, kind, auto)
