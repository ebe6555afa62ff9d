"""Chromosome names of a track matched to those of the TSS table.

UCSC names (``chr1``, ``chrM``) and Ensembl/NCBI names (``1``, ``MT``) of the same
chromosome are matched automatically, per track: a name is used as it is when the
track has it, otherwise the track's name with the same :func:`chrom_key` (``chr``
prefix removed, ``M``/``MT`` equal). Every track is then checked:

- no TSS chromosome found in the track: :class:`~histexpr.errors.DataError`
  (the dataset would be all zeros);
- names renamed: a warning saying so (e.g. ``chr1 -> 1``);
- more than :data:`ZERO_WINDOW_WARN` of the windows all zero: a warning.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from histexpr._runtime import notice
from histexpr.errors import DataError

#: Fraction of all-zero windows of a track above which featurize warns.
ZERO_WINDOW_WARN = 0.05


def chrom_key(name: str) -> str:
    """Naming-independent key: ``chr1``/``1`` -> ``1``, ``chrM``/``MT``/``M`` -> ``M``."""
    base = name[3:] if name[:3].lower() == "chr" else name
    return "M" if base.upper() in ("M", "MT") else base


class ChromMatcher:
    """Maps TSS chromosome names to a track's names (and back), recording renames.

    Parameters
    ----------
    tss_chroms : iterable of str
        Chromosome names of the TSS table.
    """

    def __init__(self, tss_chroms: Iterable[str]):
        self.tss_chroms = sorted({str(c) for c in tss_chroms})
        self._tss_set = set(self.tss_chroms)
        self._by_key: dict[str, str] = {}
        for c in self.tss_chroms:
            self._by_key.setdefault(chrom_key(c), c)
        self.renamed: dict[str, str] = {}  # TSS name -> track name
        self.track_seen: set[str] = set()
        self.matched: set[str] = set()  # TSS names found in the track
        self._cache: dict[str, str | None] = {}

    def tss_name(self, track_chrom: str) -> str | None:
        """The TSS chromosome a track chromosome is, or None when the TSS table has none."""
        hit = self._cache.get(track_chrom, "")
        if hit != "":
            return hit
        self.track_seen.add(track_chrom)
        if track_chrom in self._tss_set:
            name = track_chrom
        else:
            name = self._by_key.get(chrom_key(track_chrom))
            if name is not None and name in self.matched:
                name = None  # the exact name is in the track too: it wins
            if name is not None:
                self.renamed[name] = track_chrom
        if name is not None:
            self.matched.add(name)
        self._cache[track_chrom] = name
        return name

    def track_names(self, track_chroms: Iterable[str]) -> dict[str, str]:
        """``{TSS name: track name}`` for every TSS chromosome the track has."""
        track_chroms = [str(c) for c in track_chroms]
        exact = set(track_chroms) & set(self.tss_chroms)
        for c in exact:  # exact names first, so an alias never shadows them
            self.tss_name(c)
        out = {c: c for c in exact}
        for t in track_chroms:
            name = self.tss_name(t)
            if name is not None and name not in out:
                out[name] = t
        return out

    def check(self, path, binned: np.ndarray | None = None, on_chrom=None) -> None:
        """Raise when nothing matched; warn about renames and all-zero windows.

        Parameters
        ----------
        path : path
            The track, named in messages.
        binned : np.ndarray, shape (n_genes, n_bins), optional
            The track's binned windows.
        on_chrom : np.ndarray, shape (n_genes,), bool, optional
            Genes on a chromosome the track has (for the all-zero fraction).
        """
        if not self.matched:
            track = ", ".join(sorted(self.track_seen)[:4]) or "none"
            raise DataError(
                f"no TSS lies on a chromosome of this track (track: {track}; "
                f"TSS table: {', '.join(self.tss_chroms[:4])}); check the genome assembly",
                path,
            )
        if self.renamed:
            first = sorted(self.renamed)[0]
            notice(
                f"{path}: chromosome names matched to the track's "
                f"({first} -> {self.renamed[first]}, {len(self.renamed)} chromosome(s))",
                stacklevel=3,
            )
        if binned is not None and len(binned):
            zero = ~np.any(binned != 0, axis=1)
            frac = float(zero.mean())
            if frac > ZERO_WINDOW_WARN:
                missing = 0 if on_chrom is None else int((~on_chrom).sum())
                where = f" ({missing} on chromosomes absent from the track)" if missing else ""
                notice(
                    f"{path}: {zero.sum()} of {len(zero)} windows ({100 * frac:.0f}%) are all "
                    f"zero{where}",
                    stacklevel=3,
                )
