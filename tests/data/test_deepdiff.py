"""DeepDiffChrome folders: write, read back, detection, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_planted
from histexpr.data.convert import detect_format, load_dataset
from histexpr.data.dataset import HistoneDataset
from histexpr.data.deepdiff import (
    DEEPDIFF_MARKS,
    TARGET_LOG2_COUNT,
    is_deepdiff,
    parse_names,
    read_deepdiff,
    write_deepdiff,
)
from histexpr.errors import DataError


def planted(n_genes=12, cells=("E003", "E004"), n_bins=20, seed=0) -> HistoneDataset:
    """Planted counts cut to ``n_bins`` bins, expression >= 0, a train/valid/test split."""
    ds = make_planted(n_genes, cells, seed)
    split = np.array(["train", "valid", "test"])[np.arange(len(ds)) % 3]
    return HistoneDataset(
        ds.X[:, :, 40 : 40 + n_bins], np.abs(ds.y), ds.cell, ds.gene, marks=ds.marks, split=split
    )


def sort_by(ds):
    order = np.lexsort((ds.gene, ds.cell))
    return ds.subset(order)


def test_write_read_round_trip_keeps_arrays_split_and_reorders_marks(tmp_path):
    ds = planted()
    write_deepdiff(ds, tmp_path)
    assert is_deepdiff(tmp_path) and detect_format(tmp_path) == "deepdiff"
    # the files hold DeepDiff's column order: H3K4me1 first
    first = (tmp_path / "E003.train.csv").read_text().splitlines()[0].split(",")
    g0 = ds.subset(np.flatnonzero((ds.cell == "E003") & (ds.split == "train")))
    k4me1 = ds.marks.index(DEEPDIFF_MARKS[0])
    assert float(first[1]) == g0.X[0, k4me1, 0]
    back = read_deepdiff(tmp_path)
    assert back.marks == ds.marks and back.n_bins == 20 and back.target == TARGET_LOG2_COUNT
    a, b = sort_by(ds), sort_by(back)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_allclose(a.y, b.y, atol=1e-4)
    np.testing.assert_array_equal(a.split, b.split)
    np.testing.assert_array_equal(a.gene, b.gene)
    # load_dataset reads it too, with names mapped to cell ids
    loaded = load_dataset(tmp_path, names={"E003": "A", "E004": "B"})
    assert sorted(loaded.cells) == ["A", "B"] and len(loaded) == len(ds)


def test_names_parsing_and_unknown_names(tmp_path):
    assert parse_names("x=E003, y=E004") == {"x": "E003", "y": "E004"}
    for bad in ("x", "x=", "x=A,x=B", "x=A,y=A"):
        with pytest.raises(DataError):
            parse_names(bad)
    write_deepdiff(planted(), tmp_path)
    with pytest.raises(DataError, match=r"no Z\.expr\.csv"):
        load_dataset(tmp_path, names="Z=E009")


def test_load_dataset_target_no_and_cells(tmp_path):
    write_deepdiff(planted(cells=("E003", "E004", "E005")), tmp_path)
    ds = load_dataset(tmp_path, cells=["E005"], target="no")
    assert ds.cells == ["E005"] and ds.y is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty file"),
        ("G1_1,1,2,3\n", "columns"),
        ("G1_1,1,2,3,4,x\n", "counts must be numbers"),
        ("G1_1,1,2,3,4,5\nG1_2,1,2,3,4,5\nG2_1,1,2,3,4,5\n", "not a multiple"),
    ],
)
def test_bad_split_file_is_one_line(tmp_path, content, message):
    (tmp_path / "C.expr.csv").write_text("G1,5\nG2,3\n")
    (tmp_path / "C.train.csv").write_text(content)
    with pytest.raises(DataError, match=message) as info:
        read_deepdiff(tmp_path)
    assert "\n" not in str(info.value)


def test_bad_expression_and_missing_gene(tmp_path):
    (tmp_path / "C.train.csv").write_text("G1_1,1,2,3,4,5\nG1_2,1,2,3,4,5\n")
    (tmp_path / "C.expr.csv").write_text("G1,-5\n")
    with pytest.raises(DataError, match="non-negative"):
        read_deepdiff(tmp_path)
    (tmp_path / "C.expr.csv").write_text("G2,5\n")
    with pytest.raises(DataError, match="no expression"):
        read_deepdiff(tmp_path)


def test_write_refuses_what_deepdiff_cannot_hold(tmp_path):
    ds = planted()
    with pytest.raises(DataError, match="no targets"):
        write_deepdiff(ds.without_target(), tmp_path)
    neg = HistoneDataset(ds.X, ds.y - 100, ds.cell, ds.gene, marks=ds.marks)
    with pytest.raises(DataError, match="< 0"):
        write_deepdiff(neg, tmp_path)
    under = HistoneDataset(ds.X, ds.y, ds.cell, np.char.add(ds.gene, "_x"), marks=ds.marks)
    with pytest.raises(DataError, match="contains '_'"):
        write_deepdiff(under, tmp_path)
