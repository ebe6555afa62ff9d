"""Raw tracks of many cell types and marks -> one histexpr HDF5 dataset.

Every (cell, mark) track is binned independently (bigWig: bin sums; BAM and
tagAlign: read counts, see :mod:`histexpr.featurize.reads`), serially or as Dask
tasks. Cells are written in the order given, each as soon as all its marks are
done, so the file is identical whatever the scheduling; the number of finished
but unwritten tracks is bounded, which bounds memory; the output file appears
only when complete (:class:`histexpr.data.hdf5.H5Writer`).
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr._runtime import dask_client, notice
from histexpr._runtime import progress as _progress_bar
from histexpr.config import to_dict
from histexpr.data.dataset import (
    MARKS,
    TARGET_LOG2_RPKM,
    HistoneDataset,
    canonical_gene_ids,
    log2_rpkm,
    mark_name,
    order_marks,
)
from histexpr.data.hdf5 import H5Writer
from histexpr.errors import ConfigError, DataError
from histexpr.featurize.annotation import TssTable, Window, read_tss
from histexpr.featurize.bigwig import bin_bigwig, is_bigwig, require
from histexpr.featurize.reads import ReadCountOptions, count_bam, count_tagalign

MarkPaths = Mapping[str, Mapping[str, "str | os.PathLike"]]


def track_kind(path) -> str:
    """``"bigwig"``, ``"bam"`` or ``"tagalign"`` (tagAlign / BED reads), by content and suffix."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    name = path.name.lower()
    if is_bigwig(path) or name.endswith((".bw", ".bigwig")):
        return "bigwig"
    if name.endswith(".bam"):
        return "bam"
    if name.removesuffix(".gz").endswith((".tagalign", ".bed")):
        return "tagalign"
    raise DataError("unknown track type; expected .bigWig/.bw, .bam or .tagAlign[.gz]", path)


def featurize_track(
    path, tss: TssTable, window: Window | None = None, options: ReadCountOptions | None = None
) -> np.ndarray:
    """Bin one track file.

    Returns
    -------
    np.ndarray, shape (n_genes, n_bins), float32
    """
    kind = track_kind(path)
    if kind == "bigwig":
        return bin_bigwig(path, tss, window)
    if kind == "bam":
        return count_bam(path, tss, window, options)
    return count_tagalign(path, tss, window, options)


def _track_task(path, tss, window, options) -> tuple[np.ndarray, list[str]]:
    """:func:`featurize_track` plus the warnings it raised (Dask workers would lose them)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        binned = featurize_track(path, tss, window, options)
    return binned, [str(w.message) for w in caught]


def _rewarn(messages: list[str]) -> None:
    for msg in messages:
        notice(msg, stacklevel=3)


def parse_mark_specs(specs, cell: str | None = None) -> dict[str, dict[str, str]]:
    """Parse command-line track specs into ``{cell: {mark: path}}``.

    Parameters
    ----------
    specs : sequence of str
        ``MARK=PATH`` (cell from ``cell``) or ``CELL:MARK=PATH``.
    cell : str, optional
        Cell type of specs without a ``CELL:`` prefix.
    """
    out: dict[str, dict[str, str]] = {}
    for spec in specs:
        key, sep, path = spec.partition("=")
        if not sep or not path:
            raise ConfigError(f"track {spec!r} is not of the form [CELL:]MARK=PATH")
        c, colon, mark = key.rpartition(":")
        mark = mark_name(mark, spec)  # H3k4me3 is H3K4me3, not a sixth mark
        c = c if colon else cell
        if not c:
            raise ConfigError(f"track {spec!r} names no cell type; give --cell or CELL:MARK=PATH")
        if mark in out.setdefault(c, {}):
            raise ConfigError(f"mark {mark} given twice for cell {c}")
        out[c][mark] = path
    return out


def read_manifest(path) -> dict[str, dict[str, str]]:
    """Read a TSV with columns cell, mark, path (relative paths are relative to the TSV)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str)
    except (OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read manifest ({exc})", path) from None
    for col in ("cell", "mark", "path"):
        if col not in df.columns:
            raise DataError(f"manifest has no column {col!r}", path, col)
    specs = [
        f"{c}:{m}={p if Path(p).is_absolute() else path.parent / p}"
        for c, m, p in zip(df["cell"], df["mark"], df["path"], strict=True)
    ]
    return parse_mark_specs(specs)


def read_expression(path) -> pd.DataFrame:
    """Read an RPKM table: a ``gene_id`` column (or the first column) and one column per cell.

    The Roadmap matrix (trailing tab on every row) is read correctly.
    """
    path = Path(path)
    sep = "," if path.name.lower().removesuffix(".gz").endswith(".csv") else "\t"
    try:
        df = pd.read_csv(path, sep=sep, index_col=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read expression table ({exc})", path) from None
    key = "gene_id" if "gene_id" in df.columns else df.columns[0]
    df[key] = canonical_gene_ids(df[key].astype(str).to_numpy())
    return df.set_index(key)


def file_marks(marks: MarkPaths) -> tuple[str, ...]:
    """Marks of the output file: the five core marks plus every other mark given, in order.

    Names follow :data:`histexpr.data.dataset.MARK_PATTERN` (e.g. ``H3K27ac``, ``DNase``);
    the order is :func:`histexpr.data.dataset.order_marks`.
    """
    return order_marks([*MARKS, *(m for tracks in marks.values() for m in tracks)])


def _check_marks(marks: MarkPaths, fill_missing: bool) -> dict[str, list[str]]:
    if not marks:
        raise ConfigError("no tracks given")
    names = file_marks(marks)
    filled: dict[str, list[str]] = {}
    for cell, tracks in marks.items():
        missing = [m for m in names if m not in tracks]
        if missing and not fill_missing:
            raise DataError(
                f"no track for mark(s) {', '.join(missing)} (use fill_missing / --fill-missing "
                "to fill them with zeros)",
                key=cell,
            )
        if missing:
            filled[cell] = missing
    return filled


def featurize(
    tss: TssTable | str | os.PathLike | None,
    marks: MarkPaths,
    out,
    expression: pd.DataFrame | str | os.PathLike | None = None,
    window: Window | None = None,
    read_options: ReadCountOptions | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    processes: bool = True,
    progress: bool = True,
    fill_missing: bool = False,
    missing: str = "error",
) -> Path:
    """Build a histexpr HDF5 dataset from raw tracks.

    Parameters
    ----------
    tss : TssTable, path or None
        Genes and TSS (a path is read with :func:`read_tss`; None: packaged GENCODE v10).
    marks : mapping
        ``{cell: {mark: path}}``: the five core marks and any others (see :func:`file_marks`).
    out : str or PathLike
        Output ``.h5`` file (written atomically).
    expression : DataFrame or path, optional
        RPKM, index gene ids, one column per cell; ``y = log2(RPKM + 1)``. Without
        it the dataset has no target.
    window : Window, optional
        Default +/- 5 kb in 100 bins.
    read_options : ReadCountOptions, optional
        Filters and counting position for BAM / tagAlign tracks.
    workers : int, optional
        Start a local Dask cluster on 127.0.0.1 with this many workers.
    scheduler : str, optional
        Address of an existing Dask scheduler (takes precedence over ``workers``).
    processes : bool
        Local cluster workers as processes (True) or threads.
    progress : bool
        Show a progress bar over tracks.
    fill_missing : bool
        Fill absent marks with zeros instead of failing (recorded in the file's meta).
    missing : {"error", "drop"}
        Genes of the TSS table that ``expression`` lacks: an error naming how many
        and the first (default), or dropped with a warning -- the rule of
        ``convert --missing``.

    Returns
    -------
    Path
        ``out``.
    """
    if missing not in ("error", "drop"):
        raise ConfigError(f"missing must be 'error' or 'drop', got {missing!r}")
    window = window or Window()
    read_options = read_options or ReadCountOptions()
    if not isinstance(tss, TssTable):
        tss = read_tss(tss)
    filled = _check_marks(marks, fill_missing)
    cells = [str(c) for c in marks]
    n_in = len(tss)
    y_by_cell: dict[str, np.ndarray] = {}
    if expression is not None:
        source = expression if not isinstance(expression, pd.DataFrame) else None
        if source is not None:
            expression = read_expression(source)
        if expression.index.duplicated().any():
            dup = expression.index[expression.index.duplicated()][0]
            raise DataError(f"gene {dup} occurs twice in the expression table", source)
        absent = [c for c in cells if c not in expression.columns]
        if absent:
            raise DataError(f"no expression column for cell(s) {', '.join(absent)}", source)
        found = np.isin(tss.gene_id, expression.index.astype(str))
        if not found.all():
            lost = tss.gene_id[~found]
            msg = f"{len(lost)} of {len(found)} genes of the TSS table have no expression"
            if missing == "error" or not found.any():
                raise DataError(
                    f"{msg} (first {lost[0]}); use --missing drop to leave them out", source
                )
            warnings.warn(
                f"{source or 'expression'}: {msg} (first {lost[0]}); dropped", stacklevel=2
            )
        tss = tss.subset(found)
        rpkm = expression.loc[tss.gene_id, cells].to_numpy(dtype=np.float64)
        y_by_cell = {c: log2_rpkm(rpkm[:, j]) for j, c in enumerate(cells)}
    for tracks in marks.values():
        for path in tracks.values():
            track_kind(path)  # fail fast on missing or unknown files, before any work
    names = file_marks(marks)
    tasks = [(cell, m, str(marks[cell][m])) for cell in cells for m in names if m in marks[cell]]
    meta = {
        "source": "featurize",
        "window": to_dict(window),
        "read_options": to_dict(read_options),
        "tracks": {c: {m: str(p) for m, p in marks[c].items()} for c in cells},
        "filled_zero": filled,
        "n_genes_tss": n_in,
        "n_genes": len(tss),
    }
    with H5Writer(
        out,
        names,
        window.n_bins,
        has_target=expression is not None,
        target=TARGET_LOG2_RPKM,
        meta=meta,
        bin_size=window.bin_size,
    ) as writer:
        assembler = _Assembler(cells, marks, tss, window, y_by_cell, writer, names)
        bar = _progress_bar(len(tasks), "featurize", "track", progress)
        try:
            if scheduler is None and not workers:
                for cell, mark, path in tasks:
                    binned, messages = _track_task(path, tss, window, read_options)
                    _rewarn(messages)
                    assembler.add(cell, mark, binned)
                    bar.update(1)
            else:
                _run_dask(
                    tasks, tss, window, read_options, workers, scheduler, processes, assembler, bar
                )
        finally:
            bar.close()
    return Path(out)


class _Assembler:
    """Collects finished tracks and writes each cell, in order, once it is complete."""

    def __init__(self, cells, marks, tss, window, y_by_cell, writer, names=MARKS):
        self.cells, self.marks, self.tss, self.names = cells, marks, tss, tuple(names)
        self.window, self.y, self.writer = window, y_by_cell, writer
        self.done: dict[str, dict[str, np.ndarray]] = {c: {} for c in cells}
        self.next_cell = 0
        self.written_tracks = 0

    def add(self, cell: str, mark: str, binned: np.ndarray) -> None:
        self.done[cell][mark] = binned
        while self.next_cell < len(self.cells):
            c = self.cells[self.next_cell]
            if len(self.done[c]) < len(self.marks[c]):
                break
            self._write(c)
            self.next_cell += 1

    def _write(self, cell: str) -> None:
        n = len(self.tss)
        X = np.zeros((n, len(self.names), self.window.n_bins), dtype=np.float32)
        for j, m in enumerate(self.names):
            if m in self.done[cell]:
                X[:, j] = self.done[cell][m]
        self.written_tracks += len(self.done[cell])
        self.done[cell] = {}
        self.writer.append(
            HistoneDataset(
                X=X,
                y=self.y.get(cell),
                cell=np.full(n, cell),
                gene=self.tss.gene_id,
                marks=self.names,
            )
        )


def _run_dask(tasks, tss, window, options, workers, scheduler, processes, assembler, bar) -> None:
    distributed = require("distributed")
    with dask_client(int(workers or 0), scheduler, processes) as client:
        n_workers = max(len(client.scheduler_info().get("workers", {})), 1)
        # Finished-but-unwritten tracks are capped so memory stays bounded.
        max_ahead = 2 * n_workers + len(MARKS)
        tss_f = client.scatter(tss, broadcast=True)
        pending = distributed.as_completed()
        # Unique keys: a shared scheduler must not hand back another run's results.
        token = uuid.uuid4().hex
        which: dict[str, tuple[str, str]] = {}
        submitted = 0

        def top_up():
            nonlocal submitted
            while submitted < len(tasks) and submitted - assembler.written_tracks < max_ahead:
                cell, mark, path = tasks[submitted]
                key = f"featurize-{cell}-{mark}-{token}"
                which[key] = (cell, mark)
                pending.add(client.submit(_track_task, path, tss_f, window, options, key=key))
                submitted += 1

        top_up()
        for fut in pending:
            cell, mark = which.pop(fut.key)
            binned, messages = fut.result()
            _rewarn(messages)
            assembler.add(cell, mark, binned)
            fut.release()
            bar.update(1)
            top_up()
