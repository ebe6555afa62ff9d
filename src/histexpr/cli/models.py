"""Model commands: evaluate, protocol, predict (train: :mod:`histexpr.cli.train`)."""

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
    Force,
    Interval,
    Marks,
    app,
    console,
    csv_list,
    err_console,
    reader_options,
)
from histexpr.cli.tables import per_cell_table, results_table


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
    from histexpr.workflows.evaluate import evaluate_model, output_paths, per_cell_path

    for path in output_paths(out, pair):
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
        pair=pair,
        from_model=from_model,
        names=names,
    )
    if pair:  # scores per pair
        console.print(evaluation.table.to_string(index=False, float_format="%.3f"))
        for note in evaluation.notes:
            console.print(f"note: {escape(note)}", soft_wrap=True)
        return
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
        pair=pair,
        names=names,
    )
    what = "predicted log fold changes" if pair else "predictions"
    console.print(f"wrote {n} {what} to {out}")
