"""The HDF5 dataset file: chunked, lazily readable, sliceable by cell type.

Layout (format version 1)::

    /X          float32 (n, n_marks, n_bins)  chunked by rows
    /y          float32 (n,)                  only when targets are known
    /cell_code  int32   (n,)                  index into /cell_names
    /cell_names str     (n_cells,)
    /gene       str     (n,)
    /split      str     (n,)                  optional: the published split of each
                                              example ("train", "valid", "test")
    attrs: format, format_version, marks, n_bins, bin_size, target,
           histexpr_version, meta (JSON)

Reading is lazy (:class:`H5Dataset`); writing is in :mod:`histexpr.data.h5writer`
(:class:`H5Writer`, :func:`write_h5`, re-exported here).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from histexpr.data.dataset import BIN_SIZE, HistoneDataset, check_mark_names
from histexpr.data.h5writer import FORMAT, FORMAT_VERSION, H5Writer, write_h5
from histexpr.data.validate import check_counts, one_line
from histexpr.errors import DataError

__all__ = ["FORMAT", "FORMAT_VERSION", "H5Dataset", "H5Writer", "open_h5", "read_h5", "write_h5"]


class H5Dataset:
    """Lazy reader of a histexpr HDF5 dataset file.

    Only the small per-example arrays (cell codes) are read on open; ``X``,
    ``y`` and gene ids are read per request.

    Parameters
    ----------
    path : str or PathLike
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError("file not found", self.path)
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as exc:
            raise DataError(f"not a readable HDF5 file ({one_line(exc)})", self.path) from None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        f = self._f
        if f.attrs.get("format") != FORMAT:
            raise DataError(
                "not a histexpr dataset (convert it first with `histexpr convert`)", self.path
            )
        version = _attr(self.path, "format_version", int, f.attrs.get("format_version", -1))
        if version > FORMAT_VERSION:
            raise DataError(
                f"dataset format version {version} is newer than this histexpr supports "
                f"({FORMAT_VERSION}); upgrade histexpr",
                self.path,
            )
        for key in ("X", "cell_code", "cell_names", "gene"):
            if not isinstance(f.get(key), h5py.Dataset):
                raise DataError("missing array", self.path, key)
        marks = _attr(self.path, "marks", json.loads, f.attrs.get("marks"))
        if not isinstance(marks, list) or not all(isinstance(m, str) for m in marks):
            raise DataError("attribute is not a JSON list of mark names", self.path, "marks")
        self.marks = check_mark_names(marks, self.path)  # the one spelling of each name
        self.n_bins = _attr(self.path, "n_bins", int, f.attrs.get("n_bins"))
        self.bin_size = _attr(self.path, "bin_size", int, f.attrs.get("bin_size", BIN_SIZE))
        self.target = str(f.attrs.get("target", ""))
        self.meta = _attr(self.path, "meta", json.loads, f.attrs.get("meta", "{}"))
        if not isinstance(self.meta, dict):
            raise DataError("attribute is not a JSON object", self.path, "meta")
        self.has_target = "y" in f
        self.has_split = "split" in f
        X = f["X"]
        self.n = int(X.shape[0]) if X.ndim else 0
        if X.shape != (self.n, len(self.marks), self.n_bins):
            raise DataError(
                f"shape {X.shape} does not match {len(self.marks)} marks x {self.n_bins} bins",
                self.path,
                "X",
            )
        if X.dtype.kind not in "fiu":
            raise DataError(f"counts must be numeric, got dtype {X.dtype}", self.path, "X")
        for key, kinds in (("cell_code", "iu"), ("gene", "OSU"), ("y", "fiu"), ("split", "OSU")):
            if (key == "y" and not self.has_target) or (key == "split" and not self.has_split):
                continue
            d = f[key]
            if not isinstance(d, h5py.Dataset) or d.shape != (self.n,):
                raise DataError(f"shape {d.shape}, expected ({self.n},)", self.path, key)
            if d.dtype.kind not in kinds:
                raise DataError(f"unexpected dtype {d.dtype}", self.path, key)
        try:
            self.cell_names = [
                s.decode() if isinstance(s, bytes) else str(s) for s in _read(self, "cell_names")
            ]
        except UnicodeDecodeError as exc:
            raise DataError(f"not UTF-8 ({one_line(exc)})", self.path, "cell_names") from None
        self.cell_code = _read(self, "cell_code")
        bad = (self.cell_code < 0) | (self.cell_code >= len(self.cell_names))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"row {row}: cell code {int(self.cell_code[row])} outside 0..{len(self.cell_names) - 1}",
                self.path,
                "cell_code",
            )

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"H5Dataset({str(self.path)!r}, n={self.n}, cells={len(self.cell_names)})"

    @property
    def cells(self) -> list[str]:
        """Cell types present, in order of first appearance."""
        return list(self.cell_names)

    @property
    def nbytes_X(self) -> int:
        """Size of ``X`` in memory (bytes) when fully loaded."""
        return self.n * len(self.marks) * self.n_bins * 4

    def cell_index(self, cells: Sequence[str]) -> np.ndarray:
        """Sorted example indices of the given cell types."""
        unknown = [c for c in cells if c not in self.cell_names]
        if unknown:
            raise DataError(f"cell type(s) not in file: {', '.join(unknown)}", self.path, "cell")
        codes = [self.cell_names.index(c) for c in cells]
        return np.flatnonzero(np.isin(self.cell_code, codes))

    def read(self, index=None) -> HistoneDataset:
        """Read examples by slice or sorted integer index (all when None)."""
        f = self._f
        if index is None:
            index = slice(None)
        if not isinstance(index, slice):
            index = np.asarray(index)
            # A boolean mask would otherwise be read as the row numbers 0 and 1.
            index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)
            if len(index) and np.all(np.diff(index) == 1):
                index = slice(int(index[0]), int(index[-1]) + 1)
            elif len(index) == 0:
                index = slice(0, 0)
        try:
            if isinstance(index, slice):
                X = f["X"][index]
                y = f["y"][index] if self.has_target else None
                gene = f["gene"][index]
                split = f["split"][index] if self.has_split else None
            else:
                # h5py fancy indexing needs increasing indices; read contiguous runs.
                X = _read_rows(f["X"], index)
                y = _read_rows(f["y"], index) if self.has_target else None
                gene = _read_rows(f["gene"], index)
                split = _read_rows(f["split"], index) if self.has_split else None
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            # a damaged chunk or filter: h5py raises any of these
            raise DataError(f"cannot read examples ({one_line(exc)})", self.path, "X") from None
        code = self.cell_code[index]
        if X.dtype != np.float32:
            # before the float32 cast, which would turn huge values into inf
            check_counts(X, self.path, "X", n_marks=None, n_bins=None, marks=self.marks)
        names = np.array(self.cell_names, dtype=object)
        try:
            genes = [g.decode() if isinstance(g, bytes) else g for g in gene]
            if split is not None:
                split = np.array(
                    [s.decode() if isinstance(s, bytes) else s for s in split], dtype=str
                ).reshape(-1)
        except UnicodeDecodeError as exc:
            raise DataError(f"gene id or split is not UTF-8 ({one_line(exc)})", self.path) from None
        return HistoneDataset(
            X=X,
            y=y,
            cell=names[code].astype(str) if len(code) else np.array([], dtype=str),
            gene=np.array(genes, dtype=str) if len(gene) else np.array([], dtype=str),
            marks=self.marks,
            target=self.target,
            meta={**self.meta, "bin_size": self.bin_size},
            split=split,
        )

    def load(self, cells: Sequence[str] | None = None) -> HistoneDataset:
        """Read everything, or only the given cell types, into memory."""
        return self.read(None if cells is None else self.cell_index(list(cells)))

    def iter_batches(
        self, batch_size: int = 65536, index: np.ndarray | None = None
    ) -> Iterator[HistoneDataset]:
        """Yield consecutive blocks of at most ``batch_size`` examples.

        Parameters
        ----------
        batch_size : int
        index : np.ndarray, optional
            Sorted example indices to restrict to (e.g. from :meth:`cell_index`).
        """
        if index is None:
            for lo in range(0, self.n, batch_size):
                yield self.read(slice(lo, min(lo + batch_size, self.n)))
        else:
            for lo in range(0, len(index), batch_size):
                yield self.read(index[lo : lo + batch_size])

    def close(self) -> None:
        try:
            self._f.close()
        except Exception:
            pass

    def __enter__(self) -> H5Dataset:
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _read_rows(dset, index: np.ndarray) -> np.ndarray:
    index = np.asarray(index)
    order = np.argsort(index, kind="stable")
    sorted_idx = index[order]
    out = np.empty((len(index), *dset.shape[1:]), dtype=dset.dtype)
    # Split into contiguous runs: one hyperslab read per run.
    breaks = np.flatnonzero(np.diff(sorted_idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(sorted_idx)]])
    buf = np.empty_like(out)
    for s, e in zip(starts, ends, strict=True):
        buf[s:e] = dset[int(sorted_idx[s]) : int(sorted_idx[e - 1]) + 1]
    out[order] = buf
    return out


def _attr(path: Path, name: str, parse, value):
    """An attribute parsed by ``parse`` (int, json.loads); a DataError when it cannot be."""
    try:
        return parse(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"unreadable attribute ({one_line(exc)})", path, name) from None


def _read(h: H5Dataset, key: str) -> np.ndarray:
    try:
        return h._f[key][:]
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise DataError(f"cannot read array ({one_line(exc)})", h.path, key) from None


def open_h5(path) -> H5Dataset:
    """Open a histexpr HDF5 dataset lazily."""
    return H5Dataset(path)


def read_h5(path, cells: Sequence[str] | None = None) -> HistoneDataset:
    """Read a histexpr HDF5 dataset (or some of its cell types) into memory."""
    with H5Dataset(path) as h:
        return h.load(cells)


def is_h5(path) -> bool:
    """True when ``path`` is an HDF5 file (by its signature)."""
    try:
        with open(os.fspath(path), "rb") as fh:
            return fh.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False
