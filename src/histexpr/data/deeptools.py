"""deepTools ``computeMatrix reference-point`` matrices as datasets (deepTools 3.5).

A user who ran ``computeMatrix reference-point`` on their bigWigs reads the
``-out`` gz matrix or the ``--outFileNameMatrix`` text matrix (the file layouts, of
deepTools 3.5, are in :mod:`histexpr.data.deeptools_matrix`), or a folder of them,
as a dataset: the bin layout from the header, genes from the region names.

A *sample* (a bigWig) is one mark of one cell type. Its mark comes from
``marks={"label": "MARK"}`` (or ``"CELL:MARK"``) or from its label: the label (or
one of its ``-``/``_``/``.``-separated words) must name a known mark,
case-insensitively (``E003-H3K4me3.pval`` is H3K4me3). Its cell type is ``cell=``,
else a Roadmap EID in the label (``E003``), else the file stem (a folder: its
name). A folder of matrices (one per mark, or per cell type) is merged by region
name; regions absent from some mark are dropped with a warning.

deepTools already writes minus-strand regions reversed (upstream -> downstream in
transcription direction), so rows are read as they are. ``nan`` bins read as 0
(``nan="zero"``, like bases without data in ``featurize``) or are refused
(``nan="error"``). ``expression=`` joins an RPKM table (genes x cell types, TSV/CSV/
Parquet, as ``featurize --expression``): ``y = log2(RPKM + 1)``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr.data.dataset import (
    KNOWN_MARKS,
    TARGET_LOG2_RPKM,
    HistoneDataset,
    canonical_gene_ids,
    order_marks,
)
from histexpr.data.deeptools_matrix import is_deeptools, matrix_files, read_matrix, sniff
from histexpr.data.validate import check_counts, check_keys
from histexpr.errors import DataError

__all__ = [
    "OPTIONS",
    "deeptools_blocks",
    "is_deeptools",
    "parse_marks",
    "read_deeptools",
    "read_matrix",
    "sample_key",
    "sniff",
]

_EID = re.compile(r"^E\d{3}$")
_WORDS = re.compile(r"[\s._\-:/|,;+]+")
#: Reader options only this format understands (refused for the others).
OPTIONS: tuple[str, ...] = ("marks", "regions", "expression", "nan")


def parse_marks(spec) -> dict[str, str]:
    """``"label=MARK,label2=CELL:MARK"`` (or a mapping) -> {label: value}."""
    if spec is None or isinstance(spec, Mapping):
        return dict(spec or {})
    out = {}
    for item in str(spec).split(","):
        label, sep, mark = item.strip().rpartition("=")
        if not sep or not label or not mark:
            raise DataError(f"--marks item {item!r} is not LABEL=MARK", key="marks")
        out[label.strip()] = mark.strip()
    return out


def sample_key(
    label: str, marks: Mapping[str, str], cell: str | None, default_cell: str, path=None
) -> tuple[str, str]:
    """(cell, mark) of a sample label (of the file ``path``); see the module docstring."""
    known = {m.lower(): m for m in KNOWN_MARKS}
    words = [w for w in _WORDS.split(label) if w]
    mapped = marks.get(label)
    if mapped is not None:
        c, colon, mark = mapped.rpartition(":")
        mark = known.get(mark.lower(), mark)
        return (c if colon else (cell or _eid(words, default_cell))), mark
    hits = list(dict.fromkeys(known[w.lower()] for w in [label, *words] if w.lower() in known))
    if len(hits) != 1:
        what = "names no known mark" if not hits else f"names several marks ({', '.join(hits)})"
        raise DataError(
            f"sample label {label!r} {what}; map it with --marks {label}=MARK", path, "marks"
        )
    return cell or _eid(words, default_cell), hits[0]


def _eid(words: Sequence[str], default: str) -> str:
    return next((w for w in words if _EID.match(w)), default)


def _dedupe(names: np.ndarray, path: Path) -> np.ndarray:
    """Row indices of the first occurrence of each gene (a warning names the repeats)."""
    genes = canonical_gene_ids(names)
    keep = ~pd.Series(genes).duplicated().to_numpy()
    if not keep.all():
        warnings.warn(
            f"{path}: {int((~keep).sum())} repeated region name(s) (first "
            f"{genes[int(np.argmax(~keep))]}); keeping the first occurrence",
            stacklevel=4,
        )
    return np.flatnonzero(keep)


def read_deeptools(
    path,
    marks=None,
    cell: str | None = None,
    regions=None,
    expression=None,
    target: str | None = "auto",
    nan: str = "zero",
    missing: str = "drop",
    cells: Sequence[str] | None = None,
) -> HistoneDataset:
    """Read computeMatrix file(s) as one dataset (see the module docstring).

    Parameters
    ----------
    path : path
        A ``-out`` gz matrix, an ``--outFileNameMatrix`` text matrix, or a folder of them.
    marks : str or mapping, optional
        Sample label -> mark (or ``CELL:MARK``): ``"sig1=H3K4me3,sig2=H3K27me3"``.
    cell : str, optional
        Cell type of every sample (default: EID in the label, else the file/folder name).
    regions : path, optional
        ``--outFileSortedRegions`` BED of a text matrix.
    expression : path, optional
        RPKM table (gene ids x cell types) giving ``y = log2(RPKM + 1)``.
    target : {"auto", "yes", "no"}
        ``"yes"``: an error without ``expression``; ``"no"``: ignore it.
    nan : {"zero", "error"}
        What a ``nan`` bin becomes.
    missing : {"drop", "error"}
        Genes without expression (dropped with a warning, or refused).
    cells : sequence of str, optional
        Cell types to keep.

    Returns
    -------
    HistoneDataset
        ``X`` of shape (n_genes x n_cells, n_marks, n_bins), bins upstream -> downstream;
        ``meta["bin_size"]``, ``meta["upstream"]``, ``meta["downstream"]``.
    """
    path = Path(path)
    files = matrix_files(path)
    if not files:
        raise DataError("no deepTools computeMatrix file here", path)
    if nan not in ("zero", "error"):
        raise DataError(f"nan must be 'zero' or 'error', got {nan!r}", path, "nan")
    if missing not in ("drop", "error"):
        raise DataError(f"missing must be 'drop' or 'error', got {missing!r}", path, "missing")
    mapping = parse_marks(marks)
    default_cell = path.name if path.is_dir() else re.sub(r"(\.gz)?$", "", path.name).split(".")[0]
    tracks: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    layouts = set()
    for f in files:
        m = read_matrix(f, regions)
        layouts.add((m.upstream, m.downstream, m.bin_size))
        if len(layouts) > 1:
            raise DataError("bin layout (upstream/downstream/bin size) differs from the others", f)
        if nan == "error" and np.isnan(m.values).any():
            row = int(np.argwhere(np.isnan(m.values))[0][0])
            raise DataError(f"nan value for region {m.names[row]} (nan='zero' reads 0)", f)
        rows = _dedupe(m.names, f)
        for j, label in enumerate(m.labels):
            key = sample_key(label, mapping, cell, default_cell, f)
            if key in tracks:
                raise DataError(f"mark {key[1]} of cell {key[0]} given twice", f, label)
            genes = canonical_gene_ids(m.names[rows])
            values = m.values[rows, j]
            tracks[key] = (genes, np.where(np.isnan(values), 0.0, values))  # inf stays: refused
    up, down, size = layouts.pop()
    names = order_marks([mk for _, mk in tracks])
    found = list(dict.fromkeys(c for c, _ in tracks))
    keys = check_keys(found, cells, path)
    y_table = _expression(expression, target, path)
    parts = [_cell_block(c, names, tracks, y_table, missing, path) for c in keys]
    ds = HistoneDataset.concat(parts)
    ds.meta = {"source_format": "deeptools", "bin_size": size, "upstream": up, "downstream": down}
    return ds


def _expression(expression, target: str | None, path: Path):
    if target in ("no", "none"):
        return None
    if target not in (None, "auto", "yes"):
        raise DataError(f"target {target!r} (auto, yes or no)", path, "target")
    if expression is None:
        if target == "yes":
            raise DataError("no expression values (give --expression RPKM table)", path, "target")
        return None
    from histexpr.data.atlas import read_atlas_table

    return read_atlas_table(expression, values="rpkm")


def _cell_block(cell, marks, tracks, atlas, missing: str, path: Path) -> HistoneDataset:
    absent = [m for m in marks if (cell, m) not in tracks]
    if absent:
        raise DataError(f"cell {cell} has no matrix for mark(s) {', '.join(absent)}", path)
    first = next(m for c, m in tracks if c == cell)  # genes in the first file's order
    genes = tracks[cell, first][0]
    for m in marks:
        genes = genes[np.isin(genes, tracks[cell, m][0])]
    lost = max(len(tracks[cell, m][0]) for m in marks) - len(genes)
    if lost:
        warnings.warn(
            f"{path} [{cell}]: {lost} region(s) not in every mark's matrix; dropped", stacklevel=4
        )
    X = np.stack(
        [tracks[cell, m][1][pd.Index(tracks[cell, m][0]).get_indexer(genes)] for m in marks], 1
    )
    y = None
    if atlas is not None:
        if cell not in atlas.cells:
            raise DataError(f"expression table has no column {cell}", atlas.source, cell)
        col = atlas.values[:, list(atlas.cells).index(cell)]
        pos = pd.Index(atlas.genes).get_indexer(genes)
        ok = pos >= 0
        ok[ok] = np.isfinite(col[pos[ok]])
        if not ok.all():
            msg = f"{int((~ok).sum())} gene(s) without expression (first {genes[~ok][0]})"
            if missing == "error" or not ok.any():
                raise DataError(msg, path, cell)
            warnings.warn(f"{path} [{cell}]: {msg}; dropped", stacklevel=4)
        genes, X, y = genes[ok], X[ok], col[pos[ok]]
    check_counts(X, path, cell, n_marks=None, n_bins=None, genes=genes)  # float64: no silent inf
    return HistoneDataset(
        X=X.astype(np.float32),
        y=y,
        cell=np.full(len(genes), cell),
        gene=genes,
        marks=marks,
        target=TARGET_LOG2_RPKM,
    )


def deeptools_blocks(path, cells, target, **opts) -> tuple[list[str], Iterator[HistoneDataset]]:
    """Cell types and one block per cell type, for :func:`histexpr.data.convert.convert`."""
    ds = read_deeptools(path, target=target, cells=cells, **opts)
    keys = ds.cells
    return keys, (ds.subset(ds.cell == c) for c in keys)
