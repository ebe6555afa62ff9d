"""Workflow of ``histexpr train``: one model of any kind from a data file, genes held out.

Every kind trains here, a differential one (``kind_of(kind).pairs``: trained on pairs of
the data's cell types, scored per training pair) as well as any other. The options that
apply to some kinds only (``--atlas``, ``--resume``, ``--pairs``) are checked against the
kind's declaration (:mod:`histexpr.estimators.kinds`) before any work.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from histexpr.atomic import guard_output
from histexpr.config import parse_overrides
from histexpr.data.convert import load_dataset
from histexpr.data.validate import check_cells
from histexpr.errors import HistexprError
from histexpr.estimators import defines, fit_estimator, kind_of, make_estimator
from histexpr.estimators.auto import AutoResult, choose
from histexpr.estimators.bundle import record_auto
from histexpr.estimators.diff import parse_pairs
from histexpr.evaluate import evaluate_predictions
from histexpr.workflows.pairs import pair_scores

__all__ = ["AUTO_TASKS", "TrainResult", "check_options", "time_budget_notes", "train_model"]

#: The automatic choices and the task of the kinds each chooses among.
AUTO_TASKS = {"auto": "expression", "diff-auto": "difference"}


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`."""

    model_dir: Path
    #: Held-out scores: the evaluation groups of an expression kind (one row, "all"), or
    #: one row per training pair of a differential kind (``pair`` column).
    valid_metrics: pd.DataFrame | None
    #: The kind trained (the chosen one for ``auto``).
    kind: str = ""
    #: The comparison of ``--model auto`` (None for a named kind).
    auto: AutoResult | None = None
    #: Lines for the user (e.g. members stopped by the time budget).
    notes: list[str] = field(default_factory=list)


def _task(kind: str) -> str:
    return AUTO_TASKS.get(kind) or kind_of(kind).task


def check_options(
    kind: str,
    atlas: str | None = None,
    atlas_values: str | None = None,
    resume: bool = False,
    pairs=None,
    names=None,
    valid_fraction: float = 0.1,
) -> Path | None:
    """Refuse, in one line, options that do not apply to ``kind``; the ``--atlas`` file.

    ``--atlas``/``--atlas-values``: kinds that read an atlas (and ``auto``, which then
    tries them); ``--resume``: kinds that train a network with checkpoints;
    ``--pairs``/``--names``: differential kinds.
    """
    spec = None if kind in AUTO_TASKS else kind_of(kind)  # an unknown kind: one line
    uses_atlas = kind == "auto" or (spec is not None and spec.needs_atlas)
    if (atlas is not None or atlas_values is not None) and not uses_atlas:
        raise HistexprError(f"--atlas and --atlas-values apply to the atlas kinds, not {kind}")
    atlas_file = Path(atlas) if atlas and atlas not in ("train", "roadmap") else None
    if atlas_file is not None and not atlas_file.is_file():
        raise HistexprError(f"{atlas_file}: atlas table not found")
    # the differential network trains without checkpoints: nothing to continue
    if resume and (spec is None or not spec.network or spec.pairs):
        raise HistexprError(
            f"--resume continues an interrupted neural training; {kind} has no "
            "checkpoints to continue (train without --resume)"
        )
    if (pairs or names) and _task(kind) != "difference":
        raise HistexprError("--pairs and --names apply to differential kinds (diff-*)")
    if not 0 <= valid_fraction < 1:
        raise HistexprError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
    return atlas_file


def time_budget_notes(model_dir) -> list[str]:
    """One line per member that the ``max_minutes`` budget stopped (from metrics.json)."""
    try:
        members = json.loads((Path(model_dir) / "metrics.json").read_text()).get("members", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [
        f"member {m.get('name')} stopped by the time budget after {m.get('epochs_run')} "
        "epoch(s) (--max-minutes)"
        for m in members
        if isinstance(m, dict) and m.get("stopped_by") == "time budget"
    ]


def _settings(kind, overrides, pairs, settings: Mapping, progress: bool):
    """``overrides`` with the typed options (``settings``), ``pairs`` and ``progress``."""
    extra = {k: v for k, v in (settings or {}).items() if v is not None}
    if pairs:
        extra["pairs"] = ",".join(f"{a}:{b}" for a, b in parse_pairs(pairs))
    if not progress and kind not in AUTO_TASKS and defines(kind, "progress"):
        extra["progress"] = False  # no member lines, no epoch bars
    return {**parse_overrides(overrides), **extra} if extra else overrides


def _held_out_scores(kind: str, est, data, valid) -> pd.DataFrame:
    """Scores on the held-out genes: the "all" row, or one row per training pair."""
    if kind_of(kind).pairs:
        valid = valid.select_cells([c for c in valid.cells if c in data.cells])
        preds = [est.predict_pair(valid, a, b) for a, b in est.pairs_]
        table = pd.DataFrame(pair_scores(kind, preds, set(data.cells)))
        summary = {"mean_pearson": table.pearson.mean(), "mean_mse": table.mse.mean()}
        est.metrics_ = {**est.metrics_, "heldout_genes": {k: float(v) for k, v in summary.items()}}
        return table
    ev = evaluate_predictions(valid.y, valid.cell, {kind: est.predict(valid)})
    table = ev.table[ev.table.group == "all"].reset_index(drop=True)
    est.metrics_ = {**est.metrics_, "heldout_genes": table.iloc[0].to_dict()}
    return table


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
    pairs: Sequence[str] | str = (),
    names: str | dict | None = None,
    atlas: str | None = None,
    atlas_values: str | None = None,
    settings: Mapping | None = None,
    progress: bool = True,
    force: bool | None = None,
) -> TrainResult:
    """Train one model of any kind on a data file and save it.

    Validation data: the examples of ``valid_split`` when given (the published protocol:
    train on ``train_split``, choose on ``valid_split``), else ``valid_fraction`` of the
    genes held out at random. ``kind="auto"`` (``"diff-auto"``) first chooses the kind by
    cross-validation on the training genes (:mod:`histexpr.estimators.auto`), then trains
    it like a named kind and records the comparison in ``model.json``. ``missing``
    ("error"/"drop") is the DeepChrome RPKM join's choice for genes without RPKM;
    ``reader_opts`` go to the reader (e.g. a deepTools matrix's ``marks``, ``cell``,
    ``expression``). ``intervals``: also calibrate prediction intervals and store them
    with the model (:func:`histexpr.estimators.intervals.calibrate`).

    ``pairs`` (``"A:B,C:D"``): the training pairs of a differential kind (default: pairs
    drawn among the training cell types); ``names``: DeepDiff cell ids of file names.
    ``atlas``, ``atlas_values``: the atlas of an atlas kind (``"train"``, ``"roadmap"`` or
    a table). ``settings``: typed options by dotted config name (``device.devices``...;
    None values are not given), over ``overrides``. ``progress=False``: no member lines or
    epoch bars. ``force``: not None, guard ``out`` first (:func:`histexpr.atomic.guard_output`;
    ``--resume`` continues only an interrupted run of the same kind, settings and data).
    Options that do not apply to ``kind`` are refused first (:func:`check_options`).
    """
    from histexpr.data.splits import hold_out_genes
    from histexpr.training.ddp import is_global_zero

    atlas_file = check_options(kind, atlas, atlas_values, resume, pairs, names, valid_fraction)
    if force is not None and is_global_zero():
        # DDP processes started by Lightning rerun the command: only the first one guards
        # (the others find the run directory that the first has started filling)
        opts = reader_opts or {}
        inputs = [data_path, opts.get("expression"), atlas_file]
        guard_output(out, "model-dir", [p for p in inputs if p is not None], force, resume=resume)
    if valid_fraction == 0 and not valid_split:
        log("note: --valid-fraction 0: no genes held out, no validation metrics")
    if atlas is not None:
        settings = {**(settings or {}), "atlas": "" if atlas == "train" else atlas}
    settings = {**(settings or {}), "atlas_values": atlas_values}
    overrides = _settings(kind, overrides, pairs, settings, progress)
    pair_task = _task(kind) == "difference"
    opts = {"missing": missing} if missing else {}
    opts.update(reader_opts or {})
    opts.update({"names": names} if names else {})
    # a differential kind needs the expression of both cells of each pair
    data = load_dataset(data_path, target="yes" if pair_task else target, **opts)
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
    if kind in AUTO_TASKS:
        auto = choose(data, parse_overrides(overrides), seed, diff=pair_task, log=log)
        log(auto.summary())
        kind, overrides = auto.chosen, auto.overrides
    est = make_estimator(kind, overrides or None)
    if intervals and getattr(getattr(est, "train_cfg", None), "task", "") == "classification":
        raise HistexprError("--intervals applies to regression models, not classifiers")
    log(f"training {kind} on {len(data)} examples ({len(data.cells)} cell types)")
    fit_kw = {"resume": True} if (resume and kind_of(kind).network) else {}
    fit_estimator(est, data, valid, run_dir=Path(out), **fit_kw)
    if est.metrics_.get("selection"):
        log(f"{kind}: {est.metrics_['selection']}")
    if kind_of(kind).pairs:
        log(f"{kind}: {len(est.pairs_)} training pairs")
    valid_table = None
    if valid is not None and len(valid):
        valid_table = _held_out_scores(kind, est, data, valid)
    est.save(out)
    if intervals:
        from histexpr.estimators.intervals import calibrate, save_calibration

        cal = calibrate(kind, overrides or None, est, data, valid, seed=seed, log=log)
        save_calibration(out, cal)
    if auto is not None:
        record_auto(out, auto.table())
    return TrainResult(Path(out), valid_table, kind, auto, time_budget_notes(out))
