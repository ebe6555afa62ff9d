"""Bin a bigWig signal track over every gene's TSS window.

Each bin holds the **sum of the per-base values** over its bases (a coverage
track binned this way gives read counts x read length). Bases without data
(gaps between bigWig intervals, chromosomes absent from the file, positions past
the chromosome ends) count 0. Chromosome names are matched to the file's
(``chr1``/``1``, ``chrM``/``MT``; see :mod:`histexpr.featurize.chroms`). Sums are accumulated in float64 and returned as
float32.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from histexpr.errors import DataError, HistexprError
from histexpr.featurize.annotation import TssTable, Window, orient, window_bounds
from histexpr.featurize.chroms import ChromMatcher


def require(module: str):
    """Import an optional dependency of the ``featurize`` extra, with a clear error."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise HistexprError(
            f"{module} is required for featurize; install it with `pip install 'histexpr[featurize]'`"
        ) from None


def is_bigwig(path) -> bool:
    """True when ``path`` starts with the bigWig magic number (either byte order)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head in (b"\x26\xfc\x8f\x88", b"\x88\x8f\xfc\x26")


def bigwig_chroms(path) -> dict[str, int]:
    """Chromosome names and lengths of a bigWig file."""
    pyBigWig = require("pyBigWig")
    bw = _open(pyBigWig, path)
    try:
        return dict(bw.chroms())
    finally:
        bw.close()


def _open(pyBigWig, path):
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    try:
        bw = pyBigWig.open(str(path))
    except RuntimeError:
        bw = None
    if bw is None or not bw.isBigWig():
        raise DataError("not a bigWig file", path)
    return bw


def bin_bigwig(path, tss: TssTable, window: Window | None = None) -> np.ndarray:
    """Sum a bigWig track in the bins of every gene's window.

    Parameters
    ----------
    path : str or PathLike
        bigWig file.
    tss : TssTable
        Genes and their TSS (0-based).
    window : Window, optional
        Default +/- 5 kb in 100 bins of 100 bp.

    Returns
    -------
    np.ndarray, shape (n_genes, n_bins), float32
        Bin sums, bins ordered upstream -> downstream (minus-strand genes flipped).
    """
    window = window or Window()
    pyBigWig = require("pyBigWig")
    bw = _open(pyBigWig, path)
    lo, hi = window_bounds(tss, window)
    out = np.zeros((len(tss), window.n_bins), dtype=np.float64)
    full = np.zeros(window.width, dtype=np.float32)
    matcher = ChromMatcher(tss.chrom)
    try:
        chroms = bw.chroms()
        names = matcher.track_names(chroms)  # TSS name -> track name (chr1 / 1)
        # Visiting genes in genomic order keeps bigWig block reads local.
        for i in np.lexsort((lo, tss.chrom)):
            chrom = names.get(tss.chrom[i])
            if chrom is None:
                continue
            a, b = max(int(lo[i]), 0), min(int(hi[i]), chroms[chrom])
            if a >= b:
                continue
            vals = np.nan_to_num(bw.values(chrom, a, b, numpy=True), nan=0.0, copy=False)
            if vals.size == 0:  # a file without any data intervals
                continue
            if b - a != window.width:
                # Window clipped at a chromosome end: pad the missing bases with 0.
                full[:] = 0.0
                full[a - lo[i] : b - lo[i]] = vals
                vals = full
            out[i] = vals.reshape(window.n_bins, window.bin_size).sum(axis=1, dtype=np.float64)
    except RuntimeError as exc:
        raise DataError(f"cannot read bigWig ({exc})", path) from None
    finally:
        bw.close()
    binned = orient(out, tss).astype(np.float32)
    matcher.check(path, binned, np.isin(tss.chrom, sorted(matcher.matched)))
    return binned
