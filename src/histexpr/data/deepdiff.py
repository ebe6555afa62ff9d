"""DeepDiffChrome folders (Sekhon, Singh and Qi, Bioinformatics 34:i891, 2018).

Layout: one folder holding, per cell type ``NAME``,

- ``NAME.train.csv``, ``NAME.valid.csv``, ``NAME.test.csv`` (any subset): no header,
  ``n_bins`` consecutive rows per gene (200 by default: TSS +/- 10 kb in 100-bp bins),
  each ``GENEID_..._BIN,c1,c2,c3,c4,c5`` with the read counts of the marks in
  DeepDiff's order :data:`DEEPDIFF_MARKS` (H3K4me1, H3K4me3, H3K9me3, H3K27me3,
  H3K36me3). The gene id is the part of the first field before the first ``_``;
- ``NAME.expr.csv``: ``GENEID,expression`` rows (RNA-seq read counts in the public data).

:func:`read_deepdiff` returns one :class:`~histexpr.data.dataset.HistoneDataset` of
all the cell types asked for, marks reordered to histexpr's canonical order, the
file each example came from in ``split`` and ``y = log2(expression + 1)`` (target
:data:`TARGET_LOG2_COUNT`), so the log fold change between two cell types is the
difference of their ``y``. Cell names map to cell ids with ``names={"NAME": "E003"}``.
:func:`write_deepdiff` writes the same layout (tests, exchanging data with DeepDiff).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr.atomic import atomic_path
from histexpr.data.dataset import MARKS, HistoneDataset
from histexpr.data.validate import check_counts
from histexpr.errors import DataError

__all__ = [
    "DEEPDIFF_MARKS",
    "DEEPDIFF_N_BINS",
    "TARGET_LOG2_COUNT",
    "deepdiff_blocks",
    "deepdiff_cells",
    "is_deepdiff",
    "parse_names",
    "read_deepdiff",
    "write_deepdiff",
]

#: Column order of the marks in DeepDiff's CSV files.
DEEPDIFF_MARKS: tuple[str, ...] = ("H3K4me1", "H3K4me3", "H3K9me3", "H3K27me3", "H3K36me3")
#: Bins per gene in the public DeepDiff data (TSS +/- 10 kb, 100 bp each).
DEEPDIFF_N_BINS = 200
#: The target transform of DeepDiff's expression files (read counts).
TARGET_LOG2_COUNT = "log2(count+1)"
SPLITS = ("train", "valid", "test")


def deepdiff_cells(folder) -> list[str]:
    """Cell-type names of a DeepDiff folder (those with an ``.expr.csv`` file), sorted."""
    folder = Path(folder)
    return sorted(p.name[: -len(".expr.csv")] for p in folder.glob("*.expr.csv"))


def is_deepdiff(path) -> bool:
    """Whether ``path`` is a folder in DeepDiff's layout."""
    path = Path(path)
    if not path.is_dir():
        return False
    return any((path / f"{c}.{s}.csv").is_file() for c in deepdiff_cells(path) for s in SPLITS)


def _read_expression(path: Path) -> pd.Series:
    try:
        df = pd.read_csv(path, header=None, names=["gene", "expression"], dtype={"gene": str})
    except pd.errors.EmptyDataError:
        raise DataError("empty file", path) from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"unreadable expression table ({exc})", path) from None
    values = pd.to_numeric(df["expression"], errors="coerce")
    bad = values.isna() | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise DataError(f"row {row}: expression must be a non-negative number", path, "expression")
    genes = df["gene"].str.strip()
    if genes.duplicated().any():
        raise DataError(f"gene {genes[genes.duplicated()].iloc[0]} listed twice", path, "gene")
    return pd.Series(values.to_numpy(np.float64), index=genes.to_numpy())


def _read_split(path: Path, n_bins: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Gene ids (n,) and counts (n, 5, n_bins) in DeepDiff's mark order.

    ``n_bins=None``: the number of consecutive rows of the first gene.
    """
    try:
        df = pd.read_csv(path, header=None, dtype={0: str})
    except pd.errors.EmptyDataError:  # a ValueError: caught first
        raise DataError("empty file", path) from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"unreadable DeepDiff table ({exc})", path) from None
    if df.shape[1] != 1 + len(DEEPDIFF_MARKS):
        raise DataError(
            f"{df.shape[1]} columns; DeepDiff rows are GENEID_BIN plus {len(DEEPDIFF_MARKS)} marks",
            path,
        )
    ids = df.iloc[:, 0].astype(str).str.split("_").str[0].to_numpy()
    if n_bins is None:
        change = np.flatnonzero(ids != ids[0])
        n_bins = int(change[0]) if change.size else len(ids)
    if len(df) % n_bins:
        raise DataError(f"{len(df)} rows is not a multiple of {n_bins} bins per gene", path)
    counts = df.iloc[:, 1:].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    if np.isnan(counts).any():
        row = int(np.flatnonzero(np.isnan(counts).any(axis=1))[0]) + 1
        raise DataError(f"row {row}: counts must be numbers", path)
    n = len(df) // n_bins
    genes = ids.reshape(n, n_bins)
    if (genes != genes[:, :1]).any():
        g = int(np.flatnonzero((genes != genes[:, :1]).any(axis=1))[0])
        raise DataError(f"gene {g + 1} does not have {n_bins} consecutive rows", path)
    X = counts.reshape(n, n_bins, len(DEEPDIFF_MARKS)).transpose(0, 2, 1)
    return genes[:, 0], X


def read_deepdiff(
    folder,
    cells: Sequence[str] | None = None,
    names: Mapping[str, str] | None = None,
    n_bins: int | None = None,
    bin_size: int = 100,
) -> HistoneDataset:
    """Read cell types of a DeepDiff folder into one dataset.

    Parameters
    ----------
    folder : path
    cells : sequence of str, optional
        DeepDiff cell names to read (default: every name with an ``.expr.csv``).
    names : mapping of str to str, optional
        DeepDiff name -> histexpr cell id (default: the name itself).
    n_bins : int, optional
        Rows per gene (200 in the public data; default: the run of the first gene id).
    bin_size : int
        Bin width in bp, recorded in ``meta["bin_size"]``.

    Returns
    -------
    HistoneDataset
        X (n, 5, n_bins) in :data:`~histexpr.data.dataset.MARKS` order, ``y`` =
        log2(expression + 1), ``split`` the file of each example.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("not a DeepDiff folder (not a directory)", folder)
    available = deepdiff_cells(folder)
    cells = list(available if cells is None else cells)
    missing = [c for c in cells if c not in available]
    if missing:
        raise DataError(
            f"no {missing[0]}.expr.csv (cell types here: {', '.join(available) or 'none'})",
            folder,
        )
    names = dict(names or {})
    order = [DEEPDIFF_MARKS.index(m) for m in MARKS]
    parts = []
    for c in cells:
        expr = _read_expression(folder / f"{c}.expr.csv")
        for split in SPLITS:
            path = folder / f"{c}.{split}.csv"
            if not path.is_file():
                continue
            genes, X = _read_split(path, n_bins)
            if parts and X.shape[2] != parts[0].n_bins:
                raise DataError(
                    f"{X.shape[2]} bins per gene, {parts[0].n_bins} in the files before", path
                )
            check_counts(X, path, n_bins=None)
            absent = [g for g in genes if g not in expr.index]
            if absent:
                raise DataError(
                    f"gene {absent[0]} has no expression in {c}.expr.csv ({len(absent)} genes)",
                    path,
                )
            y = np.log2(expr.loc[genes].to_numpy() + 1.0)
            parts.append(
                HistoneDataset(
                    X=X[:, order].astype(np.float32),
                    y=y.astype(np.float32),
                    cell=np.full(len(genes), names.get(c, c)),
                    gene=genes,
                    marks=MARKS,
                    target=TARGET_LOG2_COUNT,
                    meta={"bin_size": int(bin_size), "source_format": "deepdiff"},
                    split=np.full(len(genes), split),
                )
            )
    if not parts:
        raise DataError(f"no {{train,valid,test}}.csv files for {', '.join(cells)}", folder)
    out = HistoneDataset.concat(parts)
    out.meta = {"bin_size": int(bin_size), "source_format": "deepdiff"}
    return out


def parse_names(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"NAME=CELL,..."`` (the CLI's ``--names``) -> ``{"NAME": "CELL"}``; one line when bad."""
    if text is None or isinstance(text, Mapping):
        return dict(text or {})
    out: dict[str, str] = {}
    for item in (t.strip() for t in str(text).split(",")):
        if not item:
            continue
        name, sep, cell = (p.strip() for p in item.partition("="))
        if not sep or not name or not cell:
            raise DataError(f"--names item {item!r} is not of the form NAME=CELL", key="names")
        if name in out:
            raise DataError(f"--names gives {name} twice", key="names")
        out[name] = cell
    if len(set(out.values())) < len(out):
        raise DataError("--names maps two DeepDiff names to one cell id", key="names")
    return out


def deepdiff_blocks(folder, cells=None, target=None, names=None, **opts):
    """Cell ids to read and an iterator of one dataset per cell type (for ``load_dataset``).

    ``cells`` are histexpr cell ids (after ``names``); ``target`` auto/yes keeps the
    expression, no/none drops it; ``opts`` go to :func:`read_deepdiff` (n_bins, bin_size).
    """
    from histexpr.data.validate import check_keys

    folder = Path(folder)
    names = parse_names(names)
    if target not in (None, "auto", "yes", "no", "none"):
        raise DataError(f"target {target!r} does not apply to a DeepDiff folder", folder, "target")
    by_id = {names.get(c, c): c for c in deepdiff_cells(folder)}
    unknown = sorted(set(names) - set(by_id.values()))
    if unknown:
        raise DataError(f"--names: no {unknown[0]}.expr.csv in the folder", folder, "names")
    keys = check_keys(list(by_id), cells, folder)

    def blocks():
        for cell_id in keys:
            part = read_deepdiff(folder, [by_id[cell_id]], names, **opts)
            yield part.without_target() if target in ("no", "none") else part

    return keys, blocks()


def write_deepdiff(data: HistoneDataset, folder, names: Mapping[str, str] | None = None) -> Path:
    """Write ``data`` in DeepDiff's layout: per cell type its split files and ``.expr.csv``.

    ``y`` is taken as log2(expression + 1) and written back as expression; examples
    without a ``split`` go to ``train``. ``names`` maps cell ids to file names. Integer
    counts are written as integers, others with 6 significant digits. Gene ids must
    not contain ``_`` (DeepDiff's separator of gene id and bin).
    """
    if data.y is None:
        raise DataError("DeepDiff folders carry expression: the data has no targets")
    if np.nanmin(data.y) < 0:
        raise DataError(
            f"expression value {float(np.nanmin(data.y)):.3g} < 0 is no log2(expression + 1)",
            key="y",
        )
    bad = [g for g in np.unique(data.gene).tolist() if "_" in str(g) or "," in str(g)]
    if bad:
        raise DataError(f"gene id {bad[0]!r} contains '_' or ',' (DeepDiff's separators)")
    missing = sorted(set(DEEPDIFF_MARKS) - set(data.marks))
    if missing:
        raise DataError(f"DeepDiff needs mark(s) {', '.join(missing)}", key="marks")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cols = [data.marks.index(m) for m in DEEPDIFF_MARKS]
    split = data.split if data.split is not None else np.full(len(data), "train")
    names = dict(names or {})
    for c in data.cells:
        in_cell = data.cell == c
        name = names.get(c, c)
        expr = pd.DataFrame({"gene": data.gene[in_cell], "e": np.exp2(data.y[in_cell]) - 1.0})
        expr = expr.drop_duplicates("gene")
        with atomic_path(folder / f"{name}.expr.csv") as tmp:
            expr.to_csv(tmp, header=False, index=False, float_format="%.6g")
        for s in SPLITS:
            rows = np.flatnonzero(in_cell & (split == s))
            if not rows.size:
                continue
            n_bins = data.n_bins
            X = data.X[rows][:, cols].transpose(0, 2, 1).reshape(-1, len(cols))
            first = [f"{g}_{b + 1}" for g in data.gene[rows] for b in range(n_bins)]
            whole = bool(np.all(X == np.rint(X)))
            table = pd.DataFrame(X.astype(np.int64) if whole else X, columns=list(DEEPDIFF_MARKS))
            table.insert(0, "id", first)
            with atomic_path(folder / f"{name}.{s}.csv") as tmp:
                table.to_csv(tmp, header=False, index=False, float_format="%.6g")
    return folder
