"""The course npz format (``train.npz`` / ``eval.npz``).

One array per cell-type key (``"E003"``, ...), shape ``(n_genes, 100, 7)``,
float:

- column 0: the gene id, integer-valued, repeated on every bin;
- columns 1-5: read counts of H3K27me3, H3K36me3, H3K4me1, H3K4me3, H3K9me3 per bin;
- column 6: the gene's expression repeated on every bin (absent or meaningless
  in ``eval.npz``). It is passed through as the target
  (``target="as-given"``), never re-transformed.

Whether column 6 is a target (``target="auto"``)
------------------------------------------------
Decided **per key** from the data, never from the file name: a key has a target
when its arrays have 7 columns and column 6 is neither all zero nor all NaN.
All keys must agree (one dataset holds targets for every example or for none):
keys that disagree are an error naming one key of each kind, as are keys with 6
and 7 columns in one file. ``target="yes"`` requires column 6 everywhere;
``target="no"`` ignores it (NaN there is then fine, e.g. for ``predict``). The
decision of every key is recorded in ``meta["target_by_cell"]`` and reported by
:func:`npz_target_decisions`.

Keys that are not cell-type arrays (not 3-d and not named like a Roadmap
epigenome, ``E`` + digits: e.g. a ``genes`` list) are skipped with a warning.

Files are read with ``allow_pickle=False`` and written as a zip of ``.npy``
members streamed one key at a time, so a full 50-cell file never needs more
than one key in memory beyond the output.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr._runtime import notice
from histexpr.atomic import AtomicFileWriter
from histexpr.data.dataset import MARKS, N_BINS, TARGET_PASSTHROUGH, HistoneDataset
from histexpr.data.validate import (
    check_constant_over_bins,
    check_counts,
    check_keys,
    check_marks,
    check_target,
    check_unique_genes,
    one_line,
)
from histexpr.errors import DataError

#: Columns per bin: gene id, the five marks, expression.
N_COLS = 7
_TARGET_MODES = ("auto", "yes", "no")
_GENE_RE = re.compile(r"^(?:ENSG)?0*(\d+)$")
_CELL_KEY = re.compile(r"^E\d+$")


def gene_to_int(genes: Sequence[str]) -> np.ndarray:
    """Integer gene ids of the course format.

    ``"ENSG00000000003"``, ``"000003"`` and ``"3"`` all map to 3.

    Parameters
    ----------
    genes : sequence of str, shape (n,)

    Returns
    -------
    np.ndarray, shape (n,), int64

    Raises
    ------
    DataError
        For an id of any other form (e.g. a gene symbol or a version suffix).
    """
    s = pd.Series(np.asarray(genes).astype(str), dtype=object)
    digits = s.str.extract(_GENE_RE, expand=False)
    bad = digits.isna()
    if bad.any():
        raise DataError(
            f"gene id {s[bad].iloc[0]!r} is not an integer or ENSG id "
            "(the course npz format needs integer gene ids)",
            key="gene",
        )
    return digits.astype(np.int64).to_numpy()


def _read_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every member, from the ``.npy`` headers only."""
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if not name.endswith(".npy"):
                    continue
                if name[:-4] in out:
                    # np.load would silently keep one of the two members.
                    raise DataError("key occurs twice in the archive", path, name[:-4])
                with zf.open(name) as fh:
                    major, _ = np.lib.format.read_magic(fh)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if major == 1
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(fh)
                out[name[:-4]] = (tuple(shape), np.dtype(dtype))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise DataError(f"not a readable npz archive ({one_line(exc)})", path) from None
    return out


class _NpzSource:
    """An open npz file plus the per-file target decision."""

    def __init__(self, path, target: str):
        self.path = Path(path)
        if target not in _TARGET_MODES:
            raise DataError(f"target must be one of {_TARGET_MODES}, got {target!r}", key="target")
        if not self.path.is_file():
            raise DataError("file not found", self.path)
        self.headers = _read_headers(self.path)
        if not self.headers:
            raise DataError("npz archive holds no arrays", self.path)
        for key, (shape, dtype) in list(self.headers.items()):
            if len(shape) != 3 and not _CELL_KEY.match(key):
                notice(
                    f"{self.path} [{key}]: not a cell-type array (shape {shape}); skipped",
                    stacklevel=3,
                )
                del self.headers[key]
                continue
            if dtype.kind == "O" or dtype.hasobject:
                raise DataError(
                    "object (pickled) array; only numeric arrays are accepted", self.path, key
                )
            if len(shape) != 3 or shape[2] not in (N_COLS - 1, N_COLS):
                raise DataError(
                    f"expected shape (n_genes, n_bins, {N_COLS}), found {shape}", self.path, key
                )
        if not self.headers:
            raise DataError("npz archive holds no cell-type arrays", self.path)
        unnamed = [k for k in self.headers if re.fullmatch(r"arr_\d+", k)]
        if unnamed:
            # np.savez(path, array) names it arr_0: that is no cell-type id
            raise DataError(
                "numpy's name for an unnamed array, not a cell-type id; save each cell "
                "type under its id: np.savez(path, E003=array, ...)",
                self.path,
                unnamed[0],
            )
        by_cols: dict[int, str] = {}
        for key, (shape, _) in self.headers.items():
            by_cols.setdefault(shape[2], key)
        if len(by_cols) > 1:
            raise DataError(
                f"keys disagree: {by_cols[N_COLS]} has {N_COLS} columns (with expression), "
                f"{by_cols[N_COLS - 1]} has {N_COLS - 1}",
                self.path,
            )
        self.mode = target
        #: Per key: "yes", or "no (<reason>)" once the key is read.
        self.decisions: dict[str, str] = {}
        try:
            self._npz = np.load(self.path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"cannot read npz ({one_line(exc)})", self.path) from None

    @property
    def keys(self) -> list[str]:
        return list(self.headers)

    def read_key(self, key: str, n_bins: int | None) -> HistoneDataset:
        counts, genes, y = self.load_key(key, n_bins)
        self.check_agree()
        return HistoneDataset(
            X=counts,
            y=y,
            cell=np.full(len(genes), key),
            gene=genes,
            marks=MARKS,
            target=TARGET_PASSTHROUGH,
            meta={"source_format": "npz", "target_by_cell": {key: self.decisions[key]}},
        )

    def load_key(self, key: str, n_bins: int | None):
        """Validated views of one key: counts (n, 5, bins), gene ids (n,), target or None."""
        try:
            arr = self._npz[key]
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            # object array with allow_pickle=False, truncated or corrupt member (bad CRC)
            raise DataError(f"cannot load array ({one_line(exc)})", self.path, key) from None
        if arr.dtype.kind not in "fiu":
            raise DataError(f"expected a numeric array, got dtype {arr.dtype}", self.path, key)
        if n_bins is not None and arr.shape[1] != n_bins:
            raise DataError(f"expected {n_bins} bins, found {arr.shape[1]}", self.path, key)
        gid = arr[:, :, 0]
        if gid.size and (not np.isfinite(gid).all() or (gid != np.round(gid)).any()):
            raise DataError("gene id column 0 is not integer-valued", self.path, key)
        check_constant_over_bins(gid, "gene id", self.path, key)
        genes = gid[:, 0].astype(np.int64).astype(str) if len(arr) else np.array([], dtype=str)
        check_unique_genes(genes, self.path, key)
        counts = arr[:, :, 1 : 1 + len(MARKS)].transpose(0, 2, 1)
        check_counts(counts, self.path, key, n_bins=None, genes=genes, marks=MARKS)
        return counts, genes, self._target(arr, key, genes)

    def _target(self, arr: np.ndarray, key: str, genes: np.ndarray) -> np.ndarray | None:
        has_col = arr.shape[2] == N_COLS
        if self.mode == "yes" and not has_col:
            raise DataError("no expression column 6 (target='yes')", self.path, key)
        if self.mode == "no" or not has_col:
            self.decisions[key] = "no (target='no')" if has_col else "no (6 columns)"
            return None
        col = arr[:, :, N_COLS - 1]
        if self.mode == "auto" and col.size:
            reason = "all zero" if np.all(col == 0) else "all NaN" if np.all(np.isnan(col)) else ""
            if reason:
                self.decisions[key] = f"no ({reason})"
                return None
        self.decisions[key] = "yes"
        check_constant_over_bins(col, "expression", self.path, key, genes)
        y = col[:, 0] if len(arr) else np.zeros(0)
        check_target(y, len(arr), self.path, key, genes)
        return y

    def check_agree(self) -> bool:
        """True when every key read has a target; error when keys read disagree."""
        yes = [k for k, d in self.decisions.items() if d == "yes"]
        no = [k for k, d in self.decisions.items() if d != "yes"]
        if yes and no:
            raise DataError(
                f"keys disagree: {yes[0]} has expression values, {no[0]} has none "
                f"({self.decisions[no[0]][4:-1]}); use --target no to read inputs only, or "
                "keep the keys with expression (convert --cells)",
                self.path,
            )
        return bool(yes)

    def close(self) -> None:
        self._npz.close()


def npz_keys(path) -> list[str]:
    """Cell-type keys of a course npz file, in file order (reads headers only).

    Keys that are not cell-type arrays (see the module docstring) are left out.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped keys are reported when they are read
        src = _NpzSource(path, "no")
    src.close()
    return src.keys


def iter_npz(
    path, cells: Sequence[str] | None = None, target: str = "auto", n_bins: int | None = N_BINS
) -> Iterator[HistoneDataset]:
    """Yield one validated :class:`HistoneDataset` per cell-type key.

    Parameters
    ----------
    path : str or PathLike
    cells : sequence of str, optional
        Keys to read, in this order (default: all, in file order).
    target : {"auto", "yes", "no"}
        Whether column 6 is the target (see the module docstring).
    n_bins : int or None
        Required bins per gene (None: any).

    Yields
    ------
    HistoneDataset
        Examples of one cell type; peak memory is about one key.
    """
    src = _NpzSource(path, target)
    try:
        for key in check_keys(src.keys, cells, src.path):
            yield src.read_key(key, n_bins)
    finally:
        src.close()


def read_npz(
    path, cells: Sequence[str] | None = None, target: str = "auto", n_bins: int | None = N_BINS
) -> HistoneDataset:
    """Read a course npz file into one :class:`HistoneDataset`.

    The output arrays are preallocated from the ``.npy`` headers and filled key
    by key, so the data are copied once (file -> float32 ``X``).

    Parameters
    ----------
    path, cells, target, n_bins
        As for :func:`iter_npz`.

    Returns
    -------
    HistoneDataset
        ``X`` shape (sum of n_genes, 5, n_bins); gene ids are strings of the
        integer ids (``"3"``); ``target="as-given"``.
    """
    src = _NpzSource(path, target)
    try:
        keys = check_keys(src.keys, cells, src.path)
        sizes = [src.headers[k][0][0] for k in keys]
        bins = {src.headers[k][0][1] for k in keys}
        nb = n_bins if n_bins is not None else (bins.pop() if len(bins) == 1 else None)
        if nb is None and keys:
            raise DataError("keys have different bin counts", src.path)
        total = int(sum(sizes))
        X = np.empty((total, len(MARKS), nb or 0), dtype=np.float32)
        y = np.empty(total, dtype=np.float32)
        cell = np.empty(total, dtype=f"<U{max([len(k) for k in keys] or [1])}")
        gene: list[np.ndarray] = []
        lo = 0
        for key, n in zip(keys, sizes, strict=True):
            counts, genes, yk = src.load_key(key, nb)
            X[lo : lo + n] = counts
            if yk is not None:
                y[lo : lo + n] = yk
            cell[lo : lo + n] = key
            gene.append(genes)
            lo += n
        has_y = src.check_agree()
        return HistoneDataset(
            X=X,
            y=y if has_y else None,
            cell=cell,
            gene=np.concatenate(gene) if gene else np.array([], dtype=str),
            marks=MARKS,
            target=TARGET_PASSTHROUGH,
            meta={"source_format": "npz", "target_by_cell": dict(src.decisions)},
        )
    finally:
        src.close()


def npz_target_decisions(path, target: str = "auto") -> dict[str, str]:
    """Whether each key's column 6 is read as the target: ``{key: "yes" | "no (<why>)"}``.

    Reads one key at a time; keys that disagree are reported, not an error.
    """
    src = _NpzSource(path, target)
    try:
        for key in src.keys:
            src.load_key(key, None)
        return dict(src.decisions)
    finally:
        src.close()


class NpzWriter(AtomicFileWriter):
    """Stream cell-type keys into a course npz file, renamed into place on close.

    Parameters
    ----------
    path : str or PathLike
        Destination (``.npz``).
    compress : bool
        Deflate members (smaller, much slower to write and read).
    dtype : numpy dtype
        Element type of the stored arrays.

    Notes
    -----
    Without a target, column 6 is written as zeros, which ``target="auto"``
    reads back as "no target".
    """

    def __init__(self, path, compress: bool = False, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        tmp = self._begin(path, suffix=".npz")
        mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self._zf = zipfile.ZipFile(tmp, "w", compression=mode, allowZip64=True)
        self._zf.comment = b"histexpr"  # marks the file as ours (histexpr.atomic.guard_output)
        self.cells: list[str] = []

    def write_cell(
        self, cell: str, X: np.ndarray, gene_ids: np.ndarray, y: np.ndarray | None = None
    ) -> None:
        """Add one cell type.

        Parameters
        ----------
        cell : str
            Key, e.g. ``"E003"``.
        X : np.ndarray, shape (n_genes, 5, n_bins)
            Counts in the canonical mark order.
        gene_ids : np.ndarray, shape (n_genes,), int
        y : np.ndarray, shape (n_genes,), optional
            Expression written to column 6 (zeros when None).
        """
        cell = str(cell)
        if not cell or "/" in cell:
            raise DataError("invalid key name", self.path, cell or "''")
        if cell in self.cells:
            raise DataError("cell type written twice", self.path, cell)
        check_counts(X, self.path, cell, n_bins=None, marks=MARKS)
        n, _, nb = X.shape
        gene_ids = np.asarray(gene_ids)
        if gene_ids.shape != (n,) or gene_ids.dtype.kind not in "iu":
            raise DataError(
                f"gene_ids must be {n} integers, got {gene_ids.dtype} {gene_ids.shape}",
                self.path,
                cell,
            )
        check_unique_genes(gene_ids, self.path, cell)
        arr = np.zeros((n, nb, N_COLS), dtype=self.dtype)
        arr[:, :, 0] = gene_ids[:, None]
        arr[:, :, 1 : 1 + len(MARKS)] = np.asarray(X).transpose(0, 2, 1)
        if y is not None:
            check_target(np.asarray(y), n, self.path, cell)
            arr[:, :, N_COLS - 1] = np.asarray(y)[:, None]
        with self._zf.open(f"{cell}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, arr, allow_pickle=False)
        self.cells.append(cell)

    def _close_handle(self) -> None:
        self._zf.close()


def write_npz(ds: HistoneDataset, path, compress: bool = False) -> Path:
    """Write a dataset in the course npz format, one key per cell type.

    Gene ids must be integers or ENSG ids (see :func:`gene_to_int`); the target,
    when present, is written as given.
    """
    check_marks(ds.marks, path)
    with NpzWriter(path, compress=compress) as w:
        for c in ds.cells:
            idx = np.flatnonzero(ds.cell == c)
            part = ds.subset(idx)
            try:
                ids = gene_to_int(part.gene)
            except DataError as exc:
                raise DataError(exc.problem, path, c) from None
            w.write_cell(c, part.X, ids, part.y)
    return Path(path)
