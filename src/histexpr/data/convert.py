"""Format detection, loading any supported format, and conversion to HDF5.

Supported inputs
----------------
``"h5"``
    histexpr HDF5 dataset (HDF5 signature).
``"npz"``
    course npz (zip signature; ``.npz``).
``"deepchrome"``
    a folder with ``train.csv``/``valid.csv``/``test.csv``, or a folder of such
    cell-type folders.
``"deepdiff"``
    a DeepDiffChrome folder: ``NAME.{train,valid,test}.csv`` plus ``NAME.expr.csv``
    per cell type (:mod:`histexpr.data.deepdiff`; option ``names={"NAME": "CELL"}``).
``"deeptools"``
    a deepTools ``computeMatrix reference-point`` matrix (``-out`` gz or
    ``--outFileNameMatrix`` text), or a folder of them (:mod:`histexpr.data.deeptools`;
    options ``marks``, ``cell``, ``regions``, ``expression``, ``nan``, ``missing``).

Conversion streams one cell type at a time into :class:`~histexpr.data.hdf5.H5Writer`,
validating every block, so peak memory is about one cell type. DeepChrome's
per-gene split is not stored in the HDF5 file; recover it with
``split_genes(genes, method="deepchrome")``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from histexpr._runtime import progress as progress_bar
from histexpr.data.dataset import BIN_SIZE, HistoneDataset
from histexpr.data.hdf5 import H5Writer, is_h5, open_h5
from histexpr.data.validate import check_keys, validate_dataset
from histexpr.errors import DataError

FORMATS: tuple[str, ...] = ("h5", "npz", "deepchrome", "deepdiff", "deeptools")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


@dataclass(frozen=True)
class ConvertResult:
    """Summary of a conversion.

    Attributes
    ----------
    path : Path
        The HDF5 file written.
    source_format : str
    n_examples : int
    cells : tuple of str
        Cell types written, in file order.
    has_target : bool
    target : str
    seconds : float
        Wall-clock time.
    """

    path: Path
    source_format: str
    n_examples: int
    cells: tuple[str, ...]
    has_target: bool
    target: str
    seconds: float


def _has_split_csv(folder: Path) -> bool:
    return any((folder / f"{s}.csv").is_file() for s in ("train", "valid", "test"))


def detect_format(path) -> str:
    """Format of ``path`` by file signature or folder layout.

    Returns
    -------
    str
        One of :data:`FORMATS`.

    Raises
    ------
    DataError
        When the path is missing or of no supported format.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file or folder not found", path)
    if path.is_dir():
        from histexpr.data.deepchrome import is_deepchrome_folder
        from histexpr.data.deepdiff import is_deepdiff
        from histexpr.data.deeptools import is_deeptools

        if is_deepdiff(path):  # NAME.train.csv + NAME.expr.csv per cell type
            return "deepdiff"
        if is_deepchrome_folder(path):  # <cell>/*.csv or <cell>/classification/*.csv
            return "deepchrome"
        if is_deeptools(path):  # computeMatrix files, one per mark or cell type
            return "deeptools"
        raise DataError(
            "folder holds no DeepChrome train.csv/valid.csv/test.csv (directly or per cell type) "
            "and no deepTools computeMatrix file",
            path,
        )
    if is_h5(path):
        return "h5"
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head in _ZIP_MAGIC:
        return "npz"
    from histexpr.data.deeptools import sniff

    if sniff(path) is not None:
        return "deeptools"
    if path.suffix.lower() in (".npz", ".h5", ".hdf5"):
        raise DataError(f"file extension says {path.suffix} but the content is not", path)
    raise DataError(
        "unrecognised format (expected a histexpr .h5, a course .npz, a DeepChrome folder or a "
        "deepTools computeMatrix file)",
        path,
    )


def _resolve(path, fmt: str | None) -> str:
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})", key="format")
    return fmt


#: ``target`` choices understood for every format (plus each reader's own).
TARGET_CHOICES: tuple[str, ...] = ("auto", "yes", "no")


def _h5_target(target: str | None, path) -> str | None:
    """HDF5: ``None`` keeps the stored target, ``"none"`` drops it."""
    if target in (None, "auto", "as-stored"):
        return None
    if target in ("no", "none"):
        return "none"
    if target == "yes":
        return "yes"
    raise DataError(
        f"target {target!r} does not apply to an HDF5 input (auto, yes or no)", path, "target"
    )


def _plan(
    path: Path, fmt: str, cells: Sequence[str] | None, target: str | None, opts: dict
) -> tuple[list[str], Iterator[HistoneDataset]]:
    """Cell types to read and an iterator of one block per cell type."""
    from histexpr.data.deeptools import OPTIONS

    foreign = sorted(k for k in opts if k in OPTIONS and opts[k] is not None)
    if foreign and fmt != "deeptools":
        raise DataError(f"option(s) {', '.join(foreign)} apply to deepTools matrices only", path)
    opts = {k: v for k, v in opts.items() if v is not None}
    if "cell" in opts and fmt not in ("deeptools", "deepchrome"):
        raise DataError("option cell applies to deepTools matrices and DeepChrome folders", path)
    if fmt == "deeptools":
        from histexpr.data.deeptools import deeptools_blocks

        return deeptools_blocks(path, cells, target, **opts)
    if fmt == "npz":
        from histexpr.data.npz import iter_npz, npz_keys

        keys = check_keys(npz_keys(path), cells, path)
        return keys, iter_npz(path, cells=keys, target=target or "auto", **opts)
    if fmt == "deepchrome":
        from histexpr.data.deepchrome import deepchrome_cells, iter_deepchrome

        keys = check_keys(deepchrome_cells(path, opts.get("cell")), cells, path)
        it = iter_deepchrome(path, cells=keys, target=target or "label", **opts)
        return keys, (d.data for d in it)
    if fmt == "deepdiff":
        from histexpr.data.deepdiff import deepdiff_blocks

        return deepdiff_blocks(path, cells, target, **opts)
    target = _h5_target(target, path)
    if opts:
        raise DataError(f"option(s) {sorted(opts)} do not apply to an HDF5 input", path)
    h = open_h5(path)
    keys = check_keys(h.cells, cells, path)
    if target == "yes" and not h.has_target:
        h.close()
        raise DataError("no expression values (target 'yes')", path, "target")

    def blocks():
        try:
            for c in keys:
                part = h.load([c])
                yield part.without_target() if target == "none" else part
        finally:
            h.close()

    return keys, blocks()


def load_dataset(
    path, fmt: str | None = None, cells: Sequence[str] | None = None, target=None, **opts
) -> HistoneDataset:
    """Read any supported format into memory, validated.

    Parameters
    ----------
    path : str or PathLike
    fmt : str, optional
        Force a format (default: :func:`detect_format`).
    cells : sequence of str, optional
        Cell types to read.
    target : str, optional
        ``"auto"`` (default: whatever the data carry), ``"yes"`` (an error when
        there is no target) or ``"no"`` (read inputs only) for every format, or a
        reader-specific choice (DeepChrome: label/rpkm/none).
    **opts
        Passed to the reader (e.g. ``missing="drop"`` for DeepChrome).
    """
    path = Path(path)
    fmt = _resolve(path, fmt)
    opts = {k: v for k, v in opts.items() if v is not None}
    if fmt == "h5" and _h5_target(target, path) is None and not opts:
        from histexpr.data.hdf5 import read_h5

        return validate_dataset(read_h5(path, cells), path, n_bins=None)
    if fmt == "npz" and not opts:
        # read_npz fills one preallocated X: no per-cell blocks to concatenate
        from histexpr.data.npz import read_npz

        return validate_dataset(read_npz(path, cells, target=target or "auto"), path, n_bins=None)
    _, blocks = _plan(path, fmt, cells, target, opts)
    parts = [validate_dataset(b, path, n_bins=None) for b in blocks]
    if not parts:
        raise DataError("no cell types to read", path)
    return HistoneDataset.concat(parts)


def load_with_target_report(path, target=None) -> tuple[HistoneDataset, dict[str, str]]:
    """Read a dataset for ``info``: the data plus, per cell type, whether it has a target.

    Returns
    -------
    HistoneDataset
        As :func:`load_dataset`; a course npz whose keys disagree (some with
        expression, some without) is read without targets instead of failing.
    dict of str to str
        Per cell type: ``"yes"`` or ``"no (<why>)"`` (npz: decided per key).
    """
    path = Path(path)
    fmt = _resolve(path, None)
    if fmt == "npz":
        from histexpr.data.npz import npz_target_decisions

        decisions = npz_target_decisions(path, target or "auto")
        agree = len({d == "yes" for d in decisions.values()}) <= 1
        ds = load_dataset(path, target=target if agree else "no")
        return ds, decisions
    ds = load_dataset(path, target=target)
    return ds, {c: "yes" if ds.has_target else "no" for c in ds.cells}


def convert(
    src,
    dst,
    fmt: str | None = None,
    cells: Sequence[str] | None = None,
    target=None,
    progress: bool = True,
    compression: str | None = "lzf",
    **opts,
) -> ConvertResult:
    """Convert a dataset to the histexpr HDF5 format, one cell type at a time.

    Parameters
    ----------
    src : str or PathLike
        Input (any of :data:`FORMATS`).
    dst : str or PathLike
        Output ``.h5`` file, written atomically.
    fmt, cells, target, **opts
        As for :func:`load_dataset`.
    progress : bool
        Show a progress bar (on stderr) over cell types.
    compression : str or None
        HDF5 compression of ``X``.

    Returns
    -------
    ConvertResult
    """
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise DataError("output would overwrite the input", dst)
    fmt = _resolve(src, fmt)
    keys, blocks = _plan(src, fmt, cells, target, opts)
    if not keys:
        raise DataError("no cell types to convert", src)
    writer: H5Writer | None = None
    seen: set[str] = set()
    writer_target = ""
    try:
        with progress_bar(len(keys), f"{src.name} -> {dst.name}", "cell", progress) as bar:
            for block in blocks:
                validate_dataset(block, src, n_bins=None)
                dup = seen & set(block.cells)
                if dup:
                    raise DataError("cell type appears in two blocks", src, sorted(dup)[0])
                seen.update(block.cells)
                if writer is None:
                    meta = {"source_format": fmt, "source": src.name}
                    writer = H5Writer(
                        dst,
                        block.marks,
                        block.n_bins,
                        block.has_target,
                        target=block.target,
                        meta=meta,
                        compression=compression,
                        has_split=block.split is not None,
                        bin_size=int(block.meta.get("bin_size", BIN_SIZE)),
                    )
                elif block.target != writer_target:
                    raise DataError("target transform differs between cell types", src)
                writer_target = block.target
                writer.append(block)
                bar.update(1)
    except BaseException as exc:
        if writer is not None:
            writer.abort(exc)
        raise
    if writer is None or writer.n == 0:
        if writer is not None:
            writer.abort()
        raise DataError("no examples read", src)
    writer.close()
    return ConvertResult(
        path=dst,
        source_format=fmt,
        n_examples=writer.n,
        cells=tuple(keys),
        has_target=writer.has_target,
        target=writer_target,
        seconds=time.perf_counter() - t0,
    )
