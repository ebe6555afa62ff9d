"""TSS annotation and the binned window around each TSS.

Coordinate convention
---------------------
Inside histexpr every position is **0-based** and every interval is
**half-open** ``[lo, hi)``, as in BED, pyBigWig and pysam. ``TssTable.tss`` is
the 0-based position of the first transcribed base.

Input files are converted on reading:

- GTF (1-based, closed): ``tss = start - 1`` on ``+``, ``tss = end - 1`` on ``-``.
- BED (0-based, half-open): ``tss = start`` on ``+``, ``tss = end - 1`` on ``-``.
- Tables with a header: a ``tss`` column is taken as 0-based; otherwise
  ``chrom,start,end,strand`` are read as BED when every row has
  ``end == start + 1`` (a one-base TSS record, e.g. Chromoformer's
  ``demo_meta.csv``) and as GTF-style gene spans otherwise (the packaged GENCODE
  v10 table, whose ``start``/``end`` are the GTF gene coordinates, so its
  minus-strand TSS is ``end``). Pass ``coords`` to override.

Window
------
A :class:`Window` of ``upstream`` and ``downstream`` bp (in transcription
direction) is cut into ``n_bins`` equal bins. For a ``+`` gene it covers
``[tss - upstream, tss + downstream)``; for a ``-`` gene it is the exact mirror
image, ``[tss - downstream + 1, tss + upstream + 1)``, and its bins are reversed,
so bin ``k`` always lies the same distance upstream/downstream of the TSS base
and the TSS base is the first base (in transcription direction) of bin
``upstream / bin_size``.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from histexpr.data.dataset import BIN_SIZE, N_BINS, canonical_gene_ids
from histexpr.errors import DataError

Coords = Literal["auto", "gtf", "bed"]


@dataclass(frozen=True)
class Window:
    """Binned window around the TSS (lengths in bp, in transcription direction).

    Attributes
    ----------
    upstream : int
        Bases before the TSS base.
    downstream : int
        Bases from the TSS base on (the TSS base included).
    n_bins : int
        Number of equal bins; ``upstream + downstream`` must be a multiple of it.
    """

    upstream: int = N_BINS * BIN_SIZE // 2
    downstream: int = N_BINS * BIN_SIZE // 2
    n_bins: int = N_BINS

    def __post_init__(self):
        if self.upstream < 0 or self.downstream < 0 or self.n_bins <= 0:
            raise DataError(f"invalid window {self}", key="window")
        if self.width % self.n_bins:
            raise DataError(
                f"window of {self.width} bp is not divisible into {self.n_bins} bins", key="window"
            )

    @property
    def width(self) -> int:
        return self.upstream + self.downstream

    @property
    def bin_size(self) -> int:
        return self.width // self.n_bins


@dataclass
class TssTable:
    """One TSS per gene.

    Attributes
    ----------
    chrom : np.ndarray, shape (n_genes,), str
    tss : np.ndarray, shape (n_genes,), int64
        0-based position of the first transcribed base.
    strand : np.ndarray, shape (n_genes,), str
        ``"+"`` or ``"-"``.
    gene_id : np.ndarray, shape (n_genes,), str
        Gene ids in the canonical form of
        :func:`histexpr.data.dataset.canonical_gene_ids` (version suffix removed).
    name : np.ndarray, shape (n_genes,), str
        Gene symbols (or the id when unknown).
    """

    chrom: np.ndarray
    tss: np.ndarray
    strand: np.ndarray
    gene_id: np.ndarray
    name: np.ndarray

    def __post_init__(self):
        self.chrom = np.asarray(self.chrom).astype(str)
        self.tss = np.asarray(self.tss, dtype=np.int64)
        self.strand = np.asarray(self.strand).astype(str)
        self.gene_id = canonical_gene_ids(self.gene_id)
        self.name = np.asarray(self.name).astype(str)
        n = len(self.tss)
        for key in ("chrom", "strand", "gene_id", "name"):
            if getattr(self, key).shape != (n,):
                raise DataError(
                    f"{key} has shape {getattr(self, key).shape}, tss has {n} rows", key=key
                )
        bad = ~np.isin(self.strand, ["+", "-"])
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"strand must be '+' or '-', got '{self.strand[i]}' (gene {self.gene_id[i]})",
                key="strand",
            )
        dup = pd.Index(self.gene_id).duplicated()
        if dup.any():
            raise DataError(f"duplicate gene id {self.gene_id[dup][0]}", key="gene_id")

    def __len__(self) -> int:
        return len(self.tss)

    def subset(self, index) -> TssTable:
        """Genes selected by an index array or boolean mask."""
        return TssTable(
            self.chrom[index],
            self.tss[index],
            self.strand[index],
            self.gene_id[index],
            self.name[index],
        )

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with columns chrom, tss, strand, gene_id, name."""
        return pd.DataFrame(
            {
                "chrom": self.chrom,
                "tss": self.tss,
                "strand": self.strand,
                "gene_id": self.gene_id,
                "name": self.name,
            }
        )


def window_bounds(tss: TssTable, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Reference-coordinate interval ``[lo, hi)`` of every gene's window.

    Returns
    -------
    lo, hi : np.ndarray, shape (n_genes,), int64
        May extend past the chromosome ends; readers count such bases as 0.
    """
    plus = tss.strand == "+"
    lo = np.where(plus, tss.tss - window.upstream, tss.tss - window.downstream + 1)
    return lo, lo + window.width


def orient(binned: np.ndarray, tss: TssTable) -> np.ndarray:
    """Reverse the bin axis of minus-strand genes (reference order -> upstream first).

    Parameters
    ----------
    binned : np.ndarray, shape (n_genes, n_bins)
        Bins in reference-coordinate order.
    """
    out = binned.copy()
    minus = tss.strand == "-"
    out[minus] = out[minus, ::-1]
    return out


def _strip_version(ids: pd.Series) -> pd.Series:
    return ids.astype(str).str.replace(r"\.\d+$", "", regex=True)


def tss_from_frame(df: pd.DataFrame, coords: Coords = "auto", source=None) -> TssTable:
    """Build a :class:`TssTable` from a table (see the module docstring for ``coords``).

    Parameters
    ----------
    df : pd.DataFrame
        Columns chrom, strand, gene_id and either tss (0-based) or start and end;
        name optional.
    coords : {"auto", "gtf", "bed"}
        How to read start/end.
    source : path, optional
        Named in error messages.
    """
    for col in ("chrom", "strand", "gene_id"):
        if col not in df.columns:
            raise DataError(f"TSS table has no column {col!r}", source, col)
    strand = df["strand"].astype(str).to_numpy()
    if "tss" in df.columns:
        tss = df["tss"].astype(np.int64).to_numpy()
    else:
        for col in ("start", "end"):
            if col not in df.columns:
                raise DataError("TSS table needs a 'tss' column or 'start' and 'end'", source, col)
        start = df["start"].astype(np.int64).to_numpy()
        end = df["end"].astype(np.int64).to_numpy()
        if coords == "auto":
            coords = "bed" if len(df) and np.all(end - start == 1) else "gtf"
        if coords == "gtf":
            tss = np.where(strand == "+", start - 1, end - 1)
        elif coords == "bed":
            tss = np.where(strand == "+", start, end - 1)
        else:
            raise DataError(f"coords must be 'auto', 'gtf' or 'bed', got {coords!r}", source)
    gene_id = _strip_version(df["gene_id"])
    name = df["name"].astype(str) if "name" in df.columns else gene_id
    try:
        return TssTable(df["chrom"].astype(str).to_numpy(), tss, strand, gene_id, name)
    except DataError as exc:  # name the file the bad row came from
        if exc.path is not None or source is None:
            raise
        raise DataError(exc.problem, source, exc.key) from None


_ATTR = re.compile(r'(\S+) "([^"]*)"')


def read_gtf(path, feature: str = "gene") -> TssTable:
    """TSS of every ``feature`` record of a GTF (plain or gzipped), strand aware."""
    rows = []
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.startswith("#") or not line.strip():
                continue
            f = line.rstrip("\n").split("\t")
            if len(f) < 9:
                raise DataError(f"line {lineno}: expected 9 GTF columns, found {len(f)}", path)
            if f[2] != feature:
                continue
            attrs = dict(_ATTR.findall(f[8]))
            if "gene_id" not in attrs:
                raise DataError(f"line {lineno}: no gene_id attribute", path)
            gid = attrs["gene_id"]
            rows.append((f[0], int(f[3]), int(f[4]), f[6], gid, attrs.get("gene_name", gid)))
    if not rows:
        raise DataError(f"no {feature!r} records", path)
    df = pd.DataFrame(rows, columns=["chrom", "start", "end", "strand", "gene_id", "name"])
    return tss_from_frame(df, coords="gtf", source=path)


def read_tss(path=None, coords: Coords = "auto", feature: str = "gene") -> TssTable:
    """Read TSS positions from a GTF, a BED file or a table.

    Parameters
    ----------
    path : str or PathLike, optional
        ``*.gtf[.gz]``; ``*.bed[.gz]`` (BED6: chrom, start, end, name, score,
        strand; name is the gene id); or a CSV/TSV table with a header (columns
        as in :func:`tss_from_frame`), or headerless with the packaged layout
        chrom, start, end, strand, gene_id, name. Default: the packaged GENCODE
        v10 (hg19) table, :func:`histexpr.data.reference.load_tss`.
    coords : {"auto", "gtf", "bed"}
        Interpretation of start/end in tables (ignored for GTF and BED).
    feature : str
        GTF feature type whose start/end define the TSS.

    Returns
    -------
    TssTable
    """
    if path is None:
        from histexpr.data.reference import load_tss

        return tss_from_frame(load_tss(), coords="gtf", source="packaged GENCODE v10 TSS")
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".gtf", ".gff2")):
        return read_gtf(path, feature)
    sep = "," if name.endswith(".csv") else "\t"
    if name.endswith(".bed"):
        df = pd.read_csv(path, sep="\t", header=None, comment="#", usecols=range(6), dtype=str)
        df.columns = ["chrom", "start", "end", "gene_id", "score", "strand"]
        return tss_from_frame(df, coords="bed", source=path)
    try:
        df = pd.read_csv(path, sep=sep, dtype={"chrom": str, "strand": str, "gene_id": str})
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"cannot read TSS table ({exc})", path) from None
    if "chrom" not in df.columns and df.shape[1] == 6:
        df = pd.read_csv(path, sep=sep, header=None, dtype=str)
        df.columns = ["chrom", "start", "end", "strand", "gene_id", "name"]
        coords = "gtf" if coords == "auto" else coords
    return tss_from_frame(df, coords=coords, source=path)
