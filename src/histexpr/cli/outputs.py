"""Output commands: explain, report, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import typer.exceptions
from rich.markup import escape

from histexpr.atomic import guard_output
from histexpr.cli._app import Force, app, console, csv_list, plain, quiet
from histexpr.cli.tables import results_table


@app.command()
def explain(
    path: Annotated[
        Path,
        typer.Argument(help="Run directory (from demo) or model directory (from train)."),
    ],
    data: Annotated[
        Path | None,
        typer.Option(help="Dataset to explain (HDF5, npz, DeepChrome); default: the run's."),
    ] = None,
    cells: Annotated[
        str | None,
        typer.Option(help="Comma-separated cell types (default: one seen + one unseen, or 4)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "-o", "--out", help="Folder to write (default RUN_DIR/explain or MODEL_DIR.explain)."
        ),
    ] = None,
    genes: Annotated[
        str | None, typer.Option(help="Comma-separated genes for per-gene attribution maps.")
    ] = None,
    n_genes: Annotated[
        int, typer.Option(help="Without --genes: per-gene maps of the first N genes per cell.")
    ] = 10,
    methods: Annotated[
        str, typer.Option(help="saliency,input_x_gradient,integrated_gradients")
    ] = "saliency,input_x_gradient,integrated_gradients",
    model: Annotated[
        str | None, typer.Option(help="Model of a run directory (default: first neural).")
    ] = None,
    max_genes: Annotated[int, typer.Option(help="Genes averaged per cell type.")] = 2000,
    steps: Annotated[int, typer.Option(help="Integrated-gradients steps.")] = 50,
    pair: Annotated[
        str | None, typer.Option(help="Explain the predicted change A:B per gene (any model).")
    ] = None,
    names: Annotated[
        str | None, typer.Option(help="DeepDiff folder: NAME=CELL,... cell ids of file names.")
    ] = None,
):
    """Attribution maps (marks x bins) per cell type and per gene; attention for AttentiveChrome.

    A model directory is explained into MODEL_DIR.explain (never into the model);
    the same model's explanation is replaced, one of another model never, and
    nothing is written inside a model or run directory but the run's own explain/.
    """
    from histexpr.workflows.explain import explain_path, resolve_target

    target = resolve_target(path, model)
    guard_output(out or target.default_out, "explain-dir", [data, target.model_dir], force=True)
    result = explain_path(
        path,
        data,
        csv_list(cells) or None,
        pair=pair,
        names=names,
        methods=csv_list(methods),
        model_kind=model,
        max_per_cell=max_genes,
        n_steps=steps,
        out=out,
        genes=csv_list(genes) or None,
        n_genes=n_genes,
    )
    # soft_wrap: a path or a command is never broken across lines, so it copies as printed
    for f in result.files:
        console.print(f"wrote {escape(str(f))}", soft_wrap=True, highlight=False)
    for note in result.notes:
        console.print(f"note: {escape(note)}", soft_wrap=True)
    for hint in result.hints:
        console.print(f"next: {escape(hint)}", soft_wrap=True, highlight=False)


@app.command()
def report(
    path: Annotated[Path, typer.Argument(help="Run directory or model directory.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "-o", "--out", help="HTML file (default RUN_DIR/report.html or MODEL_DIR.report.html)."
        ),
    ] = None,
    cells: Annotated[str | None, typer.Option(help="Cell types for the data figures.")] = None,
    explain_dir: Annotated[
        Path | None,
        typer.Option("--explain", help="Explanation folder (default: the one explain writes)."),
    ] = None,
    force: Force = False,
):
    """Write one self-contained HTML report of a run or a model (opens offline)."""
    from histexpr.report import default_report_path, write_report

    # the default path gets the rules of a given one: an earlier report needs --force
    dest = out or default_report_path(path)
    guard_output(dest, "report-file", [path], force=force)
    written = write_report(path, out, csv_list(cells) or None, explain_dir=explain_dir)
    console.print(f"wrote {escape(str(written))}", soft_wrap=True, highlight=False)


@app.command()
def demo(
    run_dir: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/demo"),
    models: Annotated[str | None, typer.Option(help="Comma-separated model kinds.")] = None,
    report: Annotated[bool, typer.Option(help="Write the HTML report at the end.")] = True,
    differential: Annotated[
        bool, typer.Option(help="Add the differential section (diff-ridge on two cell pairs).")
    ] = True,
    force: Force = False,
):
    """The main job: train baselines, the atlas models and the CNN ensemble, and compare."""
    from histexpr.workflows import run_demo

    # an earlier run (the default runs/demo as well) is replaced only with --force
    guard_output(run_dir, "run-dir", force=force)
    result = run_demo(
        run_dir,
        models=csv_list(models) or None,
        report=report,
        differential=differential,
        log=plain,
        progress=not quiet(),
    )
    console.print(
        results_table(
            result.evaluation.table, title="held out: seen/unseen cell types x known/new genes"
        )
    )
    console.print(f"run directory: {result.run_dir}")
