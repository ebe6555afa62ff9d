"""TSS reading (GTF, packaged table, BED, headed tables) and window geometry."""

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA, real_data
from histexpr.errors import DataError
from histexpr.featurize.annotation import (
    TssTable,
    Window,
    orient,
    read_tss,
    tss_from_frame,
    window_bounds,
)

SHARED = SHARED_DATA
GTF = SHARED / "roadmap" / "gencode_10_genes.gtf.gz"
DEMO_META = real_data("chromoformer_demo") / "demo_meta.csv"


@pytest.mark.skipif(not GTF.exists(), reason=f"real GTF not available at {GTF}")
def test_gtf_and_packaged_table_give_the_same_tss():
    from_gtf = read_tss(GTF)
    packaged = read_tss()
    assert len(from_gtf) == len(packaged) == 43575
    a = from_gtf.to_frame().set_index("gene_id").sort_index()
    b = packaged.to_frame().set_index("gene_id").sort_index()
    pd.testing.assert_frame_equal(a, b)
    # Gene ids lose their version suffix so they join with the RPKM matrix.
    assert not any("." in g for g in from_gtf.gene_id)


def test_packaged_table_uses_gene_end_for_minus_strand():
    t = read_tss().to_frame().set_index("name")
    # GTF gene records: WRAP73 chr1:3547331-3569325 (-), PRDM2 chr1:14026693-14151560 (+), 1-based.
    assert t.loc["WRAP73", "tss"] == 3569325 - 1
    assert t.loc["PRDM2", "tss"] == 14026693 - 1


@pytest.mark.skipif(not DEMO_META.exists(), reason=f"demo data not available at {DEMO_META}")
def test_one_base_bed_style_table_is_detected():
    meta = pd.read_csv(DEMO_META)
    t = read_tss(DEMO_META)
    assert np.array_equal(t.tss, meta["start"].to_numpy())
    assert set(t.strand) == {"+", "-"}


def test_bed_and_tss_column_tables(tmp_path):
    bed = tmp_path / "genes.bed"
    bed.write_text("chr1\t100\t200\tG1\t0\t+\nchr1\t300\t400\tG2\t0\t-\n")
    t = read_tss(bed)
    assert list(t.tss) == [100, 399]
    tsv = tmp_path / "tss.tsv"
    tsv.write_text("chrom\ttss\tstrand\tgene_id\nchr2\t50\t-\tG3.4\n")
    t = read_tss(tsv)
    assert list(t.tss) == [50] and list(t.gene_id) == ["G3"] and list(t.name) == ["G3"]
    # Explicit coords override the auto-detection of spans.
    df = pd.DataFrame(
        {"chrom": ["c"], "start": [10], "end": [20], "strand": ["-"], "gene_id": ["g"]}
    )
    assert tss_from_frame(df, coords="bed").tss[0] == 19
    assert tss_from_frame(df, coords="gtf").tss[0] == 19
    df["strand"] = "+"
    assert tss_from_frame(df, coords="bed").tss[0] == 10
    assert tss_from_frame(df, coords="gtf").tss[0] == 9


def test_bad_tables_raise_one_line_errors(tmp_path):
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("chrom\tstart\tgene_id\nchr1\t5\tg\n")
    with pytest.raises(DataError, match="strand"):
        read_tss(tsv)
    with pytest.raises(DataError, match="duplicate gene id g"):
        TssTable(["c", "c"], [1, 2], ["+", "+"], ["g", "g"], ["a", "b"])
    with pytest.raises(DataError, match="strand must be"):
        TssTable(["c"], [1], ["."], ["g"], ["a"])
    with pytest.raises(DataError, match="file not found"):
        read_tss(tmp_path / "nope.gtf")
    with pytest.raises(DataError, match="divisible"):
        Window(5000, 5000, 99)


def test_minus_window_is_the_mirror_image_of_the_plus_window():
    t = TssTable(["c", "c"], [20_000, 20_000], ["+", "-"], ["p", "m"], ["p", "m"])
    w = Window()
    lo, hi = window_bounds(t, w)
    assert (lo[0], hi[0]) == (15_000, 25_000)
    assert (lo[1], hi[1]) == (15_001, 25_001)
    # Reflecting base x to 2*tss - x maps one window onto the other.
    plus_bases = np.arange(lo[0], hi[0])
    assert set(2 * 20_000 - plus_bases) == set(range(lo[1], hi[1]))
    # Asymmetric windows: upstream means before the TSS in transcription direction.
    w = Window(upstream=2000, downstream=3000, n_bins=50)
    lo, hi = window_bounds(t, w)
    assert (lo[0], hi[0]) == (18_000, 23_000)
    assert (lo[1], hi[1]) == (17_001, 22_001)
    assert w.bin_size == 100


def test_orient_flips_only_minus_strand_genes():
    t = TssTable(["c", "c"], [0, 0], ["+", "-"], ["p", "m"], ["p", "m"])
    binned = np.arange(6).reshape(2, 3)
    out = orient(binned, t)
    assert out.tolist() == [[0, 1, 2], [5, 4, 3]]
    assert binned.tolist() == [[0, 1, 2], [3, 4, 5]]
