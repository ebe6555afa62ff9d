"""bigWig binning reproduces direct binning of real per-base ChIP-seq coverage.

The Chromoformer demo arrays hold, per gene, per-base read depth over
``[TSS - 20000, TSS + 20000)`` (0-based, half-open; the file name is
``chrom:lo-hi``; ``demo_meta.csv`` gives the TSS as a one-base BED record), so
array index ``20000`` is the TSS base. The test writes them into bigWig files
(run-length encoded, zero runs left out as "no data") and checks that
``bin_bigwig`` equals binning the arrays directly.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import real_data
from histexpr.data.dataset import MARKS
from histexpr.errors import DataError
from histexpr.featurize.annotation import TssTable, Window, read_tss
from histexpr.featurize.bigwig import bigwig_chroms, bin_bigwig

pyBigWig = pytest.importorskip("pyBigWig")

DEMO = real_data("chromoformer_demo")  # the shipped fixture (6 genes) without ../shared
DEMO_MARKS = ("H3K4me1", "H3K4me3", "H3K9me3", "H3K27me3", "H3K36me3", "H3K27ac", "H3K9ac")
FLANK = 20_000


def write_bigwig(path, chrom_sizes: dict, blocks: dict) -> None:
    """Write per-base ``blocks[chrom] = [(start, values), ...]`` as a run-length bigWig."""
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(chrom_sizes.items()))
    for chrom in chrom_sizes:
        starts, ends, vals = [], [], []
        for start, values in sorted(blocks.get(chrom, []), key=lambda b: b[0]):
            v = np.asarray(values, dtype=np.float32)
            cut = np.flatnonzero(np.diff(v) != 0) + 1
            lo = np.concatenate([[0], cut])
            hi = np.concatenate([cut, [len(v)]])
            keep = v[lo] != 0
            starts.append(start + lo[keep])
            ends.append(start + hi[keep])
            vals.append(v[lo][keep])
        if starts:
            bw.addEntries(
                [chrom] * int(sum(len(s) for s in starts)),
                np.concatenate(starts).astype(np.int64).tolist(),
                ends=np.concatenate(ends).astype(np.int64).tolist(),
                values=np.concatenate(vals).astype(float).tolist(),
            )
    bw.close()


def load_demo():
    """Real arrays by gene, the TSS table and the promoter bigWigs' blocks per mark."""
    meta = pd.read_csv(DEMO / "demo_meta.csv")
    tss = read_tss(DEMO / "demo_meta.csv")
    arrays = {}
    packed = DEMO / "promoters.npz"  # the fixture packs the per-gene .npy files
    store = np.load(packed, allow_pickle=False) if packed.is_file() else None
    for g, chrom, start in zip(meta["gene_id"], meta["chrom"], meta["start"], strict=True):
        name = f"{chrom}:{start - FLANK}-{start + FLANK}"
        arrays[g] = (
            store[name] if store is not None else np.load(DEMO / "promoters" / f"{name}.npy")
        )
    return meta, tss, arrays


def build_demo_bigwigs(directory: Path, meta, arrays) -> dict[str, Path]:
    sizes = (meta.groupby("chrom")["start"].max() + FLANK + 1000).to_dict()
    paths = {}
    for mark in MARKS:
        j = DEMO_MARKS.index(mark)
        blocks: dict = {}
        for g, chrom, start in zip(meta["gene_id"], meta["chrom"], meta["start"], strict=True):
            blocks.setdefault(chrom, []).append((start - FLANK, arrays[g][j]))
        paths[mark] = directory / f"E003-{mark}.bigWig"
        write_bigwig(paths[mark], sizes, blocks)
    return paths


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    if not (DEMO / "demo_meta.csv").exists():
        pytest.skip(f"real demo arrays not available at {DEMO}")
    meta, tss, arrays = load_demo()
    paths = build_demo_bigwigs(tmp_path_factory.mktemp("bw"), meta, arrays)
    return meta, tss, arrays, paths


def direct_binning(arr: np.ndarray, strand: str, window: Window) -> np.ndarray:
    """Bin a per-base array (index FLANK = TSS base) the way the docs define it."""
    if strand == "+":
        lo = FLANK - window.upstream
    else:
        lo = FLANK - window.downstream + 1
    seg = arr[..., lo : lo + window.width].astype(np.float64)
    binned = seg.reshape(*arr.shape[:-1], window.n_bins, window.bin_size).sum(-1)
    return (binned if strand == "+" else binned[..., ::-1]).astype(np.float32)


@pytest.mark.parametrize("window", [Window(), Window(upstream=2000, downstream=3000, n_bins=25)])
def test_bigwig_matches_direct_binning_of_real_arrays(demo, window):
    meta, tss, arrays, paths = demo
    strands = dict(zip(meta["gene_id"], meta["strand"], strict=True))
    assert {"+", "-"} <= set(strands.values())
    for mark, path in paths.items():
        got = bin_bigwig(path, tss, window)
        assert got.shape == (len(tss), window.n_bins) and got.dtype == np.float32
        j = DEMO_MARKS.index(mark)
        want = np.stack([direct_binning(arrays[g][j], strands[g], window) for g in tss.gene_id])
        assert np.array_equal(got, want), mark
        assert got.sum() > 0


def test_strand_flip_is_exactly_a_reversal(demo):
    _, tss, _, paths = demo
    path = paths["H3K4me3"]
    minus = tss.strand == "-"
    as_plus = TssTable(tss.chrom, tss.tss, np.full(len(tss), "+"), tss.gene_id, tss.name)
    got = bin_bigwig(path, tss)
    # A minus-strand gene's window is shifted by +1 base relative to the plus one,
    # so compare the minus genes with a plus-strand table whose TSS is shifted by 1.
    shifted = TssTable(tss.chrom, tss.tss + 1, as_plus.strand, tss.gene_id, tss.name)
    assert np.array_equal(got[minus], bin_bigwig(path, shifted)[minus][:, ::-1])
    assert np.array_equal(got[~minus], bin_bigwig(path, as_plus)[~minus])


def test_chromosome_edges_and_absent_chromosomes_count_zero(tmp_path):
    path = tmp_path / "t.bw"
    write_bigwig(path, {"chrA": 3000}, {"chrA": [(0, np.ones(3000))]})
    assert bigwig_chroms(path) == {"chrA": 3000}
    tss = TssTable(
        ["chrA", "chrA", "chrZ"],
        [1000, 2500, 10],
        ["+", "-", "+"],
        ["a", "b", "z"],
        ["a", "b", "z"],
    )
    got = bin_bigwig(path, tss, Window(upstream=2000, downstream=2000, n_bins=40))
    # Gene a: window [-1000, 3000) -> 10 bins before the chromosome start are 0.
    assert got[0].tolist() == [0.0] * 10 + [100.0] * 30
    # Gene b (minus): window [501, 4501) -> reference bins past 3000 are 0, then flipped.
    ref_order = [100.0] * 25 + [0.0] * 15
    ref_order[24] = 99.0  # [2901, 3001): one base past the end
    assert got[1].tolist() == ref_order[::-1]
    assert got[2].sum() == 0


def test_not_a_bigwig_is_a_data_error(tmp_path):
    bad = tmp_path / "x.bw"
    bad.write_text("not a bigwig")
    tss = TssTable(["c"], [0], ["+"], ["g"], ["g"])
    with pytest.raises(DataError, match="not a bigWig"):
        bin_bigwig(bad, tss)


def test_missing_optional_dependency_names_the_extra():
    from histexpr.errors import HistexprError
    from histexpr.featurize.bigwig import require

    with pytest.raises(HistexprError, match=r"histexpr\[featurize\]"):
        require("histexpr_no_such_module")


def write_demo_bigwigs(folder):
    """Write every mark of the real per-base demo genes as a bigWig in ``folder``.

    Returns ``(meta, specs)``: the demo's gene table and the ``--mark MARK=PATH``
    arguments of ``histexpr featurize`` for the written files.
    """
    meta, _, arrays = load_demo()
    sizes = (meta.groupby("chrom")["start"].max() + FLANK + 1000).to_dict()
    specs = []
    for j, mark in enumerate(DEMO_MARKS):
        blocks: dict = {}
        for g, chrom, start in zip(meta["gene_id"], meta["chrom"], meta["start"], strict=True):
            blocks.setdefault(chrom, []).append((start - FLANK, arrays[g][j]))
        write_bigwig(folder / f"{mark}.bw", sizes, blocks)
        specs += ["--mark", f"{mark}={folder / f'{mark}.bw'}"]
    return meta, specs
