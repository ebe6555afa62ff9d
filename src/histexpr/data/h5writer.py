"""Writing the HDF5 dataset file (layout in :mod:`histexpr.data.hdf5`).

Files are streamed block by block under a temporary name and renamed when
complete, so an interrupted write never leaves a file that looks finished.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from histexpr._runtime import histexpr_version
from histexpr.atomic import AtomicFileWriter
from histexpr.data.dataset import BIN_SIZE, HistoneDataset
from histexpr.errors import DataError

FORMAT = "histexpr-dataset"
FORMAT_VERSION = 1
_STR = h5py.string_dtype("utf-8")
#: Rows per chunk: about 1 MB of float32 for 5 marks x 100 bins.
CHUNK_ROWS = 512


#: Filters of ``X`` by name: keyword arguments of ``h5py.create_dataset``.
FILTERS: dict[str, dict] = {
    "lzf": {"compression": "lzf"},
    "gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
    "none": {},
}


def _filter(compression: str | None) -> dict:
    name = "none" if compression is None else str(compression).lower()
    if name not in FILTERS:
        raise DataError(f"compression must be one of {', '.join(FILTERS)}, got {compression!r}")
    return FILTERS[name]


class H5Writer(AtomicFileWriter):
    """Stream examples into a new HDF5 dataset file, renamed into place on close.

    Parameters
    ----------
    path : str or PathLike
        Destination file.
    marks : sequence of str
        Mark order of axis 1 of every appended ``X``.
    n_bins : int
        Bins per example.
    has_target : bool
        Whether examples carry ``y``.
    target : str
        Description of the target transform.
    meta : dict, optional
        JSON-serialisable metadata kept in the file (e.g. simulator settings).
    compression : str or None
        Filter of ``X``: "lzf" (fastest; h5py and PyTables only), "gzip" (level 1 with
        byte shuffle: every HDF5 reader, e.g. R's rhdf5; half LZF's size, see
        docs/hdf5.md) or None.
    has_split : bool
        Store the per-example ``split`` field (``/split``; parts without one get "").

    Examples
    --------
    >>> with H5Writer("data.h5", MARKS, 100, has_target=True) as w:  # doctest: +SKIP
    ...     for part in parts:
    ...         w.append(part)
    """

    def __init__(
        self,
        path,
        marks: Sequence[str],
        n_bins: int,
        has_target: bool,
        target: str = "log2(RPKM+1)",
        meta: dict | None = None,
        compression: str | None = "lzf",
        bin_size: int = BIN_SIZE,
        has_split: bool = False,
    ):
        filters = _filter(compression)  # before any file is opened
        self.marks = tuple(marks)
        self.has_split = bool(has_split)
        self.n_bins = int(n_bins)
        self.has_target = bool(has_target)
        tmp = self._begin(path, suffix=".h5")
        self._f = h5py.File(tmp, "w")
        m = len(self.marks)
        self._f.create_dataset(
            "X",
            shape=(0, m, self.n_bins),
            maxshape=(None, m, self.n_bins),
            dtype=np.float32,
            chunks=(CHUNK_ROWS, m, self.n_bins),
            **filters,
        )
        if self.has_target:
            self._f.create_dataset("y", shape=(0,), maxshape=(None,), dtype=np.float32, chunks=True)
        self._f.create_dataset(
            "cell_code", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=True
        )
        self._f.create_dataset("gene", shape=(0,), maxshape=(None,), dtype=_STR, chunks=True)
        if self.has_split:
            self._f.create_dataset("split", shape=(0,), maxshape=(None,), dtype=_STR, chunks=True)
        self._f.attrs.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            marks=json.dumps(list(self.marks)),
            n_bins=self.n_bins,
            bin_size=int(bin_size),
            target=target,
            histexpr_version=histexpr_version(),
            meta=json.dumps({k: v for k, v in (meta or {}).items() if k != "bin_size"}),
        )
        self._cells: dict[str, int] = {}
        self.n = 0

    def append(self, part: HistoneDataset) -> None:
        """Append a block of examples (any mix of cell types)."""
        if part.marks != self.marks:
            raise DataError(f"marks {part.marks} differ from the file's {self.marks}", self.path)
        if part.n_bins != self.n_bins:
            raise DataError(f"{part.n_bins} bins, the file has {self.n_bins}", self.path)
        if part.has_target != self.has_target:
            raise DataError("mixing examples with and without targets", self.path)
        k = len(part)
        if k == 0:
            return
        codes = np.empty(k, dtype=np.int32)
        names, inverse = np.unique(part.cell, return_inverse=True)
        for j, name in enumerate(names):
            codes[inverse == j] = self._cells.setdefault(str(name), len(self._cells))
        lo, hi = self.n, self.n + k
        f = self._f
        extra = (("y",) if self.has_target else ()) + (("split",) if self.has_split else ())
        for name in ("X", "cell_code", "gene", *extra):
            f[name].resize(hi, axis=0)
        f["X"][lo:hi] = part.X
        f["cell_code"][lo:hi] = codes
        f["gene"][lo:hi] = part.gene.astype(object)
        if self.has_target:
            f["y"][lo:hi] = part.y
        if self.has_split:
            split = part.split if part.split is not None else np.full(k, "")
            f["split"][lo:hi] = split.astype(object)
        self.n = hi

    def _finalize(self) -> None:
        names = sorted(self._cells, key=self._cells.get)
        self._f.create_dataset("cell_names", data=np.array(names, dtype=object), dtype=_STR)

    def _close_handle(self) -> None:
        self._f.close()


def write_h5(ds: HistoneDataset, path, compression: str | None = "lzf") -> Path:
    """Write a whole :class:`HistoneDataset` to ``path`` atomically."""
    with H5Writer(
        path,
        ds.marks,
        ds.n_bins,
        ds.has_target,
        target=ds.target,
        meta=ds.meta,
        compression=compression,
        bin_size=int(ds.meta.get("bin_size", BIN_SIZE)),
        has_split=ds.split is not None,
    ) as w:
        w.append(ds)
    return Path(path)
