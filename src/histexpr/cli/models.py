"""Model commands: train, evaluate, protocol, predict."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import typer.exceptions
from rich.markup import escape
from rich.table import Table

from histexpr.atomic import guard_output
from histexpr.cli._app import (
    Cell,
    Expression,
    Force,
    Interval,
    Marks,
    app,
    console,
    csv_list,
    err_console,
    quiet,
    reader_options,
)
from histexpr.cli.tables import per_cell_table, results_table
from histexpr.errors import HistexprError


def _report_time_budget(model_dir: Path) -> None:
    """Say which members the ``max_minutes`` budget stopped (recorded in metrics.json)."""
    import json

    try:
        members = json.loads((model_dir / "metrics.json").read_text()).get("members", [])
    except (OSError, ValueError, AttributeError):
        return
    for m in members:
        if isinstance(m, dict) and m.get("stopped_by") == "time budget":
            err_console.print(
                f"[yellow]warning:[/yellow] member {m.get('name')} stopped by the time budget "
                f"after {m.get('epochs_run')} epoch(s) (--max-minutes)",
                highlight=False,
            )


#: Every model kind, for ``train --help`` (importing the registry would load torch on
#: every CLI call); tests/test_cli_settings.py checks it equals histexpr.estimators.KINDS.
KIND_NAMES = (
    "global-mean",
    "gene-mean",
    "ridge",
    "random-forest",
    "lightgbm",
    "atlas-ridge",
    "atlas-lightgbm",
    "atlas-convnet",
    "diff-ridge",
    "diff-lightgbm",
    "diff-convnet",
    "convnet",
    "ensemble",
    "celltype-weighted",
    "deepchrome",
    "attentivechrome",
)


def _show_settings(kind: str) -> None:
    from rich import box

    from histexpr.estimators import KINDS, min_genes, settings
    from histexpr.estimators.auto import AUTO_KINDS, auto_settings

    if kind in AUTO_KINDS:
        t = Table(title=f"{kind}: settings (--set NAME=VALUE; KIND:NAME=VALUE for one candidate)")
        for c in ("name", "default", "meaning"):
            t.add_column(c, no_wrap=c == "name")
        for s in auto_settings():
            t.add_row(s.name, str(s.default), s.help)
        console.print(t)
        return
    if kind not in KINDS:
        raise HistexprError(f"unknown model kind {kind!r}; choose from {', '.join(KINDS)}")
    t = Table(title=f"{kind}: settings (--set NAME=VALUE)", box=box.SIMPLE_HEAD)
    t.add_column("name", no_wrap=True)
    t.add_column("default")
    t.add_column("meaning")
    for s in settings(kind):
        t.add_row(s.name, str(s.default), s.help)
    console.print(t)
    console.print(f"{kind} trains on at least {min_genes(kind)} distinct genes (fewer: refused)")


@app.command()
def train(
    data: Annotated[
        Path | None, typer.Argument(help="Training data (HDF5, npz or DeepChrome folder).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Model directory to write.")
    ] = None,
    model: Annotated[
        str,
        typer.Option(help=f"Model kind: {', '.join(KIND_NAMES)}; auto or diff-auto: chosen by CV."),
    ] = "ensemble",
    show_settings: Annotated[
        bool,
        typer.Option(help="List every --set field of --model (default, meaning) and exit."),
    ] = False,
    cells: Annotated[str | None, typer.Option(help="Train only on these cell types.")] = None,
    exclude_cells: Annotated[str | None, typer.Option(help="Leave these cell types out.")] = None,
    valid_fraction: Annotated[
        float, typer.Option(help="Fraction of genes held out for validation.")
    ] = 0.1,
    seed: Annotated[
        int,
        typer.Option(
            "--split-seed",
            "--seed",
            help="Seed of the validation gene split (the training seed is --set seed=N).",
        ),
    ] = 0,
    target: Annotated[
        str, typer.Option(help="Read the data's expression: auto (per npz key), yes or no.")
    ] = "auto",
    train_split: Annotated[
        str | None, typer.Option(help="Train on this split of the data (e.g. train).")
    ] = None,
    valid_split: Annotated[
        str | None,
        typer.Option(help="Validate on this split (e.g. valid) instead of --valid-fraction."),
    ] = None,
    missing: Annotated[
        str | None,
        typer.Option(help="Genes without RPKM (DeepChrome, --expression): error or drop."),
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Config override field=value (repeatable).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue an interrupted neural run in the same --out (same kind, "
            "settings and data); a finished model is never resumed."
        ),
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Train ensemble members on a local Dask cluster of N.")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Train ensemble members on this Dask scheduler.")
    ] = None,
    accelerator: Annotated[str | None, typer.Option(help="cpu, gpu or auto.")] = None,
    devices: Annotated[int | None, typer.Option(help="Data-parallel processes per node.")] = None,
    num_nodes: Annotated[int | None, typer.Option(help="Nodes for DDP training.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Lightning strategy (auto, ddp).")] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Wall-clock budget of neural training.")
    ] = None,
    pairs: Annotated[
        str | None, typer.Option(help="Differential kinds: train on these pairs A:B,C:D.")
    ] = None,
    names: Annotated[
        str | None, typer.Option(help="DeepDiff folder: NAME=CELL,... cell ids of file names.")
    ] = None,
    atlas: Annotated[
        str | None,
        typer.Option(
            help="Atlas kinds: expression atlas: train (the training targets, default), "
            "roadmap (packaged Roadmap matrix) or a TSV/CSV/Parquet table (genes x cells)."
        ),
    ] = None,
    atlas_values: Annotated[
        str | None,
        typer.Option(help="Values of an --atlas table: rpkm (log2(x+1) applied) or transformed."),
    ] = None,
    marks: Marks = None,
    cell: Cell = None,
    expression: Expression = None,
    intervals: Annotated[
        bool, typer.Option(help="Calibrate prediction intervals (predict --interval).")
    ] = False,
    force: Force = False,
):
    """Train one model and save it as a directory."""
    from histexpr.config import parse_overrides

    if show_settings:
        _show_settings(model)
        return
    if data is None or out is None:
        raise HistexprError("train needs DATA and -o/--out (or --show-settings)")
    from histexpr.training.ddp import is_global_zero
    from histexpr.workflows import train_model

    # DDP processes started by Lightning rerun this command: only the first one guards
    # (the others find the run directory that the first has started filling).
    atlas_file = Path(atlas) if atlas and atlas not in ("train", "roadmap") else None
    if (atlas is not None or atlas_values is not None) and not model.startswith(("atlas-", "auto")):
        raise HistexprError(f"--atlas and --atlas-values apply to the atlas kinds, not {model}")
    if atlas_file is not None and not atlas_file.is_file():
        raise HistexprError(f"{atlas_file}: atlas table not found")
    if resume:
        from histexpr.estimators import DIFF_KINDS, trains_network

        if not trains_network(model) or model in DIFF_KINDS:
            raise HistexprError(
                f"--resume continues an interrupted neural training; {model} has no "
                "checkpoints to continue (train without --resume)"
            )
    if is_global_zero():
        inputs = [data, expression] + ([atlas_file] if atlas_file is not None else [])
        # --resume continues only an interrupted run (same kind, settings and data: the
        # run's fingerprint, histexpr.training.fingerprint); never a finished model
        guard_output(out, "model-dir", inputs, force=force, resume=resume)
    if not 0 <= valid_fraction < 1:
        raise HistexprError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
    if valid_fraction == 0 and not valid_split:
        console.print("note: --valid-fraction 0: no genes held out, no validation metrics")
    # Typed flags reach their config fields by dotted name (they win over --set).
    flags = {
        "runner.workers": workers,
        "runner.scheduler": scheduler,
        "device.accelerator": accelerator,
        "device.devices": devices,
        "device.num_nodes": num_nodes,
        "device.strategy": strategy,
        "optim.max_minutes": max_minutes,
        "atlas": None if atlas is None else ("" if atlas == "train" else atlas),
        "atlas_values": atlas_values,
    }
    typed = {name: value for name, value in flags.items() if value is not None}
    from histexpr.estimators import KINDS, defines
    from histexpr.workflows.diff import is_diff_kind, train_diff

    if quiet() and model in KINDS and defines(model, "progress"):
        typed["progress"] = False  # --quiet: no member lines, no epoch bars

    if is_diff_kind(model):
        res = train_diff(
            data,
            out,
            model,
            pairs=pairs or (),
            cells=csv_list(cells),
            exclude_cells=csv_list(exclude_cells),
            valid_fraction=valid_fraction,
            seed=seed,
            overrides=parse_overrides(set_),
            names=names,
            train_split=train_split,
            valid_split=valid_split,
            log=console.print,
            intervals=intervals,
        )
        if res.valid_metrics is not None:
            console.print(res.valid_metrics.to_string(index=False, float_format="%.3f"))
        console.print(f"saved {res.kind} model to {out}")
        return
    if pairs or names:
        raise HistexprError("--pairs and --names apply to differential kinds (diff-*)")
    result = train_model(
        data,
        out,
        kind=model,
        cells=csv_list(cells),
        exclude_cells=csv_list(exclude_cells),
        valid_fraction=valid_fraction,
        seed=seed,
        target=target,
        overrides={**parse_overrides(set_), **typed},
        resume=resume,
        log=console.print,
        train_split=train_split,
        valid_split=valid_split,
        missing=missing,
        reader_opts=reader_options(marks=marks, cell=cell, expression=expression),
        intervals=intervals,
    )
    if result.valid_metrics is not None:
        console.print(results_table(result.valid_metrics, title="validation (held-out genes)"))
    _report_time_budget(out)
    console.print(f"saved {result.kind} model to {out}")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Saved model directory.")],
    data: Annotated[Path, typer.Argument(help="Data with expression values.")],
    unseen: Annotated[
        str | None,
        typer.Option(help="Check: cell types that must be unseen (default: the model's record)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="Write the group table (+ OUT.per_cell.csv)."),
    ] = None,
    per_cell: Annotated[bool, typer.Option(help="Print the per-cell-type table.")] = False,
    memory: Annotated[
        str, typer.Option(help="Memory budget for input blocks, e.g. 512MB, 2GB.")
    ] = "512MB",
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on a terminal).")] = True,
    target: Annotated[
        str, typer.Option(help="Course npz: read the expression column auto (per key) or yes.")
    ] = "auto",
    split: Annotated[
        str | None, typer.Option(help="Score only this split of the data (e.g. test).")
    ] = None,
    pair: Annotated[
        str | None, typer.Option(help="Score log fold changes of pairs A:B[,C:D] instead.")
    ] = None,
    from_model: Annotated[
        Path | None, typer.Option(help="With --pair: also score this model's difference.")
    ] = None,
    names: Annotated[
        str | None, typer.Option(help="DeepDiff folder: NAME=CELL,... cell ids of file names.")
    ] = None,
    interval: Interval = None,
    force: Force = False,
):
    """Score a saved model by group: seen/unseen cell types x known/new genes.

    Groups come from the training cell types and genes recorded with the model;
    rows that are training genes of training cell types are flagged and apart.
    With --pair: Pearson r, Spearman, MSE and AUC of up vs down of log fold changes.
    """
    if pair:
        from histexpr.workflows.diff import evaluate_diff

        if out is not None:
            guard_output(out, "table-file", [model_dir, data], force=force)
        ev = evaluate_diff(model_dir, data, pair, from_model, names, split, out, interval)
        console.print(ev.table.to_string(index=False, float_format="%.3f"))
        for note in ev.notes:
            console.print(f"note: {escape(note)}", soft_wrap=True)
        return
    if names or from_model:
        raise HistexprError("--names and --from-model apply with --pair")
    from histexpr.workflows.evaluate import evaluate_model, intervals_path, per_cell_path

    for path in [out, per_cell_path(out), intervals_path(out)] if out is not None else []:
        guard_output(path, "table-file", [model_dir, data], force=force)
    evaluation = evaluate_model(
        model_dir,
        data,
        unseen_cells=csv_list(unseen),
        out=out,
        memory_budget=memory,
        progress=progress and sys.stderr.isatty(),  # a bar on a terminal, never in a log
        split=split,
        target=target,
        interval=interval,
    )
    console.print(results_table(evaluation.table, title=f"{model_dir}"))
    if evaluation.intervals is not None:
        console.print("prediction intervals (coverage, mean width):")
        console.print(evaluation.intervals.to_string(index=False, float_format="%.3f"))
    if per_cell:
        console.print(per_cell_table(evaluation.per_cell))
    for note in evaluation.notes:
        err_console.print(
            f"[yellow]warning:[/yellow] {escape(note)}", highlight=False, soft_wrap=True
        )
    if out is not None:
        console.print(f"wrote {out} and {per_cell_path(out)}")


def _cell_text(value) -> str:
    """A protocol table value as printed: floats to 3 decimals, missing values blank."""
    import pandas as pd

    if value is None or value is pd.NA:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@app.command()
def protocol(
    folder: Annotated[Path, typer.Argument(help="DeepChrome folder (cell folders or one cell).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")],
    model: Annotated[str, typer.Option(help="Model kind, e.g. ridge, lightgbm, deepchrome.")] = (
        "ridge"
    ),
    per_cell: Annotated[
        bool, typer.Option("--per-cell/--joint", help="One model per cell type, or one joint.")
    ] = True,
    cells: Annotated[str | None, typer.Option(help="Only these cell types.")] = None,
    target: Annotated[
        str, typer.Option(help="label (DeepChrome's) or rpkm (log2(RPKM+1): adds MSE and r).")
    ] = "label",
    missing: Annotated[str, typer.Option(help="Genes without RPKM: error or drop.")] = "error",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Config override field=value (repeatable).")
    ] = None,
    force: Force = False,
):
    """The DeepChrome protocol: train on train.csv, choose on valid.csv, score test.csv."""
    from histexpr.workflows.protocol import run_protocol

    guard_output(out, "protocol-dir", [folder], force=force)
    result = run_protocol(
        folder,
        out,
        model=model,
        joint=not per_cell,
        cells=csv_list(cells) or None,
        target=target,
        missing=missing,
        overrides=set_ or (),
        log=console.print,
    )
    t = Table(title=f"{model}: test split per cell type")
    for c in result.table.columns:
        t.add_column(c)
    for row in result.table.itertuples(index=False):
        t.add_row(*[_cell_text(v) for v in row])
    console.print(t)
    console.print(f"wrote {result.table_path}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Saved model directory.")],
    data: Annotated[Path, typer.Argument(help="Data to predict (expression not needed).")],
    out: Annotated[
        Path,
        typer.Option("-o", "--out", help="Output table (.csv; .parquet: Parquet; .h5ad: AnnData)."),
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="tidy (cell, gene, prediction) or submission (id, expression)."
        ),
    ] = "tidy",
    split: Annotated[
        str | None, typer.Option(help="Predict only this split of the data (e.g. test).")
    ] = None,
    memory: Annotated[
        str, typer.Option(help="Memory budget for input blocks, e.g. 512MB, 2GB.")
    ] = "512MB",
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on a terminal).")] = True,
    pair: Annotated[
        str | None, typer.Option(help="Predict the log fold change A:B (gene, cell_a, ...).")
    ] = None,
    names: Annotated[
        str | None, typer.Option(help="DeepDiff folder: NAME=CELL,... cell ids of file names.")
    ] = None,
    marks: Marks = None,
    cell: Cell = None,
    interval: Interval = None,
    force: Force = False,
):
    """Predict expression: a tidy table (cell, gene, prediction) or the course submission.

    Classifiers write probability_high (the probability of above-median expression)
    instead of prediction. With --pair: gene, cell_a, cell_b, predicted_lfc.
    """
    if pair:
        from histexpr.workflows.diff import predict_diff

        if marks or cell:
            raise HistexprError("--marks and --cell do not apply with --pair; convert first")

        guard_output(out, "table-file", [model_dir, data], force=force)
        n = predict_diff(model_dir, data, pair, out, names, split, interval)
        console.print(f"wrote {n} predicted log fold changes to {out}")
        return
    if names:
        raise HistexprError("--names applies with --pair (or to train a diff-* model)")
    from histexpr.workflows import predict_file

    guard_output(out, "table-file", [model_dir, data], force=force)
    n = predict_file(
        model_dir,
        data,
        out,
        memory_budget=memory,
        fmt=fmt,
        progress=progress and sys.stderr.isatty(),  # a bar on a terminal, never in a log
        log=console.print,
        split=split,
        reader_opts=reader_options(marks=marks, cell=cell),
        interval=interval,
    )
    console.print(f"wrote {n} predictions to {out}")
