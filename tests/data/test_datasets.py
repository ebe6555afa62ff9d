import numpy as np
import pandas as pd

from histexpr import datasets


def test_packaged_rpkm_matches_reference(shared_data):
    ours = datasets.load_rpkm()
    ref = pd.read_csv(
        shared_data / "roadmap" / "57epigenomes.RPKM.pc.gz", sep="\t", index_col=False
    ).set_index("gene_id")
    assert ours.shape == (19795, 56)
    assert list(ours.columns) == list(datasets.DEEPCHROME_CELLS)
    np.testing.assert_allclose(ours.to_numpy(), ref[list(ours.columns)].to_numpy(), rtol=1e-6)


def test_expression_is_log2_rpkm_plus_one():
    rpkm = datasets.load_rpkm(["E003"])
    expr = datasets.load_expression(["E003"])
    np.testing.assert_allclose(expr.to_numpy(), np.log2(rpkm.to_numpy() + 1), rtol=1e-5, atol=1e-6)


def test_cell_sets():
    assert len(datasets.DEEPCHROME_CELLS) == 56
    assert len(datasets.TRAIN_CELLS) == 50
    assert set(datasets.UNSEEN_CELLS) <= set(datasets.DEEPCHROME_CELLS)
    meta = datasets.load_epigenomes()
    assert set(datasets.DEEPCHROME_CELLS) <= set(meta.index)
    assert meta.loc["E003", "mnemonic"].startswith("ESC")


def test_deepchrome_gene_list_and_split(shared_data):
    genes = datasets.deepchrome_genes()
    ref = [
        g.strip() for g in (shared_data / "deepchrome" / "gene_list.txt").read_text().splitlines()
    ]
    assert list(genes) == ref
    split = datasets.deepchrome_split()
    for name, fname in (("train", "train"), ("valid", "val"), ("test", "test")):
        idx = np.loadtxt(shared_data / "deepchrome" / "splits" / f"iteration_0_{fname}.csv").astype(
            int
        )
        np.testing.assert_array_equal(split[name], idx)


def test_tss_table():
    tss = datasets.load_tss()
    assert {"chrom", "start", "end", "strand", "gene_id"} <= set(tss.columns)
    assert set(tss.strand) <= {"+", "-"}
    assert tss.gene_id.is_unique


def test_simulator_reachable_from_datasets():
    from histexpr import simulator

    assert datasets.simulate is simulator.simulate
    assert datasets.oracle_predict is simulator.oracle_predict
    assert set(datasets.DEFAULT_UNSEEN_CELLS) <= set(datasets.UNSEEN_CELLS)
