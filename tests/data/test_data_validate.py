"""Tests for histexpr.data.validate: every check names file, key and problem."""

import numpy as np
import pytest

from histexpr.data.dataset import MARKS, HistoneDataset
from histexpr.data.validate import (
    check_constant_over_bins,
    check_counts,
    check_keys,
    check_marks,
    check_target,
    check_unique_examples,
    check_unique_genes,
    validate_dataset,
)
from histexpr.errors import DataError


def _ds(n=4, cells=("E003",)):
    rng = np.random.default_rng(0)
    cell = np.repeat(cells, n)
    gene = np.tile([f"g{i}" for i in range(n)], len(cells))
    X = rng.poisson(2.0, size=(len(cell), 5, 100)).astype(np.float32)
    return HistoneDataset(X=X, y=rng.normal(size=len(cell)), cell=cell, gene=gene)


def test_valid_data_pass():
    ds = _ds(cells=("E003", "E004"))
    assert validate_dataset(ds, "f.h5") is ds
    check_marks(MARKS)
    check_counts(ds.X.astype(np.int32))


@pytest.mark.parametrize(
    ("X", "needle"),
    [
        (np.zeros((2, 5, 99)), "expected 100 bins, found 99"),
        (np.zeros((2, 4, 100)), "expected 5 marks, found 4"),
        (np.zeros((2, 500)), "3-d"),
    ],
)
def test_check_counts_shape(X, needle):
    with pytest.raises(DataError) as e:
        check_counts(X, "data.npz", "E005")
    msg = str(e.value)
    assert msg.startswith("data.npz [E005]: ") and needle in msg
    assert "\n" not in msg


def test_check_counts_values_name_gene_mark_bin():
    X = np.ones((3, 5, 100), np.float32)
    X[1, 2, 7] = np.nan
    with pytest.raises(
        DataError, match=r"f\.npz \[E003\]: NaN or infinite count at gene b, mark 2, bin 7"
    ):
        check_counts(X, "f.npz", "E003", genes=["a", "b", "c"])
    X[1, 2, 7] = np.inf
    with pytest.raises(DataError, match="NaN or infinite"):
        check_counts(X, "f.npz", "E003")
    X[1, 2, 7] = 1
    X[2, 0, 0] = -1
    with pytest.raises(DataError, match=r"negative count at row 2, mark 0, bin 0"):
        check_counts(X, "f.npz", "E003")


def test_check_target():
    check_target(np.array([0.0, 1.0]), 2)
    with pytest.raises(DataError, match=r"p \[E1\]: NaN or infinite target at gene y"):
        check_target(np.array([0.0, np.nan]), 2, "p", "E1", genes=["x", "y"])
    with pytest.raises(DataError, match="shape"):
        check_target(np.zeros(3), 2, "p", "E1")


def test_check_constant_over_bins():
    v = np.tile(np.arange(3.0)[:, None], (1, 100))
    check_constant_over_bins(v, "expression")
    v[2, 50] += 0.5
    with pytest.raises(
        DataError, match=r"t\.npz \[E7\]: expression varies across the bins of gene c"
    ):
        check_constant_over_bins(v, "expression", "t.npz", "E7", genes=["a", "b", "c"])


def test_check_marks_cases():
    with pytest.raises(DataError, match=r"x\.h5 \[marks\]: unknown mark name\(s\) H3K27ac"):
        check_marks(["H3K27ac", *MARKS[1:]], "x.h5")
    with pytest.raises(DataError, match="unknown mark order"):
        check_marks(list(reversed(MARKS)), "x.h5")
    with pytest.raises(DataError, match="duplicated mark"):
        check_marks([*MARKS[:4], MARKS[0]], "x.h5")
    with pytest.raises(DataError, match="missing mark"):
        check_marks(MARKS[:4], "x.h5")


def test_duplicates():
    check_unique_examples(["E1", "E2"], ["g", "g"])
    with pytest.raises(DataError, match=r"f \[E2\]: duplicated example\(s\): gene g"):
        check_unique_examples(["E1", "E2", "E2"], ["g", "g", "g"], "f")
    with pytest.raises(DataError, match=r"f \[E9\]: duplicated gene id\(s\) 7"):
        check_unique_genes(["7", "8", "7"], "f", "E9")
    ds = _ds()
    ds.gene[1] = ds.gene[0]
    with pytest.raises(DataError, match="duplicated example"):
        validate_dataset(ds, "a.h5")


def test_check_keys():
    assert check_keys(["a", "b"], None) == ["a", "b"]
    assert check_keys(["a", "b"], ["b"]) == ["b"]
    with pytest.raises(DataError, match=r"f \[zz\]: cell type\(s\) not in file: zz"):
        check_keys(["a", "b"], ["zz"], "f")
    with pytest.raises(DataError, match="requested twice"):
        check_keys(["a"], ["a", "a"], "f")


def test_validate_dataset_problems():
    ds = _ds()
    ds.X[0, 0, 0] = -3
    with pytest.raises(DataError, match=r"^d\.h5 \[E003\]: negative count"):
        validate_dataset(ds, "d.h5")
    ds = _ds()
    ds.y[2] = np.nan
    with pytest.raises(DataError, match="NaN or infinite target at gene g2"):
        validate_dataset(ds, "d.h5")
    ds = _ds()
    with pytest.raises(DataError, match="expected 50 bins"):
        validate_dataset(ds, "d.h5", n_bins=50)
    validate_dataset(ds.subset(slice(0, 0)), "d.h5")
