"""The ``histexpr`` command line: a thin layer over the library functions.

Every user error is printed as one line and exits with code 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
import typer.exceptions
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from histexpr.data.convert import load_dataset
from histexpr.errors import HistexprError

app = typer.Typer(
    help="Predict gene expression from histone-modification signal around the TSS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
_STATE = {"debug": False}


def _flag_overrides(**flags) -> list[str]:
    """``field=value`` overrides for the training flags that were given."""
    return [f"{k}={v}" for k, v in flags.items() if v is not None]


def _csv_list(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
):
    _STATE["debug"] = debug


_COLUMNS = (
    ("mse", "MSE", "{:.3f}"),
    ("mse_over_oracle", "/oracle", "{:.2f}"),
    ("pearson", "r", "{:.3f}"),
    ("spearman", "rho", "{:.3f}"),
    ("r2", "R2", "{:.3f}"),
    ("auc", "AUC", "{:.3f}"),
    ("train_seconds", "time s", "{:.0f}"),
)


def results_table(table, title: str = "results") -> Table:
    """A rich table of an evaluation table (model x group), one section per group.

    The "all" group is shown only when the data has a single group.
    """
    groups = [g for g in ("seen", "unseen") if g in set(table["group"])] or ["all"]
    cols = [c for c in _COLUMNS if c[0] in table.columns and table[c[0]].notna().any()]
    t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    t.add_column("model", no_wrap=True)
    t.add_column("n", justify="right")
    for _, header, _ in cols:
        t.add_column(header, justify="right")
    labels = {"seen": "seen cell types", "unseen": "unseen cell types", "all": "all"}
    for i, group in enumerate(groups):
        if i:
            t.add_section()
        if len(groups) > 1:
            t.add_row(f"[bold]{labels[group]}[/bold]")
        for _, row in table[table["group"] == group].iterrows():
            values = []
            for key, _, fmt in cols:
                v = row[key]
                values.append("-" if v is None or np.isnan(v) else fmt.format(v))
            t.add_row(str(row["model"]), str(int(row["n"])), *values)
    return t


@app.command()
def info(
    data: Annotated[Path, typer.Argument(help="Dataset file (HDF5, npz) or DeepChrome folder.")],
):
    """Summarise a dataset file."""
    ds = load_dataset(data)
    console.print(f"[bold]{data}[/bold]: {ds!r}")
    console.print(
        f"marks: {', '.join(ds.marks)}; bins: {ds.n_bins}; target: {ds.target if ds.has_target else 'none'}"
    )
    t = Table(title="per cell type")
    for c in (
        "cell",
        "genes",
        "mean counts per bin (" + ",".join(ds.marks) + ")",
        "mean y",
        "sd y",
    ):
        t.add_column(c)
    for c in ds.cells:
        m = ds.cell == c
        means = ds.X[m].mean(axis=(0, 2))
        y = ds.y[m] if ds.has_target else None
        t.add_row(
            c,
            str(int(m.sum())),
            " ".join(f"{v:.2f}" for v in means),
            "-" if y is None else f"{y.mean():.3f}",
            "-" if y is None else f"{y.std():.3f}",
        )
    console.print(t)


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(help="Input: course npz, DeepChrome CSV folder or HDF5.")],
    dst: Annotated[Path, typer.Argument(help="Output HDF5 dataset.")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="Input format (default: detect).")
    ] = None,
    cells: Annotated[str | None, typer.Option(help="Comma-separated cell types to keep.")] = None,
    target: Annotated[str, typer.Option(help="npz: auto|yes|no; DeepChrome: label|rpkm.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
):
    """Convert any supported format to the HDF5 dataset."""
    from histexpr.data.convert import convert as _convert

    result = _convert(
        src, dst, fmt=fmt, cells=_csv_list(cells) or None, target=target, progress=progress
    )
    console.print(f"wrote {dst}: {result}")


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output file (.h5 or .npz).")],
    cells: Annotated[
        str | None,
        typer.Option(help="Comma-separated cell types, or 'all' (default: the demo's 15)."),
    ] = None,
    unseen: Annotated[
        str | None,
        typer.Option(help="Cell types marked unseen (default: those of the seed's six)."),
    ] = None,
    n_genes: Annotated[int, typer.Option(help="Number of genes (0: all 19,795).")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    fmt: Annotated[
        str | None, typer.Option("--format", help="h5 or npz (default: from suffix).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
):
    """Simulate REMC-like binned histone data with real expression targets."""
    from histexpr.simulator import SimulatorConfig
    from histexpr.simulator import simulate as _simulate

    fmt = fmt or ("npz" if out.suffix == ".npz" else "h5")
    kwargs = {"seed": seed, "n_genes": n_genes or None}
    if cells == "all":
        from histexpr.data.reference import DEEPCHROME_CELLS

        kwargs["cells"] = DEEPCHROME_CELLS
    elif cells:
        kwargs["cells"] = tuple(_csv_list(cells))
    path = _simulate(
        SimulatorConfig(**kwargs),
        out=out,
        progress=progress,
        fmt=fmt,
        unseen_cells=_csv_list(unseen) if unseen is not None else None,
    )
    console.print(f"wrote {path}")


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="Training data (HDF5, npz or DeepChrome folder).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Model directory to write.")],
    model: Annotated[
        str, typer.Option(help="Model kind, e.g. ridge, lightgbm, ensemble, convnet.")
    ] = "ensemble",
    cells: Annotated[str | None, typer.Option(help="Train only on these cell types.")] = None,
    exclude_cells: Annotated[str | None, typer.Option(help="Leave these cell types out.")] = None,
    valid_fraction: Annotated[
        float, typer.Option(help="Fraction of genes held out for validation.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the gene split.")] = 0,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Config override field=value (repeatable).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Resume an interrupted neural run in the same --out.")
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
):
    """Train one model and save it as a directory."""
    from histexpr.workflows import train_model

    result = train_model(
        data,
        out,
        kind=model,
        cells=_csv_list(cells),
        exclude_cells=_csv_list(exclude_cells),
        valid_fraction=valid_fraction,
        seed=seed,
        overrides=[
            *(set_ or []),
            *_flag_overrides(
                workers=workers,
                scheduler=scheduler,
                accelerator=accelerator,
                devices=devices,
                num_nodes=num_nodes,
                strategy=strategy,
                max_minutes=max_minutes,
            ),
        ],
        resume=resume,
        log=console.print,
    )
    if result.valid_metrics is not None:
        console.print(results_table(result.valid_metrics, title="validation (held-out genes)"))
    console.print(f"saved {model} model to {out}")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Saved model directory.")],
    data: Annotated[Path, typer.Argument(help="Data with expression values.")],
    unseen: Annotated[str | None, typer.Option(help="Cell types to report as unseen.")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Write the table as CSV.")] = None,
    memory: Annotated[
        str, typer.Option(help="Memory budget for input blocks, e.g. 512MB, 2GB.")
    ] = "512MB",
):
    """Score a saved model on a dataset: overall, seen and unseen cell types."""
    from histexpr.workflows import evaluate_model

    evaluation = evaluate_model(
        model_dir, data, unseen_cells=_csv_list(unseen), out=out, memory_budget=memory
    )
    console.print(results_table(evaluation.table, title=f"{model_dir}"))


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Saved model directory.")],
    data: Annotated[Path, typer.Argument(help="Data to predict (expression not needed).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Submission CSV (id, expression).")],
    memory: Annotated[
        str, typer.Option(help="Memory budget for input blocks, e.g. 512MB, 2GB.")
    ] = "512MB",
):
    """Predict expression and write a submission CSV (id = {cell}_{gene})."""
    from histexpr.workflows import predict_file

    n = predict_file(model_dir, data, out, memory_budget=memory)
    console.print(f"wrote {n} predictions to {out}")


@app.command()
def featurize(
    out: Annotated[Path, typer.Option("-o", "--out", help="Output HDF5 dataset.")],
    mark: Annotated[
        list[str] | None,
        typer.Option("--mark", help="Track as MARK=PATH or CELL:MARK=PATH (repeatable)."),
    ] = None,
    cell: Annotated[str | None, typer.Option(help="Cell type of MARK=PATH tracks.")] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="TSV with columns cell, mark, path (instead of --mark).")
    ] = None,
    tss: Annotated[
        Path | None, typer.Option(help="GTF or TSS table (default: packaged GENCODE v10).")
    ] = None,
    expression: Annotated[
        Path | None, typer.Option(help="RPKM table: gene_id + one column per cell type.")
    ] = None,
    upstream: Annotated[int, typer.Option(help="Window start, bp upstream of the TSS.")] = 5000,
    downstream: Annotated[int, typer.Option(help="Window end, bp downstream of the TSS.")] = 5000,
    n_bins: Annotated[int, typer.Option(help="Bins per window.")] = 100,
    position: Annotated[
        str, typer.Option(help="Reads: count by '5prime' start or by 'overlap'.")
    ] = "5prime",
    min_mapq: Annotated[int, typer.Option(help="Reads: minimum mapping quality.")] = 0,
    include_duplicates: Annotated[bool, typer.Option(help="Reads: count duplicates.")] = False,
    include_qc_fail: Annotated[bool, typer.Option(help="Reads: count QC-failed reads.")] = False,
    include_secondary: Annotated[bool, typer.Option(help="Reads: count secondary hits.")] = False,
    include_supplementary: Annotated[
        bool, typer.Option(help="Reads: count supplementary hits.")
    ] = False,
    fill_missing: Annotated[bool, typer.Option(help="Fill absent marks with zeros.")] = False,
    workers: Annotated[
        int | None, typer.Option(help="Start a local Dask cluster with N workers.")
    ] = None,
    scheduler: Annotated[str | None, typer.Option(help="Address of a Dask scheduler.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
):
    """Bin bigWig / BAM / tagAlign tracks around each TSS into a dataset."""
    from histexpr.featurize import ReadCountOptions, Window, parse_mark_specs, read_manifest
    from histexpr.featurize import featurize as _featurize

    tracks = read_manifest(manifest) if manifest else {}
    for c, marks in parse_mark_specs(mark or [], cell).items():
        tracks.setdefault(c, {}).update(marks)
    if not tracks:
        raise HistexprError("no tracks given: use --mark MARK=PATH (with --cell) or --manifest")
    path = _featurize(
        tss,
        tracks,
        out,
        expression=expression,
        window=Window(upstream=upstream, downstream=downstream, n_bins=n_bins),
        read_options=ReadCountOptions(
            position=position,
            min_mapq=min_mapq,
            include_duplicates=include_duplicates,
            include_qc_fail=include_qc_fail,
            include_secondary=include_secondary,
            include_supplementary=include_supplementary,
        ),
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        fill_missing=fill_missing,
    )
    console.print(f"wrote {path}")


@app.command()
def download(
    source: Annotated[str, typer.Argument(help="deepchrome, roadmap-rpkm or roadmap-tagalign.")],
    cells: Annotated[str | None, typer.Option(help="Comma-separated cell types, or 'all'.")] = None,
    dest: Annotated[Path | None, typer.Option(help="Destination folder (default: cache).")] = None,
    marks: Annotated[str | None, typer.Option(help="Marks (roadmap-tagalign).")] = None,
    extract: Annotated[bool, typer.Option(help="Unpack the DeepChrome archive.")] = False,
    dry_run: Annotated[bool, typer.Option(help="List what would be fetched.")] = False,
    base_url: Annotated[str | None, typer.Option(help="Mirror to fetch from.")] = None,
):
    """Download public data sets (only when you ask; resumable, verified)."""
    from histexpr.data.dataset import MARKS
    from histexpr.data.download import download as _download

    cell_arg = "all" if cells == "all" else (_csv_list(cells) or None)
    paths = _download(
        source,
        cells=cell_arg,
        dest=dest,
        marks=tuple(_csv_list(marks)) or MARKS,
        base_url=base_url,
        extract=extract,
        dry_run=dry_run,
    )
    for p in paths:
        console.print(str(p))


@app.command()
def explain(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (from demo or an experiment).")],
    data: Annotated[Path, typer.Option(help="Dataset to explain (HDF5, npz, DeepChrome).")],
    cells: Annotated[str, typer.Option(help="Comma-separated cell types, e.g. E003,E123.")],
    methods: Annotated[
        str, typer.Option(help="saliency,input_x_gradient,integrated_gradients")
    ] = "saliency,input_x_gradient,integrated_gradients",
    model: Annotated[str | None, typer.Option(help="Model kind (default: first neural).")] = None,
    max_genes: Annotated[int, typer.Option(help="Genes per cell type (random subset).")] = 2000,
    steps: Annotated[int, typer.Option(help="Integrated-gradients steps.")] = 50,
):
    """Attribution heatmaps (bins x marks) per cell type; attention maps for AttentiveChrome."""
    from histexpr.workflows.explain import explain_run

    cell_list = _csv_list(cells)
    ds = load_dataset(data).select_cells(cell_list)
    result = explain_run(
        run_dir,
        ds,
        cell_list,
        methods=_csv_list(methods),
        model_kind=model,
        max_per_cell=max_genes,
        n_steps=steps,
    )
    for f in result.files:
        console.print(f"wrote {f}")
    for note in result.notes:
        console.print(f"note: {note}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="HTML file to write.")] = None,
    cells: Annotated[str | None, typer.Option(help="Cell types for the data figures.")] = None,
):
    """Write one self-contained HTML report of a run (opens offline)."""
    from histexpr.report import write_report

    console.print(f"wrote {write_report(run_dir, out, _csv_list(cells) or None)}")


@app.command()
def demo(
    run_dir: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/demo"),
    models: Annotated[str | None, typer.Option(help="Comma-separated model kinds.")] = None,
    report: Annotated[bool, typer.Option(help="Write the HTML report at the end.")] = True,
):
    """The main job: train baselines and the CNN ensemble on the embedded data and compare."""
    from histexpr.workflows import run_demo

    result = run_demo(run_dir, models=_csv_list(models) or None, report=report, log=console.print)
    console.print(
        results_table(result.evaluation.table, title="held-out genes: seen vs unseen cell types")
    )
    console.print(f"run directory: {result.run_dir}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit code 2."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = command.main(args=args, prog_name="histexpr", standalone_mode=False)
        # typer turns Ctrl-C into a *returned* 130 when not standalone: exit with it.
        if isinstance(code, int) and code != 0:
            if code == 130:
                err_console.print("interrupted")
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except typer.exceptions.TyperException as exc:
        # usage errors (unknown option, bad value): click's message, exit code 2
        if hasattr(exc, "show"):
            exc.show()
        else:
            err_console.print(f"error: {exc}")
        sys.exit(2)
    except HistexprError as exc:
        if debug:
            raise
        # One line whatever the message holds (library errors can span several);
        # escaped, or rich would swallow keys such as "[marks]" as markup tags.
        message = escape(" ".join(str(exc).split()))
        err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
