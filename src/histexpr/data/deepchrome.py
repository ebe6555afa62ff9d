"""DeepChrome CSV folders (Singh et al., Bioinformatics 32:i639, 2016).

Layout: one folder per cell type (named by its EID) holding ``train.csv``,
``valid.csv`` and ``test.csv`` (any subset of them), or the public archive's
``<EID>/classification/{train,valid,test}.csv``; 100 rows per gene, an optional
header row::

    GeneID,BinID,H3K27me3,H3K36me3,H3K4me1,H3K4me3,H3K9me3,label

``GeneID`` is the ENSG number zero-padded to 6 digits (``000003`` is
``ENSG00000000003``) or the ENSG id itself, ``BinID`` runs 1..100, ``label`` is 1 when the gene's
expression is above the cell type's median RPKM.

Targets
-------
``target="label"`` keeps the binary label (``y`` in {0, 1});
``target="rpkm"`` joins the packaged Roadmap RPKM matrix and uses
``log2(RPKM + 1)``; ``target="none"`` reads inputs only. Genes absent from the
RPKM matrix raise a :class:`DataError` (``missing="error"``) or are dropped with
a warning (``missing="drop"``).

Splits
------
Every example keeps the file it came from in ``HistoneDataset.split``
(``"train"``, ``"valid"``, ``"test"``), which the HDF5 format stores, so that
``histexpr train --train-split train --valid-split valid`` and
``histexpr evaluate --split test`` follow the published protocol.

Duplicates
----------
DeepChrome's gene list repeats 7 genes on adjacent rows. By default
(``duplicates="first"``) a repeated gene keeps its first occurrence with a
warning; ``duplicates="error"`` rejects it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from histexpr._runtime import notice
from histexpr.atomic import atomic_dir
from histexpr.data.dataset import MARKS, N_BINS, TARGET_LOG2_RPKM, HistoneDataset, log2_rpkm
from histexpr.data.validate import check_counts, check_keys, check_marks
from histexpr.errors import DataError

SPLITS: tuple[str, ...] = ("train", "valid", "test")
TARGET_LABEL = "label(RPKM > cell median)"
_N_COLS = 3 + len(MARKS)
_TARGETS = ("label", "rpkm", "none")


class DeepChromeData(NamedTuple):
    """A DeepChrome read with the split of every example.

    Attributes
    ----------
    data : HistoneDataset
    split : np.ndarray, shape (n_examples,), str
        ``"train"``, ``"valid"`` or ``"test"``: the file each example came from.
    """

    data: HistoneDataset
    split: np.ndarray


def deepchrome_to_ensg(ids: Sequence[str], path=None) -> np.ndarray:
    """``"000003"`` or ``"ENSG00000000003"`` (optionally versioned) -> ``"ENSG00000000003"``."""
    s = pd.Series(np.asarray(ids).astype(str), dtype=object).str.strip()
    s = s.str.replace(r"^(ENSG\d{1,11})\.\d+$", r"\1", regex=True)
    ok = s.str.fullmatch(r"(?:ENSG)?\d{1,11}")
    if not ok.all():
        raise DataError(
            f"GeneID {s[~ok].iloc[0]!r} is neither a number nor an ENSG id", path, "GeneID"
        )
    return ("ENSG" + s.str.removeprefix("ENSG").str.zfill(11)).to_numpy().astype(str)


def ensg_to_deepchrome(genes: Sequence[str]) -> np.ndarray:
    """``"ENSG00000000003"`` (or ``"3"``) -> ``"000003"`` as in the real files."""
    from histexpr.data.npz import gene_to_int

    return np.array([f"{i:06d}" for i in gene_to_int(genes)], dtype=str)


#: Subfolder of a cell-type folder in the public archive: ``<cell>/classification/*.csv``.
ARCHIVE_SUBFOLDER = "classification"


def has_split_csv(folder: Path) -> bool:
    """True when ``folder`` holds at least one of ``train.csv``, ``valid.csv``, ``test.csv``."""
    return any((folder / f"{s}.csv").is_file() for s in SPLITS)


def _csv_folder(d: Path) -> Path | None:
    """The folder holding a cell type's CSVs: ``d`` or ``d/classification``."""
    if has_split_csv(d):
        return d
    sub = d / ARCHIVE_SUBFOLDER
    return sub if sub.is_dir() and has_split_csv(sub) else None


def is_deepchrome_folder(root) -> bool:
    """True for a cell-type folder or a folder of cell-type folders (either layout)."""
    root = Path(root)
    if not root.is_dir():
        return False
    return _csv_folder(root) is not None or any(
        d.is_dir() and _csv_folder(d) is not None for d in root.iterdir()
    )


def _cell_dirs(root: Path, cell: str | None) -> dict[str, Path]:
    if not root.is_dir():
        raise DataError("not a folder of DeepChrome CSVs", root)
    own = _csv_folder(root)
    if own is not None:
        # <cell>/classification given directly: the cell id is the parent folder's name
        name = root.resolve().parent.name if root.name == ARCHIVE_SUBFOLDER else root.name
        return {cell or name: own}
    if cell is not None:
        raise DataError("cell= applies to a single cell-type folder", root, cell)
    dirs = {}
    for d in sorted(root.iterdir()):
        folder = _csv_folder(d) if d.is_dir() else None
        if folder is not None:
            dirs[d.name] = folder
    if not dirs:
        raise DataError("no train.csv/valid.csv/test.csv here or in any subfolder", root)
    return dirs


def deepchrome_cells(root, cell: str | None = None) -> list[str]:
    """Cell types of a DeepChrome folder (``cell`` names a single cell folder)."""
    return list(_cell_dirs(Path(root), cell))


def read_split_csv(path, n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse one DeepChrome CSV.

    Returns
    -------
    X : np.ndarray, shape (n_genes, 5, n_bins), float32
    label : np.ndarray, shape (n_genes,), int8
    gene : np.ndarray, shape (n_genes,), str
        ENSG ids.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path)
    if path.stat().st_size == 0:
        return (
            np.zeros((0, len(MARKS), n_bins), np.float32),
            np.zeros(0, np.int8),
            np.array([], str),
        )
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline().split(",")
        # a header row (e.g. "GeneID,BinID,H3K27me3,...") has a non-numeric BinID
        header = len(first) > 1 and not first[1].strip().lstrip("+-").replace(".", "").isdigit()
        named = [f.strip() for f in first[2 : 2 + len(MARKS)]]
        if header and [m.lower() for m in named] != [m.lower() for m in MARKS]:
            # a header that names other marks (or another order) means other columns
            raise DataError(
                f"header names marks {','.join(named)}; DeepChrome files have "
                f"{','.join(MARKS)} in that order",
                path,
                "header",
            )
        df = pd.read_csv(path, header=None, skiprows=1 if header else 0, dtype={0: str}, engine="c")
    except pd.errors.EmptyDataError:
        raise DataError("only a header row, no data", path) from None
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"malformed CSV ({str(exc).splitlines()[0]})", path) from None
    if df.shape[1] != _N_COLS:
        raise DataError(
            f"expected {_N_COLS} columns (GeneID,BinID,{','.join(MARKS)},label), found {df.shape[1]}",
            path,
        )
    cols = ["GeneID", "BinID", *MARKS, "label"]
    df.columns = cols
    for c in cols[1:]:
        if df[c].dtype.kind not in "fiu":
            raise DataError("non-numeric value", path, c)
        if df[c].isna().any():
            raise DataError(
                f"empty value on line {int(df[c].isna().to_numpy().argmax()) + 1}", path, c
            )
    if df["GeneID"].isna().any():
        raise DataError(
            f"empty value on line {int(df['GeneID'].isna().argmax()) + 1}", path, "GeneID"
        )
    if len(df) % n_bins:
        raise DataError(f"{len(df)} rows is not a multiple of {n_bins} bins per gene", path)
    n = len(df) // n_bins
    gid = df["GeneID"].to_numpy().astype(str).reshape(n, n_bins)
    bad = (gid != gid[:, :1]).any(axis=1)
    if bad.any():
        g = int(np.argmax(bad))
        raise DataError(
            f"GeneID changes inside the {n_bins} rows of gene {gid[g, 0]} "
            f"(lines {g * n_bins + 1}-{(g + 1) * n_bins})",
            path,
            "GeneID",
        )
    genes = gid[:, 0]
    bins = df["BinID"].to_numpy().reshape(n, n_bins)
    bad = (bins != np.arange(1, n_bins + 1)).any(axis=1)
    if bad.any():
        g = int(np.argmax(bad))
        raise DataError(f"BinID of gene {genes[g]} does not run 1..{n_bins}", path, "BinID")
    lab = df["label"].to_numpy().reshape(n, n_bins)
    bad = (lab != lab[:, :1]).any(axis=1)
    if bad.any():
        raise DataError(
            f"label varies across the bins of gene {genes[int(np.argmax(bad))]}", path, "label"
        )
    label = lab[:, 0]
    if not np.isin(label, (0, 1)).all():
        g = int(np.argmax(~np.isin(label, (0, 1))))
        raise DataError(
            f"label {label[g].item()!r} of gene {genes[g]} is not 0 or 1", path, "label"
        )
    X = df[list(MARKS)].to_numpy(dtype=np.float64).reshape(n, n_bins, len(MARKS))
    X = X.transpose(0, 2, 1)
    # checked in float64: a count beyond float32's range is an error, not an inf
    check_counts(X, path, None, genes=genes, marks=MARKS)
    X = np.ascontiguousarray(X, dtype=np.float32)
    return X, label.astype(np.int8), deepchrome_to_ensg(genes, path)


def _read_cell(
    cell: str,
    folder: Path,
    splits: Sequence[str],
    target: str,
    missing: str,
    duplicates: str,
) -> DeepChromeData:
    Xs, labels, genes, split = [], [], [], []
    present = [s for s in splits if (folder / f"{s}.csv").is_file()]
    if not present:
        raise DataError(f"none of {', '.join(s + '.csv' for s in splits)} here", folder, cell)
    for s in present:  # any subset of the three files may be present
        f = folder / f"{s}.csv"
        X, lab, g = read_split_csv(f)
        Xs.append(X)
        labels.append(lab)
        genes.append(g)
        split.append(np.full(len(g), s))
    X = np.concatenate(Xs)
    label = np.concatenate(labels).astype(np.float32)
    gene = np.concatenate(genes)
    split_arr = np.concatenate(split).astype(str)
    keep = ~pd.Series(gene).duplicated().to_numpy()
    if not keep.all():
        first = gene[int(np.argmax(~keep))]
        if duplicates == "error":
            raise DataError(f"gene {first} occurs more than once", folder, cell)
        notice(
            f"{folder} [{cell}]: {int((~keep).sum())} repeated gene(s) (first {first}); "
            "keeping the first occurrence",
            stacklevel=3,
        )
    y: np.ndarray | None = label
    tname = TARGET_LABEL
    if target == "none":
        y = None
    elif target == "rpkm":
        from histexpr.data.reference import load_rpkm

        try:
            rpkm = load_rpkm([cell])[cell]
        except DataError:
            raise DataError("no packaged RPKM for this cell type", folder, cell) from None
        # get_indexer hashes; np.isin on the object index would be quadratic.
        pos = rpkm.index.get_indexer(gene)
        found = pos >= 0
        if not found.all():
            lost = gene[~found]
            msg = f"{len(lost)} gene(s) not in the Roadmap RPKM matrix (first {lost[0]})"
            if missing == "error":
                raise DataError(msg + "; use missing='drop' to skip them", folder, cell)
            notice(f"{folder} [{cell}]: {msg}; dropped", stacklevel=3)
            keep &= found
        y = np.zeros(len(gene), np.float32)
        y[found] = log2_rpkm(rpkm.to_numpy()[pos[found]])
        tname = TARGET_LOG2_RPKM
    idx = np.flatnonzero(keep)
    ds = HistoneDataset(
        X=X[idx] if len(idx) < len(X) else X,
        y=None if y is None else y[idx],
        cell=np.full(len(idx), cell),
        gene=gene[idx],
        marks=MARKS,
        target=tname,
        meta={"source_format": "deepchrome"},
        split=split_arr[idx],
    )
    return DeepChromeData(ds, split_arr[idx])


def iter_deepchrome(
    root,
    cells: Sequence[str] | None = None,
    splits: Sequence[str] = SPLITS,
    target: str = "label",
    cell: str | None = None,
    missing: str = "error",
    duplicates: str = "first",
) -> Iterator[DeepChromeData]:
    """Yield one validated :class:`DeepChromeData` per cell type.

    Parameters
    ----------
    root : str or PathLike
        A folder of cell-type folders (cell = folder name), or one cell-type folder.
    cells : sequence of str, optional
        Cell types to read (default: all folders, sorted).
    splits : sequence of {"train", "valid", "test"}
        Files to read per cell type, concatenated in this order.
    target : {"label", "rpkm", "none", "auto", "yes", "no"}
        See the module docstring; ``"auto"``/``"yes"`` mean ``"label"``, ``"no"`` ``"none"``.
    cell : str, optional
        Cell-type id of a single cell folder (default: the folder name).
    missing : {"error", "drop"}
        Genes without RPKM when ``target="rpkm"``.
    duplicates : {"first", "error"}
        Repeated genes within a cell type.
    """
    root = Path(root)
    # The generic choices of every reader: auto/yes = the label, no = inputs only.
    target = {"auto": "label", "yes": "label", "no": "none"}.get(target, target)
    if target not in _TARGETS:
        raise DataError(f"target must be one of {_TARGETS}, got {target!r}", key="target")
    if missing not in ("error", "drop"):
        raise DataError(f"missing must be 'error' or 'drop', got {missing!r}", key="missing")
    if duplicates not in ("first", "error"):
        raise DataError(f"duplicates must be 'first' or 'error', got {duplicates!r}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise DataError(f"splits must be among {SPLITS}, got {list(splits)}", root, "splits")
    dirs = _cell_dirs(root, cell)
    for c in check_keys(list(dirs), cells, root):
        yield _read_cell(c, dirs[c], list(splits), target, missing, duplicates)


def read_deepchrome_splits(root, **kwargs) -> DeepChromeData:
    """Read DeepChrome CSVs with the split of every example (args of :func:`iter_deepchrome`)."""
    parts = list(iter_deepchrome(root, **kwargs))
    return DeepChromeData(
        HistoneDataset.concat([p.data for p in parts]),
        np.concatenate([p.split for p in parts]),
    )


def read_deepchrome(
    root,
    cells: Sequence[str] | None = None,
    splits: Sequence[str] = SPLITS,
    target: str = "label",
    cell: str | None = None,
    missing: str = "error",
    duplicates: str = "first",
) -> HistoneDataset:
    """Read DeepChrome CSVs into one :class:`HistoneDataset` (see :func:`iter_deepchrome`).

    Use :func:`read_deepchrome_splits` to also get the split of each example,
    or ``splits=("test",)`` to read one split only.
    """
    return read_deepchrome_splits(
        root,
        cells=cells,
        splits=splits,
        target=target,
        cell=cell,
        missing=missing,
        duplicates=duplicates,
    ).data


def _labels(ds: HistoneDataset, idx: np.ndarray) -> np.ndarray:
    y = ds.y[idx]
    if ds.target == TARGET_LABEL:
        return y.astype(np.int64)
    # Continuous target: DeepChrome's rule, above the cell type's median.
    return (y > np.median(y)).astype(np.int64)


def _format_counts(X: np.ndarray) -> np.ndarray:
    """Integers when every count is integral (like the real files), else exact floats."""
    return X.astype(np.int64) if np.all(X == np.round(X)) else X.astype(np.float64)


def write_deepchrome(
    ds: HistoneDataset, root, split_of_gene: Mapping[str, str] | None = None
) -> Path:
    """Write a dataset as DeepChrome CSV folders ``root/<cell>/{train,valid,test}.csv``.

    Parameters
    ----------
    ds : HistoneDataset
        Needs a target: a binary label is written as is, a continuous target as
        1 when above the cell type's median (over the genes written).
    root : str or PathLike
        Parent folder; each cell folder is written atomically.
    split_of_gene : mapping gene id -> {"train", "valid", "test"}, optional
        Default: every gene in ``train.csv`` (the other files are empty).

    Returns
    -------
    Path
        ``root``.
    """
    root = Path(root)
    check_marks(ds.marks, root)
    if ds.y is None:
        raise DataError("the DeepChrome format needs a target (label column)", root, "label")
    if ds.n_bins != N_BINS:
        raise DataError(f"the DeepChrome format has {N_BINS} bins, data have {ds.n_bins}", root)
    if split_of_gene is None:
        split = np.full(len(ds), "train")
    else:
        split = np.array([split_of_gene.get(g, "") for g in ds.gene], dtype=object).astype(str)
        bad = ~np.isin(split, SPLITS)
        if bad.any():
            g = ds.gene[int(np.argmax(bad))]
            raise DataError(f"gene {g} has no split (or not one of {SPLITS})", root, "split")
    for c in ds.cells:
        rows = np.flatnonzero(ds.cell == c)
        labels = _labels(ds, rows)
        ids = ensg_to_deepchrome(ds.gene[rows])
        with atomic_dir(root / c) as tmp:
            for s in SPLITS:
                sel = np.flatnonzero(split[rows] == s)
                n = len(sel)
                X = ds.X[rows[sel]].transpose(0, 2, 1).reshape(n * N_BINS, len(MARKS))
                df = pd.DataFrame(_format_counts(X), columns=list(MARKS))
                df.insert(0, "BinID", np.tile(np.arange(1, N_BINS + 1), n))
                df.insert(0, "GeneID", np.repeat(ids[sel], N_BINS))
                df["label"] = np.repeat(labels[sel], N_BINS)
                df.to_csv(tmp / f"{s}.csv", header=False, index=False)
    return root
