"""Data commands: info, convert, simulate, featurize, download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
import typer.exceptions
from rich.markup import escape
from rich.table import Table

from histexpr.atomic import guard_output
from histexpr.cli._app import (
    Cell,
    Expression,
    Force,
    Marks,
    app,
    console,
    csv_list,
    err_console,
    reader_options,
)
from histexpr.errors import HistexprError


def _model_info(model_dir: Path) -> None:
    """A saved model: kind, contract and the comparison of ``--model auto`` when recorded."""
    from histexpr.estimators.atlas_residual import residual_lines
    from histexpr.estimators.bundle import describe, load_metrics, read_auto, read_header

    console.print(f"[bold]{escape(str(model_dir))}[/bold]: a histexpr model directory")
    for line in describe(read_header(model_dir)):
        console.print(escape(line))
    for line in residual_lines(load_metrics(model_dir)):  # after: metrics.json may be damaged
        console.print(escape(line))
    rows = read_auto(model_dir)
    if not rows:
        return
    t = Table(title="auto: cross-validated comparison (MSE; chosen *)")
    for c in ("candidate", "MSE", "spread", "fit s", "folds", "note"):
        t.add_column(c)

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    for r in rows:
        t.add_row(
            ("* " if r.get("chosen") else "") + str(r.get("candidate")),
            num(r.get("score"), ".4g"),
            num(r.get("spread"), ".2g"),
            num(r.get("fit_seconds"), ".1f"),
            str(r.get("folds", 0)),
            escape(str(r.get("skipped_reason") or "")),
        )
    console.print(t)


@app.command()
def info(
    data: Annotated[
        Path,
        typer.Argument(help="Dataset file (HDF5, npz), DeepChrome folder or model directory."),
    ],
):
    """Summarise a dataset file, or a saved model (kind, input contract, auto comparison)."""
    from histexpr.data.convert import load_with_target_report
    from histexpr.data.dataset import BIN_SIZE
    from histexpr.estimators.bundle import HEADER, describe_window

    if data.is_dir() and (data / HEADER).is_file():
        _model_info(data)
        return
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
    window = ds.meta.get("window")
    if isinstance(window, dict) and window.get("upstream") is not None:
        console.print(
            f"window: {describe_window(int(window['upstream']), ds.n_bins, ds.meta.get('bin_size'))}"
        )
    if ds.meta.get("unseen_cells"):
        console.print(
            "unseen cell types (recorded by simulate; the experiment holds them out): "
            + ", ".join(map(str, ds.meta["unseen_cells"]))
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
    src: Annotated[
        Path,
        typer.Argument(help="Input: course npz, DeepChrome folder, HDF5 or deepTools matrix."),
    ],
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
        str | None,
        typer.Option(
            help="Genes without RPKM (DeepChrome --target rpkm, --expression): error|drop."
        ),
    ] = None,
    compression: Annotated[
        str, typer.Option(help="HDF5 filter of X: lzf, or gzip (readable everywhere, e.g. R).")
    ] = "lzf",
    marks: Marks = None,
    cell: Cell = None,
    expression: Expression = None,
    regions: Annotated[
        Path | None,
        typer.Option(help="deepTools text matrix: its --outFileSortedRegions BED (default: .bed)."),
    ] = None,
    force: Force = False,
):
    """Convert any supported format (a deepTools computeMatrix file too) to the HDF5 dataset."""
    from histexpr.data.convert import convert as _convert

    guard_output(dst, "dataset-file", [src, expression, regions], force=force)
    opts = reader_options(
        missing=missing, marks=marks, cell=cell, expression=expression, regions=regions
    )
    result = _convert(
        src,
        dst,
        fmt=fmt,
        cells=csv_list(cells) or None,
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
        kwargs["cells"] = tuple(csv_list(cells))
    if marks:
        from histexpr.simulator.config import SIM_MARKS

        kwargs["marks"] = SIM_MARKS if marks == "all" else tuple(csv_list(marks))
    path = _simulate(
        SimulatorConfig(**kwargs),
        out=out,
        progress=progress,
        fmt=fmt,
        unseen_cells=csv_list(unseen) if unseen is not None else None,
    )
    console.print(f"wrote {path}")


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
    missing: Annotated[
        str, typer.Option(help="--expression: genes the table lacks: error|drop.")
    ] = "error",
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
        missing=missing,
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
    force: Annotated[
        bool,
        typer.Option("--force", help="Fetch again a file whose name a different file holds."),
    ] = False,
):
    """Download public data sets (only when you ask; resumable, verified)."""
    from histexpr.data.dataset import MARKS
    from histexpr.data.download import default_cache_dir
    from histexpr.data.download import download as _download

    guard_output(dest or default_cache_dir() / source, "download-dir")
    cell_arg = "all" if cells == "all" else (csv_list(cells) or None)
    paths = _download(
        source,
        cells=cell_arg,
        dest=dest,
        marks=tuple(csv_list(marks)) or MARKS,
        base_url=base_url,
        extract=extract,
        dry_run=dry_run,
        force=force,
    )
    for p in paths:
        console.print(str(p))
