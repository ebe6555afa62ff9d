"""Count aligned reads (BAM or tagAlign) in the bins of every gene's window.

Counting semantics
------------------
``position="5prime"`` (default): a read is counted once, in the bin holding its
5' end: ``reference_start`` for a forward read, ``reference_end - 1`` for a
reverse read (BAM flag 0x10; tagAlign strand ``-``), all 0-based.

``position="overlap"``: a read is counted in *every* bin its aligned span
``[reference_start, reference_end)`` overlaps by at least one base. This is what
``bedtools multicov`` (the DeepChrome recipe) counts per bin interval.

BAM records are filtered with :class:`ReadCountOptions`. Unmapped reads (0x4)
never count. By default duplicates (0x400) and QC-failed reads (0x200) are
excluded, as by ``bedtools multicov`` without ``-D``/``-F``; secondary (0x100)
and supplementary (0x800) alignments are excluded too so that every read counts
at most once (``bedtools multicov`` counts them; switch them on to match it).
Each mate of a pair counts as a read. tagAlign records carry no flags or
mapping quality (Roadmap's files are already filtered), so only ``position``
applies to them.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from histexpr.data.validate import one_line
from histexpr.errors import ConfigError, DataError
from histexpr.featurize.annotation import TssTable, Window, orient, window_bounds
from histexpr.featurize.bamindex import bam_without_bad_index
from histexpr.featurize.bigwig import require
from histexpr.featurize.chroms import ChromMatcher

#: Reads gathered before they are binned (bounds memory on whole-genome files).
CHUNK_READS = 1_000_000

_UNMAPPED, _REVERSE, _SECONDARY, _QCFAIL, _DUP, _SUPPLEMENTARY = (
    0x4,
    0x10,
    0x100,
    0x200,
    0x400,
    0x800,
)


@dataclass(frozen=True)
class ReadCountOptions:
    """Which reads count, and where (see the module docstring).

    Attributes
    ----------
    position : {"5prime", "overlap"}
    min_mapq : int
        Minimum mapping quality (BAM only).
    include_duplicates, include_qc_fail, include_secondary, include_supplementary : bool
        Count reads with these BAM flags.
    """

    position: Literal["5prime", "overlap"] = "5prime"
    min_mapq: int = 0
    include_duplicates: bool = False
    include_qc_fail: bool = False
    include_secondary: bool = False
    include_supplementary: bool = False

    def __post_init__(self):
        if self.position not in ("5prime", "overlap"):
            raise ConfigError(f"position must be '5prime' or 'overlap', got {self.position!r}")

    @property
    def exclude_flags(self) -> int:
        flags = _UNMAPPED
        flags |= 0 if self.include_duplicates else _DUP
        flags |= 0 if self.include_qc_fail else _QCFAIL
        flags |= 0 if self.include_secondary else _SECONDARY
        flags |= 0 if self.include_supplementary else _SUPPLEMENTARY
        return flags


class BinCounter:
    """Accumulate read counts per gene bin from batches of reads on one chromosome.

    Parameters
    ----------
    tss : TssTable
    window : Window
    position : {"5prime", "overlap"}
    """

    def __init__(self, tss: TssTable, window: Window, position: str = "5prime"):
        self.tss, self.window, self.position = tss, window, position
        lo, hi = window_bounds(tss, window)
        self.lo, self.hi = lo, hi
        self.counts = np.zeros((len(tss), window.n_bins), dtype=np.int64)
        steps = np.arange(window.n_bins + 1, dtype=np.int64) * window.bin_size
        #: Track chromosome names -> TSS names (``chr1`` and ``1`` match, see chroms.py).
        self.chroms = ChromMatcher(tss.chrom)
        self._genes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for chrom in np.unique(tss.chrom):
            idx = np.flatnonzero(tss.chrom == chrom)
            self._genes[str(chrom)] = (idx, lo[idx, None] + steps)

    def regions(self, chrom: str) -> list[tuple[int, int]]:
        """Disjoint, sorted reference intervals covering all windows on track ``chrom``."""
        chrom = self.chroms.tss_name(chrom)
        if chrom not in self._genes:
            return []
        idx = self._genes[chrom][0]
        order = np.argsort(self.lo[idx], kind="stable")
        merged: list[list[int]] = []
        for a, b in zip(self.lo[idx][order], self.hi[idx][order], strict=True):
            a = max(int(a), 0)
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], int(b))
            else:
                merged.append([a, int(b)])
        return [(a, b) for a, b in merged]

    def add(self, chrom: str, start: np.ndarray, end: np.ndarray, reverse: np.ndarray) -> None:
        """Add reads ``[start, end)`` (0-based) on track ``chrom``; ``reverse``: minus strand."""
        chrom = self.chroms.tss_name(chrom)
        if chrom not in self._genes or len(start) == 0:
            return
        idx, edges = self._genes[chrom]
        if self.position == "5prime":
            pos = np.sort(np.where(reverse, end - 1, start))
            cum = np.searchsorted(pos, edges, side="left")
            self.counts[idx] += np.diff(cum, axis=1)
        else:
            # A read [s, e) overlaps bin [a, b) iff s < b and e > a.
            s, e = np.sort(start), np.sort(end)
            n_started = np.searchsorted(s, edges[:, 1:], side="left")
            n_ended = np.searchsorted(e, edges[:, :-1], side="right")
            self.counts[idx] += n_started - n_ended

    def result(self, path=None) -> np.ndarray:
        """Counts, shape (n_genes, n_bins), float32, bins upstream -> downstream.

        With ``path``, the track is checked first (:meth:`ChromMatcher.check`).
        """
        out = orient(self.counts, self.tss).astype(np.float32)
        if path is not None:
            on_chrom = np.isin(self.tss.chrom, sorted(self.chroms.matched))
            self.chroms.check(path, out, on_chrom)
        return out


def _open_bam(readable, path):
    """Open ``readable`` (``path`` or a link to it); errors name ``path``."""
    pysam = require("pysam")
    try:
        return pysam.AlignmentFile(str(readable), "rb")
    except (ValueError, OSError) as exc:
        raise DataError(f"not a readable BAM file ({one_line(exc)})", path) from None


def count_bam(
    path, tss: TssTable, window: Window | None = None, options: ReadCountOptions | None = None
) -> np.ndarray:
    """Count BAM reads in the bins of every gene's window.

    With a BAM index (``.bai``/``.csi``) only the windows are read; without one
    the whole file is streamed.

    Parameters
    ----------
    path : str or PathLike
    tss : TssTable
    window : Window, optional
    options : ReadCountOptions, optional

    Returns
    -------
    np.ndarray, shape (n_genes, n_bins), float32
        Read counts, bins ordered upstream -> downstream.
    """
    window = window or Window()
    options = options or ReadCountOptions()
    counter = BinCounter(tss, window, options.position)
    exclude, min_mapq = options.exclude_flags, options.min_mapq
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    with bam_without_bad_index(path) as readable:
        bam = _open_bam(readable, path)
        reads = None
        failed = True
        try:
            counter.chroms.track_names(bam.references)
            indexed = bam.has_index()
            reads = _fetch_windows(bam, counter) if indexed else bam.fetch(until_eof=True)
            _consume(counter, reads, exclude, min_mapq)
            failed = False
        except (ValueError, OSError) as exc:
            hint = (
                "; its index may belong to another file: re-create it with `samtools index`"
                if indexed
                else ""
            )
            msg = re.sub(r"\s*b'[^']*'", "", one_line(exc))  # no bytes repr of the path
            raise DataError(f"cannot read BAM ({msg}){hint}", path) from None
        finally:
            _close_quietly(reads, bam, failed, path)
    return counter.result(path)


def _close_quietly(reads, bam, failed: bool, path) -> None:
    """Close the read iterator, then the file; a close error never hides the first error."""
    try:
        if reads is not None and hasattr(reads, "close"):
            reads.close()  # a generator over bam.fetch(): release it before the file
        bam.close()
    except (ValueError, OSError) as exc:
        if not failed:
            raise DataError(f"cannot close BAM ({one_line(exc)})", path) from None


def _fetch_windows(bam, counter: BinCounter):
    """Reads overlapping any window, each once, via the BAM index."""
    for chrom in bam.references:
        prev_end = -1
        for a, b in counter.regions(chrom):
            for read in bam.fetch(chrom, a, b):
                # A read overlapping two regions is kept only in the first one.
                if read.reference_start >= prev_end:
                    yield read
            prev_end = b


def _consume(counter: BinCounter, reads, exclude: int, min_mapq: int) -> None:
    """Filter reads and hand them to ``counter`` in chunks (one ``add`` per chromosome)."""
    buf: dict[str, tuple[list, list, list]] = {}
    n = 0

    def flush():
        for chrom, (s, e, r) in buf.items():
            counter.add(
                chrom, np.asarray(s, np.int64), np.asarray(e, np.int64), np.asarray(r, bool)
            )
        buf.clear()

    for read in reads:
        flag = read.flag
        if flag & exclude or read.mapping_quality < min_mapq:
            continue
        end = read.reference_end
        if end is None:
            continue
        chrom = read.reference_name
        s, e, r = buf.setdefault(chrom, ([], [], []))
        s.append(read.reference_start)
        e.append(end)
        r.append(bool(flag & _REVERSE))
        n += 1
        if n % CHUNK_READS == 0:
            flush()
    flush()


def count_tagalign(
    path,
    tss: TssTable,
    window: Window | None = None,
    options: ReadCountOptions | None = None,
    chunk_reads: int = CHUNK_READS,
) -> np.ndarray:
    """Count reads of a tagAlign / BED6 file (plain or gzipped), streamed in chunks.

    Parameters
    ----------
    path : str or PathLike
        Tab-separated chrom, start, end, name, score, strand (0-based, half-open).
    tss : TssTable
    window : Window, optional
    options : ReadCountOptions, optional
        Only ``position`` applies.
    chunk_reads : int
        Reads parsed per chunk.

    Returns
    -------
    np.ndarray, shape (n_genes, n_bins), float32
    """
    window = window or Window()
    options = options or ReadCountOptions()
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    counter = BinCounter(tss, window, options.position)
    opener = gzip.open if _is_gzip(path) else open
    try:
        with opener(path, "rt") as fh:
            chunks = pd.read_csv(
                fh,
                sep="\t",
                header=None,
                usecols=[0, 1, 2, 5],
                names=["chrom", "start", "end", "name", "score", "strand"],
                dtype={"chrom": str, "start": np.int64, "end": np.int64, "strand": str},
                comment="#",
                chunksize=chunk_reads,
            )
            for chunk in chunks:
                for chrom, part in chunk.groupby("chrom", sort=False):
                    counter.add(
                        str(chrom),
                        part["start"].to_numpy(),
                        part["end"].to_numpy(),
                        (part["strand"] == "-").to_numpy(),
                    )
    except (ValueError, pd.errors.ParserError, OSError, EOFError) as exc:
        raise DataError(f"cannot parse tagAlign ({exc})", path) from None
    return counter.result(path)


def _is_gzip(path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"
