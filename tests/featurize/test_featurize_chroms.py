"""Chromosome naming (chr1 vs 1, chrM vs MT) and stale BAM indexes, on tiny synthetic tracks."""

import gzip
import os
import time
import warnings

import numpy as np
import pytest

from histexpr.errors import DataError
from histexpr.featurize.annotation import TssTable, Window
from histexpr.featurize.bamindex import index_problem
from histexpr.featurize.bigwig import bin_bigwig
from histexpr.featurize.chroms import ChromMatcher, chrom_key
from histexpr.featurize.reads import count_bam, count_tagalign

pysam = pytest.importorskip("pysam")
pyBigWig = pytest.importorskip("pyBigWig")

WINDOW = Window(upstream=200, downstream=200, n_bins=4)
READ_LEN = 20
LENGTHS = {"1": 5000, "2": 5000, "M": 3000}


def _ucsc(c):
    return "chrM" if c == "M" else f"chr{c}"


def _ensembl(c):
    return "MT" if c == "M" else c


def tss_table(naming):
    chroms = [naming(c) for c in ("1", "1", "2", "M")]
    return TssTable(
        chroms, [1000, 3000, 2000, 1500], ["+", "-", "+", "+"], list("ABCD"), list("ABCD")
    )


def reads_on(seed=0):
    """(chrom key, start, reverse): reads around every TSS, so no window is all zero."""
    rng = np.random.default_rng(seed)
    out = []
    for c, centre in (("1", 1000), ("1", 3000), ("2", 2000), ("M", 1500)):
        for s in rng.integers(centre - 190, centre + 170, size=30):
            out.append((c, int(s), bool(rng.integers(2))))
    return sorted(out, key=lambda r: (list(LENGTHS).index(r[0]), r[1]))


def write_bam(path, naming, reads, index=True):
    names = list(LENGTHS)
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}}
    header["SQ"] = [{"SN": naming(c), "LN": LENGTHS[c]} for c in names]
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for i, (c, start, reverse) in enumerate(reads):
            a = pysam.AlignedSegment()
            a.query_name = f"r{i}"
            a.query_sequence = "A" * READ_LEN
            a.flag = 0x10 if reverse else 0
            a.reference_id = names.index(c)
            a.reference_start = start
            a.mapping_quality = 60
            a.cigarstring = f"{READ_LEN}M"
            a.query_qualities = pysam.qualitystring_to_array("I" * READ_LEN)
            out.write(a)
    if index:
        pysam.index(str(path))
    return path


def write_tagalign(path, naming, reads):
    with gzip.open(path, "wt") as fh:
        for c, start, reverse in reads:
            strand = "-" if reverse else "+"
            fh.write(f"{naming(c)}\t{start}\t{start + READ_LEN}\tN\t1000\t{strand}\n")
    return path


def write_bigwig(path, naming, reads):
    """Per-base coverage of the reads."""
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([(naming(c), n) for c, n in LENGTHS.items()])
    for c, n in LENGTHS.items():
        cov = np.zeros(n)
        for rc, s, _ in reads:
            if rc == c:
                cov[s : s + READ_LEN] += 1
        nz = np.flatnonzero(cov)
        if len(nz):
            bw.addEntries(
                [naming(c)] * len(nz),
                nz.tolist(),
                ends=(nz + 1).tolist(),
                values=cov[nz].tolist(),
            )
    bw.close()
    return path


WRITERS = {
    "bigwig": (write_bigwig, "t.bw", lambda p, t: bin_bigwig(p, t, WINDOW)),
    "bam": (write_bam, "t.bam", lambda p, t: count_bam(p, t, WINDOW)),
    "tagalign": (write_tagalign, "t.tagAlign.gz", lambda p, t: count_tagalign(p, t, WINDOW)),
}


def test_chrom_key():
    assert {chrom_key(c) for c in ("chr1", "1", "CHR1")} == {"1"}
    assert {chrom_key(c) for c in ("chrM", "MT", "M", "chrMT")} == {"M"}
    assert chrom_key("chrUn_gl000220") == "Un_gl000220"


@pytest.mark.parametrize("kind", sorted(WRITERS))
@pytest.mark.parametrize(("track_naming", "tss_naming"), [(_ensembl, _ucsc), (_ucsc, _ensembl)])
def test_names_harmonised_per_track(tmp_path, kind, track_naming, tss_naming):
    """chr1 TSSs on a track named 1 (and the reverse) give the same-named result, with a notice."""
    write, name, count = WRITERS[kind]
    reads = reads_on()
    same = count(write(tmp_path / f"same_{name}", tss_naming, reads), tss_table(tss_naming))
    assert (same.sum(axis=1) > 0).all()
    path = write(tmp_path / name, track_naming, reads)
    with pytest.warns(
        UserWarning, match=r"names matched to the track's \((chr1 -> 1|1 -> chr1), 3 chromosome"
    ):
        got = count(path, tss_table(tss_naming))
    np.testing.assert_array_equal(got, same)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_no_chromosome_in_common_is_an_error(tmp_path, kind):
    write, name, count = WRITERS[kind]
    path = write(tmp_path / name, _ucsc, reads_on())
    tss = TssTable(["scaffold_9"], [1000], ["+"], ["A"], ["A"])
    with pytest.raises(DataError, match=r"no TSS lies on a chromosome of this track.*chr1"):
        count(path, tss)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_many_zero_windows_warn(tmp_path, kind):
    write, name, count = WRITERS[kind]
    reads = [r for r in reads_on() if r[0] == "1"]  # chr2 and chrM windows stay empty
    path = write(tmp_path / name, _ucsc, reads)
    with pytest.warns(UserWarning, match=r"2 of 4 windows \(50%\) are all zero"):
        count(path, tss_table(_ucsc))
    full = write(tmp_path / f"full_{name}", _ucsc, reads_on())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matching names, no empty window: silent
        count(full, tss_table(_ucsc))


def test_matcher_prefers_exact_names():
    m = ChromMatcher(["chr1", "1"])
    assert m.track_names(["1", "chr1"]) == {"1": "1", "chr1": "chr1"}
    assert not m.renamed


def _stale(tmp_path, kind):
    """A BAM whose .bai belongs to an earlier, different BAM (older or truncated)."""
    path = write_bam(tmp_path / "r.bam", _ucsc, reads_on(0)[:20])
    bai = (tmp_path / "r.bam.bai").read_bytes()
    write_bam(tmp_path / "r.bam", _ucsc, reads_on(1), index=False)
    idx = tmp_path / "r.bam.bai"
    idx.write_bytes(bai[:40] if kind == "truncated" else bai)
    if kind == "older":
        past = time.time() - 3600
        os.utime(idx, (past, past))
    return path


@pytest.mark.parametrize("kind", ["older", "truncated"])
def test_stale_bam_index_is_ignored_not_a_crash(tmp_path, kind):
    path = _stale(tmp_path, kind)
    assert index_problem(path) is not None
    fresh = write_bam(tmp_path / "fresh.bam", _ucsc, reads_on(1))
    with pytest.warns(UserWarning, match=r"r\.bam: index r\.bam\.bai is .*reading the whole"):
        got = count_bam(path, tss_table(_ucsc), WINDOW)
    np.testing.assert_array_equal(got, count_bam(fresh, tss_table(_ucsc), WINDOW))


def test_foreign_index_is_one_line_error_without_traceback_from_close(tmp_path):
    """A newer, complete .bai of another BAM: the read error, never a close() traceback."""
    other = write_bam(tmp_path / "other.bam", _ucsc, reads_on(0)[:20])
    path = write_bam(tmp_path / "r.bam", _ucsc, reads_on(1) * 20, index=False)
    os.replace(f"{other}.bai", f"{path}.bai")
    future = time.time() + 60
    os.utime(f"{path}.bai", (future, future))
    assert index_problem(path) is None  # plausible: same references, newer than the BAM
    try:
        got = count_bam(path, tss_table(_ucsc), WINDOW)
    except DataError as exc:
        msg = str(exc)
        assert "r.bam" in msg and "samtools index" in msg and "\n" not in msg
        assert "b'" not in msg
    else:  # htslib may read the few blocks it needs without noticing
        assert got.shape == (4, WINDOW.n_bins)
