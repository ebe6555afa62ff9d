"""``histexpr train``: parse the options, call :func:`histexpr.workflows.train.train_model`, print.

Which options apply to which kind is the workflow's to check (against the table of
kinds); the options here are declared once each, so the command stays a list of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from histexpr.cli._app import (
    Cell,
    Expression,
    Force,
    Marks,
    app,
    console,
    csv_list,
    err_console,
    quiet,
    reader_options,
)
from histexpr.cli.tables import results_table

__all__ = ["list_kinds_in_help", "train"]

#: The help of ``--model`` until ``--help`` asks for the kinds (:func:`list_kinds_in_help`).
MODEL_HELP = "Model kind (train --help lists them); auto or diff-auto: chosen by CV."


def _opt(kind, help_: str, *names: str):
    return Annotated[kind, typer.Option(*names, help=help_)]


Data = Annotated[
    Path | None, typer.Argument(help="Training data (HDF5, npz or DeepChrome folder).")
]
Out = _opt(Path | None, "Model directory to write.", "-o", "--out")
Model = _opt(str, MODEL_HELP)
ShowSettings = _opt(bool, "List every --set field of --model (default, meaning) and exit.")
Cells = _opt(str | None, "Train only on these cell types.")
ExcludeCells = _opt(str | None, "Leave these cell types out.")
ValidFraction = _opt(float, "Fraction of genes held out for validation.")
Seed = _opt(int, "Seed of the validation gene split (the training seed is --set seed=N).",
            "--split-seed", "--seed")  # fmt: skip
Target = _opt(str, "Read the data's expression: auto (per npz key), yes or no.")
TrainSplit = _opt(str | None, "Train on this split of the data (e.g. train).")
ValidSplit = _opt(str | None, "Validate on this split (e.g. valid) instead of --valid-fraction.")
Missing = _opt(str | None, "Genes without RPKM (DeepChrome, --expression): error or drop.")
Sets = _opt(list[str] | None, "Config override field=value (repeatable).", "--set")
Resume = _opt(bool, "Continue an interrupted neural run in the same --out (same kind, settings "
              "and data); a finished model is never resumed.")  # fmt: skip
Workers = _opt(int | None, "Train ensemble members on a local Dask cluster of N.")
Scheduler = _opt(str | None, "Train ensemble members on this Dask scheduler.")
Accelerator = _opt(str | None, "cpu, gpu or auto.")
Devices = _opt(int | None, "Data-parallel processes per node.")
NumNodes = _opt(int | None, "Nodes for DDP training.")
Strategy = _opt(str | None, "Lightning strategy (auto, ddp).")
MaxMinutes = _opt(float | None, "Wall-clock budget of neural training.")
Pairs = _opt(str | None, "Differential kinds: train on these pairs A:B,C:D.")
Names = _opt(str | None, "DeepDiff folder: NAME=CELL,... cell ids of file names.")
Atlas = _opt(
    str | None,
    "Atlas kinds: expression atlas: train (the training targets, default), "
    "roadmap (packaged Roadmap matrix) or a TSV/CSV/Parquet table (genes x cells).",
)
AtlasValues = _opt(
    str | None, "Values of an --atlas table: rpkm (log2(x+1) applied) or transformed."
)
Intervals = _opt(bool, "Calibrate prediction intervals (predict --interval).")


def _show_settings(kind: str) -> None:
    from rich import box

    from histexpr.estimators import kind_of, min_genes, settings
    from histexpr.estimators.auto import AUTO_KINDS, auto_settings

    title = f"{kind}: settings (--set NAME=VALUE; KIND:NAME=VALUE for one candidate)"
    if kind not in AUTO_KINDS:
        title = f"{kind_of(kind).name}: settings (--set NAME=VALUE)"  # unknown: one line
    t = Table(title=title, box=box.SIMPLE_HEAD if kind not in AUTO_KINDS else box.HEAVY_HEAD)
    for c in ("name", "default", "meaning"):
        t.add_column(c, no_wrap=c == "name")
    for s in auto_settings() if kind in AUTO_KINDS else settings(kind):
        t.add_row(s.name, str(s.default), s.help)
    console.print(t)
    if kind not in AUTO_KINDS:
        console.print(
            f"{kind} trains on at least {min_genes(kind)} distinct genes (fewer: refused)"
        )


def list_kinds_in_help(command) -> None:
    """Name every kind of the table in ``train --model``'s help (read only for ``--help``:
    the table imports torch, seconds that no other call should pay)."""
    from histexpr.estimators import KIND_TABLE

    listed = f"Model kind: {', '.join(KIND_TABLE)};"
    for param in command.commands["train"].params:
        if param.name == "model":
            param.help = MODEL_HELP.replace("Model kind (train --help lists them);", listed)


@app.command()
def train(
    data: Data = None, out: Out = None, model: Model = "ensemble",
    show_settings: ShowSettings = False, cells: Cells = None, exclude_cells: ExcludeCells = None,
    valid_fraction: ValidFraction = 0.1, seed: Seed = 0, target: Target = "auto",
    train_split: TrainSplit = None, valid_split: ValidSplit = None, missing: Missing = None,
    set_: Sets = None, resume: Resume = False,
    workers: Workers = None, scheduler: Scheduler = None, accelerator: Accelerator = None,
    devices: Devices = None, num_nodes: NumNodes = None, strategy: Strategy = None,
    max_minutes: MaxMinutes = None, pairs: Pairs = None, names: Names = None, atlas: Atlas = None,
    atlas_values: AtlasValues = None, marks: Marks = None, cell: Cell = None,
    expression: Expression = None, intervals: Intervals = False, force: Force = False,
):  # fmt: skip
    """Train one model and save it as a directory."""
    from histexpr.errors import HistexprError

    if show_settings:
        return _show_settings(model)
    if data is None or out is None:
        raise HistexprError("train needs DATA and -o/--out (or --show-settings)")
    from histexpr.workflows.train import train_model

    # typed flags reach their config fields by dotted name (they win over --set)
    typed = {"runner.workers": workers, "runner.scheduler": scheduler,
             "device.accelerator": accelerator, "device.devices": devices,
             "device.num_nodes": num_nodes, "device.strategy": strategy,
             "optim.max_minutes": max_minutes}  # fmt: skip
    result = train_model(
        data, out, kind=model, cells=csv_list(cells), exclude_cells=csv_list(exclude_cells),
        valid_fraction=valid_fraction, seed=seed, target=target, overrides=set_ or (),
        resume=resume, log=console.print, train_split=train_split, valid_split=valid_split,
        missing=missing, reader_opts=reader_options(marks=marks, cell=cell, expression=expression),
        intervals=intervals, pairs=pairs or (), names=names, atlas=atlas,
        atlas_values=atlas_values, settings=typed, progress=not quiet(), force=force,
    )  # fmt: skip
    table = result.valid_metrics
    if table is not None and "pair" in table:  # one row per training pair
        console.print(table.to_string(index=False, float_format="%.3f"))
    elif table is not None:
        console.print(results_table(table, title="validation (held-out genes)"))
    for note in result.notes:
        err_console.print(f"[yellow]warning:[/yellow] {escape(note)}", highlight=False)
    console.print(f"saved {result.kind} model to {out}")
