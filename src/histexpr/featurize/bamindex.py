"""Is a BAM's index usable? Checked before htslib ever loads it.

htslib (pysam 0.24) may free memory twice when it loads a truncated or foreign
``.bai`` and the process aborts on exit. So the index is checked here first: it
is used only when it is no older than the BAM and, for a ``.bai``, when it parses
completely and indexes as many references as the BAM header names. Otherwise
the BAM is read through a symbolic link in a temporary folder, where htslib finds
no index, and streamed from start to end (same counts, slower), with a warning.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path

from histexpr._runtime import notice
from histexpr.errors import DataError


def index_path(path) -> Path | None:
    """The index htslib would pick for ``path`` (``X.bam.bai``, ``X.bai`` or ``X.bam.csi``)."""
    path = Path(path)
    for cand in (Path(f"{path}.bai"), path.with_suffix(".bai"), Path(f"{path}.csi")):
        if cand.is_file():
            return cand
    return None


def bam_n_refs(path) -> int:
    """Number of reference sequences in a BAM header (reads the first BGZF blocks only)."""
    try:
        with gzip.open(path, "rb") as fh:
            if fh.read(4) != b"BAM\x01":
                raise DataError("not a BAM file (bad magic)", path)
            (l_text,) = struct.unpack("<i", fh.read(4))
            fh.seek(l_text, os.SEEK_CUR)
            (n_ref,) = struct.unpack("<i", fh.read(4))
    except (OSError, EOFError, struct.error, zlib.error) as exc:
        raise DataError(f"not a readable BAM file ({exc})", path) from None
    return n_ref


def bai_n_refs(idx) -> int | None:
    """References indexed by a complete ``.bai``; None when it is truncated or not a BAI."""
    data = Path(idx).read_bytes()
    if data[:4] != b"BAI\x01" or len(data) < 8:
        return None
    (n_ref,) = struct.unpack_from("<i", data, 4)
    off = 8
    try:
        for _ in range(n_ref):
            (n_bin,) = struct.unpack_from("<i", data, off)
            off += 4
            for _ in range(n_bin):
                (n_chunk,) = struct.unpack_from("<i", data, off + 4)
                off += 8 + 16 * n_chunk
            (n_intv,) = struct.unpack_from("<i", data, off)
            off += 4 + 8 * n_intv
    except struct.error:
        return None
    return n_ref if off <= len(data) else None


def index_problem(path) -> str | None:
    """Why the index of ``path`` must not be used, or None (usable, or no index at all)."""
    path = Path(path)
    idx = index_path(path)
    if idx is None:
        return None
    if idx.stat().st_mtime < path.stat().st_mtime:
        return f"index {idx.name} is older than the BAM file"
    if idx.suffix == ".bai":
        n_idx = bai_n_refs(idx)
        if n_idx is None:
            return f"index {idx.name} is truncated or not a BAM index"
        n_bam = bam_n_refs(path)
        if n_idx != n_bam:
            return f"index {idx.name} covers {n_idx} references, the BAM has {n_bam}"
    return None


@contextmanager
def bam_without_bad_index(path):
    """Yield the path to open: ``path`` itself, or a link to it that hides a bad index."""
    path = Path(path)
    problem = index_problem(path)
    if problem is None:
        yield path
        return
    notice(
        f"{path}: {problem}; ignoring it and reading the whole file "
        "(re-create it with `samtools index` to read only the windows)",
        UserWarning,
        stacklevel=4,
    )
    with tempfile.TemporaryDirectory(prefix="histexpr-bam-") as tmp:
        link = Path(tmp) / "reads.bam"
        os.symlink(path.resolve(), link)
        yield link
