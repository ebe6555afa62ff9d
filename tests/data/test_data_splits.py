"""Tests for gene and cell-type splits (histexpr.data.splits)."""

import numpy as np
import pytest

from histexpr.data.dataset import HistoneDataset
from histexpr.data.splits import (
    CellSplit,
    GeneSplit,
    apply_split,
    cell_folds,
    holdout_cells,
    split_genes,
)
from histexpr.datasets import DEEPCHROME_CELLS, UNSEEN_CELLS, deepchrome_genes, load_tss
from histexpr.errors import DataError


def _genes(n=100):
    return [f"ENSG{i:011d}" for i in range(n)]


def _check_partition(s: GeneSplit, genes):
    parts = [set(p.tolist()) for p in s.parts().values()]
    assert sum(len(p) for p in parts) == len(set(genes))
    assert set().union(*parts) == set(genes)


def test_random_split_sizes_deterministic_and_disjoint():
    genes = _genes(100) * 3  # repeats (one per cell type) collapse
    a = split_genes(genes, seed=1)
    b = split_genes(list(reversed(genes)), seed=1)
    c = split_genes(genes, seed=2)
    _check_partition(a, genes)
    assert (len(a.train), len(a.valid), len(a.test)) == (60, 20, 20)
    assert all(
        np.array_equal(x, y) for x, y in zip(a.parts().values(), b.parts().values(), strict=True)
    )
    assert not np.array_equal(a.test, c.test)
    s = split_genes(genes, valid_fraction=0.1, test_fraction=0.0)
    assert (len(s.train), len(s.valid), len(s.test)) == (90, 10, 0)
    with pytest.raises(DataError, match="sum to less than 1"):
        split_genes(genes, valid_fraction=0.5, test_fraction=0.5)
    with pytest.raises(DataError, match="unknown split method"):
        split_genes(genes, method="alphabetical")


def test_deepchrome_split_follows_file_order():
    order = deepchrome_genes()
    genes = [order[0], order[6600], order[6601], order[13201], order[13202], order[-1]]
    s = split_genes(genes, method="deepchrome")
    assert set(s.train) == {order[0], order[6600]}
    assert set(s.valid) == {order[6601], order[13201]}
    assert set(s.test) == {order[13202], order[-1]}
    # Course-style integer ids map to the same genes.
    ints = [str(int(g[4:])) for g in genes]
    assert set(split_genes(ints, method="deepchrome").test) == {ints[4], ints[5]}
    with pytest.raises(DataError, match=r"1 gene\(s\) not in DeepChrome's gene list"):
        split_genes([*genes, "ENSG99999999999"], method="deepchrome")
    full = split_genes(order, method="deepchrome")
    # 7 repeated ids on adjacent rows: 2 in train, 2 in valid, 3 in test.
    assert (len(full.train), len(full.valid), len(full.test)) == (6601 - 2, 6601 - 2, 6600 - 3)


def test_chromosome_split():
    tss = load_tss().drop_duplicates("gene_id")
    sample = tss.groupby("chrom").head(3)
    s = split_genes(
        sample["gene_id"], method="chromosome", valid_chroms=("chr2",), test_chroms=("chrX", "chr1")
    )
    chrom = dict(zip(sample["gene_id"], sample["chrom"], strict=True))
    assert {chrom[g] for g in s.valid} == {"chr2"}
    assert {chrom[g] for g in s.test} == {"chr1", "chrX"}
    assert not {chrom[g] for g in s.train} & {"chr1", "chr2", "chrX"}
    _check_partition(s, sample["gene_id"].tolist())
    with pytest.raises(DataError, match="both valid and test"):
        split_genes(
            sample["gene_id"], method="chromosome", valid_chroms=("chr1",), test_chroms=("chr1",)
        )
    with pytest.raises(DataError, match="not in the GENCODE v10 TSS table"):
        split_genes(["ENSG99999999999"], method="chromosome")


def test_holdout_cells():
    s = holdout_cells(DEEPCHROME_CELLS)
    assert isinstance(s, CellSplit)
    assert s.test_cells == tuple(c for c in DEEPCHROME_CELLS if c in UNSEEN_CELLS)
    assert len(s.train_cells) == 50 and not set(s.train_cells) & set(s.test_cells)
    assert holdout_cells(["a", "b", "c"], ["b"]) == CellSplit(("a", "c"), ("b",))
    with pytest.raises(DataError, match="not in data: z"):
        holdout_cells(["a", "b"], ["z"])
    with pytest.raises(DataError, match="no cell type left"):
        holdout_cells(["a"], ["a"])


def test_cell_folds_balanced_deterministic():
    folds = cell_folds(DEEPCHROME_CELLS, k=3, seed=0)
    assert sorted(len(f) for f in folds) == [18, 19, 19]
    flat = [c for f in folds for c in f]
    assert sorted(flat) == sorted(DEEPCHROME_CELLS) and len(set(flat)) == 56
    assert folds == cell_folds(list(reversed(DEEPCHROME_CELLS)), k=3, seed=0)
    assert folds != cell_folds(DEEPCHROME_CELLS, k=3, seed=1)
    with pytest.raises(DataError, match="k=1 folds"):
        cell_folds(DEEPCHROME_CELLS, k=1)
    with pytest.raises(DataError, match="k=4 folds"):
        cell_folds(["a", "b", "c"], k=4)


def test_apply_split():
    genes = _genes(10)
    ds = HistoneDataset(
        X=np.zeros((30, 5, 100)),
        y=np.arange(30.0),
        cell=np.repeat(["E1", "E2", "E3"], 10),
        gene=np.tile(genes, 3),
    )
    parts = apply_split(ds, split_genes(genes, seed=0))
    assert sum(len(p) for p in parts.values()) == 30
    assert not set(parts["train"].gene) & set(parts["test"].gene)
    assert all(len(p.cells) == 3 for p in parts.values())
    cp = apply_split(ds, holdout_cells(ds.cells, ["E2"]))
    assert cp["test"].cells == ["E2"] and cp["train"].cells == ["E1", "E3"]


def test_gene_folds_partition_distinct_genes():
    from histexpr.data.splits import gene_folds

    genes = np.repeat([f"g{i}" for i in range(23)], 3)  # one example per gene and cell
    folds = gene_folds(genes, 5, seed=1)
    assert sorted(len(f) for f in folds) == [4, 4, 5, 5, 5]
    assert sorted(np.concatenate(folds)) == sorted(set(genes))
    assert all(
        np.array_equal(a, b) for a, b in zip(folds, gene_folds(genes[::-1], 5, 1), strict=True)
    )
    with pytest.raises(DataError):
        gene_folds(genes, 24)
