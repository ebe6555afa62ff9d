"""Read counting in BAM and tagAlign files against reads with known positions and flags."""

import gzip

import numpy as np
import pytest

from histexpr.errors import ConfigError, DataError
from histexpr.featurize.annotation import TssTable, Window, window_bounds
from histexpr.featurize.reads import ReadCountOptions, count_bam, count_tagalign

pysam = pytest.importorskip("pysam")

WINDOW = Window(upstream=500, downstream=500, n_bins=10)
READ_LEN = 36
#: Overlapping windows on chr1 (plus and minus genes: P [500, 1500), M [801, 1801)), one
#: 19 bp further (R [1820, 2820): reads can overlap both merged fetch regions) and one on chr2.
TSS = TssTable(
    ["chr1", "chr1", "chr1", "chr2"],
    [1000, 1300, 2320, 5000],
    ["+", "-", "+", "+"],
    ["P", "M", "R", "Q"],
    ["P", "M", "R", "Q"],
)


def make_reads(seed=0):
    """Reads as dicts: chrom, start, reverse, flag, mapq (all 0-based starts)."""
    rng = np.random.default_rng(seed)
    reads = []
    for chrom, lo, hi in (("chr1", 300, 2900), ("chr2", 4400, 5600)):
        for start in rng.integers(lo, hi, size=400):
            flag = int(rng.choice([0, 0, 0, 0x400, 0x200, 0x100, 0x800, 0x4]))
            reverse = bool(rng.integers(2))
            reads.append(
                dict(
                    chrom=chrom,
                    start=int(start),
                    reverse=reverse,
                    flag=flag,
                    mapq=int(rng.integers(0, 60)),
                )
            )
    # Reads straddling the 19-bp gap between the fetch regions of M and R.
    for start in (1790, 1795, 1800):
        reads.append(dict(chrom="chr1", start=start, reverse=start == 1795, flag=0, mapq=60))
    # Reads exactly on bin edges of gene P: 5' ends at 500 (first base) and 1499 (last base).
    reads.append(dict(chrom="chr1", start=500, reverse=False, flag=0, mapq=60))
    reads.append(dict(chrom="chr1", start=1499 - READ_LEN + 1, reverse=True, flag=0, mapq=60))
    return reads


def write_bam(path, reads, index=True):
    header = {
        "HD": {"VN": "1.6", "SO": "unsorted"},
        "SQ": [{"SN": "chr1", "LN": 10_000}, {"SN": "chr2", "LN": 10_000}],
    }
    unsorted = path.with_suffix(".unsorted.bam")
    with pysam.AlignmentFile(str(unsorted), "wb", header=header) as out:
        for i, r in enumerate(reads):
            a = pysam.AlignedSegment()
            a.query_name = f"r{i}"
            a.query_sequence = "A" * READ_LEN
            a.flag = r["flag"] | (0x10 if r["reverse"] else 0)
            a.reference_id = 0 if r["chrom"] == "chr1" else 1
            a.reference_start = r["start"]
            a.mapping_quality = r["mapq"]
            a.cigarstring = f"{READ_LEN}M"
            a.query_qualities = pysam.qualitystring_to_array("I" * READ_LEN)
            out.write(a)
    pysam.sort("-o", str(path), str(unsorted))
    if index:
        pysam.index(str(path))
    return path


def expected_counts(reads, keep, position="5prime"):
    """Brute force: loop over genes, bins and reads."""
    lo, _ = window_bounds(TSS, WINDOW)
    out = np.zeros((len(TSS), WINDOW.n_bins))
    for g in range(len(TSS)):
        for k in range(WINDOW.n_bins):
            a = lo[g] + k * WINDOW.bin_size
            b = a + WINDOW.bin_size
            for r in reads:
                if r["chrom"] != TSS.chrom[g] or not keep(r):
                    continue
                s, e = r["start"], r["start"] + READ_LEN
                if position == "5prime":
                    five = e - 1 if r["reverse"] else s
                    out[g, k] += a <= five < b
                else:
                    out[g, k] += s < b and e > a
        if TSS.strand[g] == "-":
            out[g] = out[g, ::-1]
    return out


def default_keep(r):
    return not r["flag"] & (0x4 | 0x400 | 0x200 | 0x100 | 0x800)


@pytest.fixture(scope="module")
def bam(tmp_path_factory):
    reads = make_reads()
    d = tmp_path_factory.mktemp("bam")
    return (
        reads,
        write_bam(d / "indexed.bam", reads),
        write_bam(d / "plain.bam", reads, index=False),
    )


def test_default_counts_5prime_ends_without_duplicates_or_qc_failures(bam):
    reads, indexed, plain = bam
    want = expected_counts(reads, default_keep)
    got = count_bam(indexed, TSS, WINDOW)
    assert got.dtype == np.float32 and got.shape == (4, 10)
    assert np.array_equal(got, want)
    assert got.sum() > 50
    # Without an index the whole file is streamed: same answer.
    assert np.array_equal(count_bam(plain, TSS, WINDOW), want)


def test_edge_reads_land_in_first_and_last_bin(tmp_path):
    reads = make_reads()[-2:]
    got = count_bam(write_bam(tmp_path / "e.bam", reads), TSS, WINDOW)
    assert got[0].tolist() == [1] + [0] * 8 + [1]


@pytest.mark.parametrize(
    "options, keep",
    [
        (
            ReadCountOptions(include_duplicates=True),
            lambda r: not r["flag"] & (0x4 | 0x200 | 0x100 | 0x800),
        ),
        (
            ReadCountOptions(include_qc_fail=True),
            lambda r: not r["flag"] & (0x4 | 0x400 | 0x100 | 0x800),
        ),
        (
            ReadCountOptions(include_secondary=True, include_supplementary=True),
            lambda r: not r["flag"] & (0x4 | 0x400 | 0x200),
        ),
        (ReadCountOptions(min_mapq=30), lambda r: default_keep(r) and r["mapq"] >= 30),
    ],
)
def test_flag_and_quality_switches(bam, options, keep):
    reads, indexed, _ = bam
    got = count_bam(indexed, TSS, WINDOW, options)
    want = expected_counts(reads, keep)
    assert np.array_equal(got, want)
    assert not np.array_equal(got, expected_counts(reads, default_keep))


def test_overlap_mode_counts_every_overlapped_bin(bam):
    reads, indexed, plain = bam
    opts = ReadCountOptions(position="overlap")
    want = expected_counts(reads, default_keep, position="overlap")
    assert np.array_equal(count_bam(indexed, TSS, WINDOW, opts), want)
    assert np.array_equal(count_bam(plain, TSS, WINDOW, opts), want)
    # A 36-bp read crosses a 100-bp bin edge about a third of the time.
    assert want.sum() > expected_counts(reads, default_keep).sum()


def write_tagalign(path, reads):
    with gzip.open(path, "wt") as fh:
        for r in reads:
            strand = "-" if r["reverse"] else "+"
            fh.write(f"{r['chrom']}\t{r['start']}\t{r['start'] + READ_LEN}\tN\t1000\t{strand}\n")
    return path


@pytest.mark.parametrize("position", ["5prime", "overlap"])
def test_tagalign_matches_bam_of_the_same_reads(bam, tmp_path, position):
    reads, indexed, _ = bam
    kept = [r for r in reads if default_keep(r)]
    path = write_tagalign(tmp_path / "reads.tagAlign.gz", kept)
    opts = ReadCountOptions(position=position)
    # Tiny chunks exercise the streaming accumulation across chunk boundaries.
    got = count_tagalign(path, TSS, WINDOW, opts, chunk_reads=37)
    assert np.array_equal(got, count_bam(indexed, TSS, WINDOW, opts))


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match="position"):
        ReadCountOptions(position="center")
    bad = tmp_path / "bad.bam"
    bad.write_text("nope")
    with pytest.raises(DataError, match="not a readable BAM"):
        count_bam(bad, TSS, WINDOW)
    ta = tmp_path / "bad.tagAlign"
    ta.write_text("chr1\tx\t5\tN\t0\t+\n")
    with pytest.raises(DataError, match="cannot parse tagAlign"):
        count_tagalign(ta, TSS, WINDOW)
    with pytest.raises(DataError, match="file not found"):
        count_tagalign(tmp_path / "missing.tagAlign.gz", TSS, WINDOW)
