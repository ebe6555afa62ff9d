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

from histexpr.atomic import guard_output
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


def _csv_list(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


#: ``--force`` of every command that writes: replaces only a previous output of the
#: same kind that histexpr wrote (see histexpr.atomic.guard_output), never other files.
Force = Annotated[
    bool, typer.Option("--force", help="Replace a previous output of histexpr at the same path.")
]


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


#: Section titles of the group table (see histexpr.evaluate.GROUPS): seen / unseen cell
#: types x genes known (trained on) / new (held out); TRAIN: the flagged training rows.
_GROUP_LABELS = {
    "seen/new": "seen x new genes",
    "unseen/known": "unseen x known genes",
    "unseen/new": "unseen x new genes",
    "seen": "seen cell types",
    "unseen": "unseen cell types",
    "all": "all",
    "seen/train": "seen x TRAIN genes",
}


def results_table(table, title: str = "results") -> Table:
    """A rich table of an evaluation table (model x group), one section per group.

    Honest groups come first, in :data:`histexpr.evaluate.GROUP_ORDER`; "all" is
    shown only when the data has no other honest group; the flagged ``seen/train``
    group comes last under its own title.
    """
    from histexpr.evaluate import GROUP_ORDER, TRAINING_GROUP

    present = set(table["group"])
    groups = [g for g in GROUP_ORDER if g in present] or [g for g in ("all",) if g in present]
    if TRAINING_GROUP in present:
        groups.append(TRAINING_GROUP)
    cols = [c for c in _COLUMNS if c[0] in table.columns and table[c[0]].notna().any()]
    t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False)
    # wrappable: a narrow terminal wraps a section title rather than cutting numbers
    t.add_column("model")
    t.add_column("n", justify="right")
    for _, header, _ in cols:
        t.add_column(header, justify="right")
    for i, group in enumerate(groups):
        if i:
            t.add_section()
        if len(groups) > 1 or group != "all":
            t.add_row(f"[bold]{_GROUP_LABELS.get(group, group)}[/bold]")
        for _, row in table[table["group"] == group].iterrows():
            values = []
            for key, _, fmt in cols:
                v = row[key]
                values.append("-" if v is None or np.isnan(v) else fmt.format(v))
            t.add_row(str(row["model"]), str(int(row["n"])), *values)
    return t


def per_cell_table(per_cell, title: str = "per cell type") -> Table:
    """A rich table of an evaluation's per-cell table (one row per model, cell, group)."""
    cols = [c for c in _COLUMNS if c[0] in per_cell.columns and per_cell[c[0]].notna().any()]
    t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False)
    for name in ("model", "cell", "group", "n"):
        t.add_column(name, no_wrap=True, justify="right" if name == "n" else "left")
    for _, header, _ in cols:
        t.add_column(header, justify="right")
    for _, row in per_cell.iterrows():
        values = [
            "-" if row[key] is None or np.isnan(row[key]) else fmt.format(row[key])
            for key, _, fmt in cols
        ]
        group = str(row.get("group", "seen" if row.get("seen", True) else "unseen"))
        t.add_row(str(row["model"]), str(row["cell"]), group, str(int(row["n"])), *values)
    return t


@app.command()
def info(
    data: Annotated[Path, typer.Argument(help="Dataset file (HDF5, npz) or DeepChrome folder.")],
):
    """Summarise a dataset file."""
    from histexpr.data.convert import load_with_target_report
    from histexpr.data.dataset import BIN_SIZE

    ds, has_y = load_with_target_report(data)
    console.print(
        f"[bold]{escape(str(data))}[/bold]: {len(ds)} examples, {len(ds.cells)} cell types, "
        f"{len(np.unique(ds.gene))} genes"
    )
    bin_size = ds.meta.get("bin_size")
    bins = f"{ds.n_bins} x {bin_size if bin_size else f'{BIN_SIZE} (default)'} bp"
    console.print(
        f"marks: {', '.join(ds.marks)}; bins: {bins}; "
        f"target: {ds.target if ds.has_target else 'none'}"
    )
    if ds.split is not None:
        console.print("splits: " + ", ".join(f"{k or '(none)'} {v}" for k, v in ds.splits.items()))
    if len({v == "yes" for v in has_y.values()}) > 1:
        console.print("note: cell types disagree on the target (see 'target'): read without")
    t = Table(title="per cell type")
    for c in (
        "cell",
        "genes",
        "target",
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
            has_y.get(c, "-"),
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
    target: Annotated[
        str, typer.Option(help="auto|yes|no for every format; DeepChrome also label|rpkm.")
    ] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    missing: Annotated[
        str | None, typer.Option(help="DeepChrome --target rpkm: genes without RPKM: error|drop.")
    ] = None,
    compression: Annotated[
        str, typer.Option(help="HDF5 filter of X: lzf, or gzip (readable everywhere, e.g. R).")
    ] = "lzf",
    force: Force = False,
):
    """Convert any supported format to the HDF5 dataset."""
    from histexpr.data.convert import convert as _convert

    guard_output(dst, "dataset-file", [src], force=force)
    opts = {"missing": missing} if missing else {}
    result = _convert(
        src,
        dst,
        fmt=fmt,
        cells=_csv_list(cells) or None,
        target=target,
        progress=progress,
        compression=compression,
        **opts,
    )
    target_text = result.target if result.has_target else "none"
    console.print(
        f"wrote {result.path}: {result.n_examples} examples, {len(result.cells)} cell types "
        f"(from {result.source_format}; target {target_text}) in {result.seconds:.1f} s",
        highlight=False,
    )


def _count_or_all(text: str, option: str) -> int | None:
    """A positive count, or None for "all" (0 never means "all")."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise HistexprError(f"{option} must be a positive integer or 'all', got {text}")
    return value


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
    n_genes: Annotated[str, typer.Option(help="Number of genes, or 'all' (all 19,795).")] = "2000",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    marks: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated marks, core five and/or H3K27ac,H3K9ac; 'all': all seven."
        ),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="h5 or npz (default: from suffix).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    force: Force = False,
):
    """Simulate REMC-like binned histone data with real expression targets."""
    from histexpr.simulator import SimulatorConfig
    from histexpr.simulator import simulate as _simulate

    guard_output(out, "dataset-file", force=force)
    fmt = fmt or ("npz" if out.suffix == ".npz" else "h5")
    kwargs = {"seed": seed, "n_genes": _count_or_all(n_genes, "--n-genes")}
    if cells == "all":
        from histexpr.data.reference import DEEPCHROME_CELLS

        kwargs["cells"] = DEEPCHROME_CELLS
    elif cells:
        kwargs["cells"] = tuple(_csv_list(cells))
    if marks:
        from histexpr.simulator.config import SIM_MARKS

        kwargs["marks"] = SIM_MARKS if marks == "all" else tuple(_csv_list(marks))
    path = _simulate(
        SimulatorConfig(**kwargs),
        out=out,
        progress=progress,
        fmt=fmt,
        unseen_cells=_csv_list(unseen) if unseen is not None else None,
    )
    console.print(f"wrote {path}")


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
        typer.Option(help="DeepChrome genes without RPKM: error or drop."),
    ] = None,
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
    pairs: Annotated[
        str | None, typer.Option(help="Differential kinds: train on these pairs A:B,C:D.")
    ] = None,
    names: Annotated[
        str | None, typer.Option(help="DeepDiff folder: NAME=CELL,... cell ids of file names.")
    ] = None,
    force: Force = False,
):
    """Train one model and save it as a directory."""
    from histexpr.config import parse_overrides
    from histexpr.training.ddp import is_global_zero
    from histexpr.workflows import train_model

    # DDP processes started by Lightning rerun this command: only the first one guards
    # (the others find the run directory that the first has started filling).
    if is_global_zero():
        guard_output(out, "model-dir", [data], force=force or resume)
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
    }
    typed = {name: value for name, value in flags.items() if value is not None}
    from histexpr.workflows.diff import is_diff_kind, train_diff

    if is_diff_kind(model):
        res = train_diff(
            data,
            out,
            model,
            pairs=pairs or (),
            cells=_csv_list(cells),
            exclude_cells=_csv_list(exclude_cells),
            valid_fraction=valid_fraction,
            seed=seed,
            overrides=parse_overrides(set_),
            names=names,
            train_split=train_split,
            valid_split=valid_split,
            log=console.print,
        )
        if res.valid_metrics is not None:
            console.print(res.valid_metrics.to_string(index=False, float_format="%.3f"))
        console.print(f"saved {model} model to {out}")
        return
    if pairs or names:
        raise HistexprError("--pairs and --names apply to differential kinds (diff-*)")
    result = train_model(
        data,
        out,
        kind=model,
        cells=_csv_list(cells),
        exclude_cells=_csv_list(exclude_cells),
        valid_fraction=valid_fraction,
        seed=seed,
        target=target,
        overrides={**parse_overrides(set_), **typed},
        resume=resume,
        log=console.print,
        train_split=train_split,
        valid_split=valid_split,
        missing=missing,
    )
    if result.valid_metrics is not None:
        console.print(results_table(result.valid_metrics, title="validation (held-out genes)"))
    _report_time_budget(out)
    console.print(f"saved {model} model to {out}")


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
        ev = evaluate_diff(model_dir, data, pair, from_model, names, split, out)
        console.print(ev.table.to_string(index=False, float_format="%.3f"))
        for note in ev.notes:
            console.print(f"note: {escape(note)}", soft_wrap=True)
        return
    if names or from_model:
        raise HistexprError("--names and --from-model apply with --pair")
    from histexpr.workflows.evaluate import evaluate_model, per_cell_path

    for path in [out, per_cell_path(out)] if out is not None else []:
        guard_output(path, "table-file", [model_dir, data], force=force)
    evaluation = evaluate_model(
        model_dir,
        data,
        unseen_cells=_csv_list(unseen),
        out=out,
        memory_budget=memory,
        progress=progress and sys.stderr.isatty(),  # a bar on a terminal, never in a log
        split=split,
    )
    console.print(results_table(evaluation.table, title=f"{model_dir}"))
    if per_cell:
        console.print(per_cell_table(evaluation.per_cell))
    for note in evaluation.notes:
        err_console.print(
            f"[yellow]warning:[/yellow] {escape(note)}", highlight=False, soft_wrap=True
        )
    if out is not None:
        console.print(f"wrote {out} and {per_cell_path(out)}")


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
):
    """The DeepChrome protocol: train on train.csv, choose on valid.csv, score test.csv."""
    from histexpr.workflows.protocol import run_protocol

    result = run_protocol(
        folder,
        out,
        model=model,
        joint=not per_cell,
        cells=_csv_list(cells) or None,
        target=target,
        missing=missing,
        overrides=set_ or (),
        log=console.print,
    )
    t = Table(title=f"{model}: test split per cell type")
    for c in result.table.columns:
        t.add_column(c)
    for row in result.table.itertuples(index=False):
        t.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    console.print(t)
    console.print(f"wrote {result.table_path}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Saved model directory.")],
    data: Annotated[Path, typer.Argument(help="Data to predict (expression not needed).")],
    out: Annotated[
        Path, typer.Option("-o", "--out", help="Output table (.csv, or .parquet for Parquet).")
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
    force: Force = False,
):
    """Predict expression: a tidy table (cell, gene, prediction) or the course submission.

    Classifiers write probability_high (the probability of above-median expression)
    instead of prediction. With --pair: gene, cell_a, cell_b, predicted_lfc.
    """
    if pair:
        from histexpr.workflows.diff import predict_diff

        guard_output(out, "table-file", [model_dir, data], force=force)
        n = predict_diff(model_dir, data, pair, out, names, split)
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
    )
    console.print(f"wrote {n} predictions to {out}")


def _report_filled_marks(tracks: dict) -> None:
    """Say which marks ``--fill-missing`` fills with zeros, per cell type."""
    from histexpr.featurize.pipeline import file_marks

    names = file_marks(tracks)
    for cell, given in tracks.items():
        missing = [m for m in names if m not in given]
        if not missing:
            continue
        most = "; most marks are missing, predictions will be unreliable" * (
            2 * len(missing) > len(names)
        )
        err_console.print(
            f"[yellow]warning:[/yellow] {escape(str(cell))}: no track for "
            f"{', '.join(missing)} ({len(missing)} of {len(names)} marks), filled with zeros{most}",
            highlight=False,
        )


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
    force: Force = False,
):
    """Bin bigWig / BAM / tagAlign tracks around each TSS into a dataset."""
    from histexpr.featurize import ReadCountOptions, Window, parse_mark_specs, read_manifest
    from histexpr.featurize import featurize as _featurize

    tracks = read_manifest(manifest) if manifest else {}
    for c, marks in parse_mark_specs(mark or [], cell).items():
        tracks.setdefault(c, {}).update(marks)
    if not tracks:
        raise HistexprError("no tracks given: use --mark MARK=PATH (with --cell) or --manifest")
    track_paths = [p for marks in tracks.values() for p in marks.values()]
    guard_output(out, "dataset-file", [*track_paths, tss, expression, manifest], force=force)
    if fill_missing:
        _report_filled_marks(tracks)
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
        str | None, typer.Option(help="Differential model: explain the change A:B per gene.")
    ] = None,
    names: Annotated[
        str | None, typer.Option(help="DeepDiff folder: NAME=CELL,... cell ids of file names.")
    ] = None,
):
    """Attribution maps (marks x bins) per cell type and per gene; attention for AttentiveChrome.

    A model directory is explained into MODEL_DIR.explain (never into the model);
    an explanation folder of another model is never replaced.
    """
    if pair:
        from histexpr.workflows.diff import explain_diff

        if data is None:
            raise HistexprError("explain --pair needs --data")
        for f in explain_diff(path, data, pair, out, names):
            console.print(f"wrote {escape(str(f))}", soft_wrap=True, highlight=False)
        return
    if names:
        raise HistexprError("--names applies with --pair")
    from histexpr.workflows.explain import explain_path, resolve_target

    target = resolve_target(path, model)
    guard_output(out or target.default_out, "explain-dir", [data, target.model_dir], force=True)
    result = explain_path(
        path,
        data,
        _csv_list(cells) or None,
        methods=_csv_list(methods),
        model_kind=model,
        max_per_cell=max_genes,
        n_steps=steps,
        out=out,
        genes=_csv_list(genes) or None,
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

    # the default report belongs to its run or model and is regenerated freely
    dest = out or default_report_path(path)
    guard_output(dest, "report-file", [path], force=force or not out)
    written = write_report(path, out, _csv_list(cells) or None, explain_dir=explain_dir)
    console.print(f"wrote {escape(str(written))}", soft_wrap=True, highlight=False)


@app.command()
def demo(
    run_dir: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/demo"),
    models: Annotated[str | None, typer.Option(help="Comma-separated model kinds.")] = None,
    report: Annotated[bool, typer.Option(help="Write the HTML report at the end.")] = True,
):
    """The main job: train baselines and the CNN ensemble on the embedded data and compare."""
    from histexpr.workflows import run_demo

    guard_output(run_dir, "run-dir", force=True)  # reruns reuse it; other folders are refused
    result = run_demo(run_dir, models=_csv_list(models) or None, report=report, log=console.print)
    console.print(
        results_table(
            result.evaluation.table, title="held out: seen/unseen cell types x known/new genes"
        )
    )
    console.print(f"run directory: {result.run_dir}")


#: Longest error line printed; longer messages lose their middle.
MAX_ERROR_CHARS = 300


def bounded(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``message`` on one line of at most ``limit`` characters (the middle elided)."""
    text = " ".join(str(message).split())
    if len(text) <= limit:
        return text
    keep = limit - 5
    return f"{text[: keep - keep // 3]} ... {text[len(text) - keep // 3 :]}"


def _interrupted(args: list[str]) -> None:
    command = next((a for a in args if not a.startswith("-")), "")
    hint = "; run the same command with --resume to continue" if command == "train" else ""
    err_console.print(f"interrupted{hint}", highlight=False, soft_wrap=True)
    sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit code 2.

    Ctrl-C prints "interrupted" (with a hint to ``--resume`` for train) and exits
    with 130; error lines are at most :data:`MAX_ERROR_CHARS` characters.
    """
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = command.main(args=args, prog_name="histexpr", standalone_mode=False)
        # typer turns Ctrl-C into a *returned* 130 when not standalone: exit with it.
        if isinstance(code, int) and code != 0:
            if code == 130:
                _interrupted(args)
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        # click turns KeyboardInterrupt (and EOFError) into Abort
        _interrupted(args)
    except typer.exceptions.TyperException as exc:
        # usage errors (unknown option, bad value): click's message, exit code 2
        if hasattr(exc, "show"):
            exc.show()
        else:
            err_console.print(f"error: {bounded(exc)}")
        sys.exit(2)
    except HistexprError as exc:
        if debug:
            raise
        # One bounded line whatever the message holds (library errors can span several);
        # escaped, or rich would swallow keys such as "[marks]" as markup tags.
        message = escape(bounded(str(exc)))
        err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted(args)
