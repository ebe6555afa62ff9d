"""Tests for the DeepChrome CSV reader/writer (histexpr.data.deepchrome)."""

import filecmp
import shutil

import numpy as np
import pytest

from conftest import REPO_ROOT
from histexpr.data.dataset import MARKS, TARGET_LOG2_RPKM, HistoneDataset
from histexpr.data.deepchrome import (
    TARGET_LABEL,
    deepchrome_to_ensg,
    ensg_to_deepchrome,
    iter_deepchrome,
    read_deepchrome,
    read_deepchrome_splits,
    read_split_csv,
    write_deepchrome,
)
from histexpr.datasets import load_expression
from histexpr.errors import DataError

#: A byte-identical copy of ../shared/data/deepchrome/toy shipped with the tests.
TOY = REPO_ROOT / "tests" / "data" / "fixtures" / "deepchrome" / "toy"
needs_toy = pytest.mark.skipif(not TOY.is_dir(), reason=f"real toy files absent: {TOY}")


def _ds(cells=("E003", "E004"), n=5, seed=0):
    rng = np.random.default_rng(seed)
    genes = [f"ENSG{g:011d}" for g in (3, 5, 419, 457, 460, 938, 971)[:n]]
    cell = np.repeat(cells, n)
    X = rng.poisson(2.0, size=(len(cell), 5, 100)).astype(np.float32)
    y = rng.integers(0, 2, len(cell)).astype(np.float32)
    return HistoneDataset(X=X, y=y, cell=cell, gene=np.tile(genes, len(cells)), target=TARGET_LABEL)


def _write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def _gene_lines(gid="000003", label=1, n_bins=100, count=1):
    return [f"{gid},{b},{count},0,0,2,0,{label}" for b in range(1, n_bins + 1)]


def test_id_conversion():
    assert deepchrome_to_ensg(["000003", "172936"]).tolist() == [
        "ENSG00000000003",
        "ENSG00000172936",
    ]
    assert ensg_to_deepchrome(["ENSG00000000003", "3"]).tolist() == ["000003", "000003"]
    with pytest.raises(DataError, match="GeneID 'abc' is neither a number"):
        deepchrome_to_ensg(["abc"])


@needs_toy
def test_real_toy_files_parse():
    for split in ("train", "valid", "test"):
        X, label, gene = read_split_csv(TOY / f"{split}.csv")
        assert X.shape == (10, 5, 100)
        assert set(np.unique(label)) <= {0, 1}
        assert all(g.startswith("ENSG") and len(g) == 15 for g in gene)
        assert (X >= 0).all() and X.sum() > 0
    r = read_deepchrome_splits(TOY, cell="E003")
    assert len(r.data) == 30 and r.data.cells == ["E003"]
    assert r.data.target == TARGET_LABEL and set(np.unique(r.data.y)) == {0.0, 1.0}
    assert np.unique(r.split, return_counts=True)[1].tolist() == [10, 10, 10]
    assert r.data.gene[0] == "ENSG00000000003"
    # Default cell name is the folder name.
    assert read_deepchrome(TOY, splits=("test",)).cells == ["toy"]


@needs_toy
def test_real_toy_rpkm_target_matches_packaged_matrix_and_label():
    ds = read_deepchrome(TOY, cell="E003", target="rpkm")
    lab = read_deepchrome(TOY, cell="E003", target="label")
    expr = load_expression(["E003"])["E003"]
    assert ds.target == TARGET_LOG2_RPKM
    np.testing.assert_allclose(ds.y, expr.loc[ds.gene].to_numpy(), rtol=1e-6)
    # label 1 = above the cell's median RPKM; the toy's cell type is not recorded,
    # so only check that labels and E003 expression agree for most genes.
    median = np.median(expr.to_numpy())
    assert np.mean((ds.y > median) == (lab.y == 1)) >= 0.75
    assert ds.y[lab.y == 1].mean() > ds.y[lab.y == 0].mean() + 1.0


@needs_toy
def test_real_toy_byte_identical_round_trip(tmp_path):
    r = read_deepchrome_splits(TOY, cell="E003")
    write_deepchrome(r.data, tmp_path, dict(zip(r.data.gene, r.split, strict=True)))
    for split in ("train", "valid", "test"):
        assert filecmp.cmp(tmp_path / "E003" / f"{split}.csv", TOY / f"{split}.csv", shallow=False)


def test_round_trip_multi_cell(tmp_path):
    ds = _ds()
    split = {
        g: s for g, s in zip(ds.gene[:5], ["train", "valid", "test", "test", "train"], strict=True)
    }
    write_deepchrome(ds, tmp_path / "dc", split)
    r = read_deepchrome_splits(tmp_path / "dc")
    assert r.data.cells == ["E003", "E004"]
    back = r.data
    order = np.lexsort((back.gene, back.cell))
    ref = np.lexsort((ds.gene, ds.cell))
    np.testing.assert_array_equal(back.X[order], ds.X[ref])
    np.testing.assert_array_equal(back.y[order], ds.y[ref])
    assert dict(zip(back.gene, r.split, strict=True)) == split
    assert read_deepchrome(tmp_path / "dc", cells=["E004"], splits=("test",)).gene.tolist() == [
        "ENSG00000000419",
        "ENSG00000000457",
    ]
    assert [d.data.cells for d in iter_deepchrome(tmp_path / "dc")] == [["E003"], ["E004"]]


def test_continuous_target_written_as_median_label(tmp_path):
    ds = _ds(cells=("E003",))
    ds.y = np.array([0.0, 1.0, 5.0, 6.0, 7.0], np.float32)
    ds.target = TARGET_LOG2_RPKM
    write_deepchrome(ds, tmp_path)
    back = read_deepchrome(tmp_path / "E003")
    assert back.y.tolist() == [0, 0, 0, 1, 1]
    assert (tmp_path / "E003" / "valid.csv").stat().st_size == 0
    assert len(read_deepchrome(tmp_path / "E003", splits=("valid",))) == 0


def test_writer_needs_target_and_split(tmp_path):
    with pytest.raises(DataError, match="needs a target"):
        write_deepchrome(_ds().without_target(), tmp_path)
    with pytest.raises(DataError, match="gene ENSG00000000419 has no split"):
        write_deepchrome(_ds(), tmp_path, {"ENSG00000000003": "train", "ENSG00000000005": "test"})


def test_float_counts_round_trip(tmp_path):
    ds = _ds(cells=("E003",))
    ds.X = ds.X + np.float32(0.1)
    write_deepchrome(ds, tmp_path)
    np.testing.assert_array_equal(read_deepchrome(tmp_path / "E003").X, ds.X)


@pytest.mark.parametrize(
    ("lines", "key", "needle"),
    [
        (_gene_lines()[:99], None, "99 rows is not a multiple of 100"),
        (_gene_lines()[:50] + _gene_lines("000005")[50:], "GeneID", "GeneID changes inside"),
        (
            [*_gene_lines()[:10], _gene_lines()[11], *_gene_lines()[11:]],
            "BinID",
            "does not run 1..100",
        ),
        ([*_gene_lines()[:99], "000003,100,1,0,0,2,0,0"], "label", "label varies across the bins"),
        (_gene_lines(label=2), "label", "label 2 of gene 000003 is not 0 or 1"),
        (_gene_lines(count=-1), None, "negative count at gene 000003, mark 0, bin 0"),
        ([*_gene_lines()[:99], "000003,100,1,0,x,2,0,1"], "H3K4me1", "non-numeric value"),
        ([*_gene_lines()[:99], "000003,100,1,0,,2,0,1"], "H3K4me1", "empty value on line 100"),
        ([line + ",7" for line in _gene_lines()], None, "expected 8 columns"),
    ],
)
def test_malformed_csv(tmp_path, lines, key, needle):
    path = tmp_path / "E003" / "train.csv"
    _write_lines(path, lines)
    with pytest.raises(DataError) as e:
        read_deepchrome(tmp_path / "E003", splits=("train",))
    msg = str(e.value)
    assert str(path) in msg and needle in msg, msg
    if key:
        assert f"[{key}]" in msg


def test_duplicate_genes(tmp_path):
    _write_lines(tmp_path / "E003" / "train.csv", _gene_lines() + _gene_lines())
    with pytest.warns(UserWarning, match="keeping the first"):
        ds = read_deepchrome(tmp_path / "E003", splits=("train",))
    assert len(ds) == 1
    with pytest.raises(DataError, match=r"\[E003\]: gene ENSG00000000003 occurs more than once"):
        read_deepchrome(tmp_path / "E003", splits=("train",), duplicates="error")


def test_rpkm_missing_genes(tmp_path):
    _write_lines(tmp_path / "E003" / "train.csv", _gene_lines() + _gene_lines("999999"))
    with pytest.raises(
        DataError, match=r"\[E003\]: 1 gene\(s\) not in the Roadmap RPKM.*ENSG00000999999"
    ):
        read_deepchrome(tmp_path, splits=("train",), target="rpkm")
    with pytest.warns(UserWarning, match="dropped"):
        ds = read_deepchrome(tmp_path, splits=("train",), target="rpkm", missing="drop")
    assert ds.gene.tolist() == ["ENSG00000000003"]
    (tmp_path / "E003").rename(tmp_path / "notacell")
    with pytest.raises(DataError, match=r"\[notacell\]: no packaged RPKM"):
        read_deepchrome(tmp_path, splits=("train",), target="rpkm", missing="drop")


def test_layout_errors(tmp_path):
    with pytest.raises(DataError, match=r"no train\.csv/valid\.csv/test\.csv"):
        read_deepchrome(tmp_path)
    _write_lines(tmp_path / "E003" / "train.csv", _gene_lines())
    # any subset of the three files may be present
    assert read_deepchrome(tmp_path).split.tolist() == ["train"]
    with pytest.raises(DataError, match=r"E003 \[E003\]: none of test.csv"):
        read_deepchrome(tmp_path, splits=("test",))
    with pytest.raises(DataError, match=r"\[E777\]: cell type\(s\) not in file"):
        read_deepchrome(tmp_path, cells=["E777"], splits=("train",))
    with pytest.raises(DataError, match="target must be one of"):
        read_deepchrome(tmp_path, target="rpm")
    assert read_deepchrome(tmp_path, splits=("train",), target="none").y is None


@needs_toy
def test_toy_copy_as_cell_folders(tmp_path):
    for c in ("E003", "E004"):
        shutil.copytree(TOY, tmp_path / c)
    ds = read_deepchrome(tmp_path, target="rpkm")
    assert ds.cells == ["E003", "E004"] and len(ds) == 60
    assert ds.marks == MARKS
    assert not np.array_equal(ds.y[:30], ds.y[30:])  # per-cell RPKM column


# --- the split field and the layouts of issue 13 ------------------------------------------


@needs_toy
def test_split_field_comes_from_the_file_names():
    ds = read_deepchrome(TOY)
    assert ds.splits == {"train": 10, "valid": 10, "test": 10}
    test = ds.select_split("test")
    np.testing.assert_array_equal(test.gene, read_deepchrome(TOY, splits=("test",)).gene)
    with pytest.raises(DataError, match=r"split.*not in data"):
        ds.select_split("holdout")
    with pytest.raises(DataError, match="no split field"):
        _ds().select_split("train")


@needs_toy
def test_archive_layout_takes_the_cell_from_the_right_folder(tmp_path):
    for c in ("E003", "E005"):
        shutil.copytree(TOY, tmp_path / c / "classification")
    ds = read_deepchrome(tmp_path)
    assert ds.cells == ["E003", "E005"] and len(ds) == 60
    one = read_deepchrome(tmp_path / "E005" / "classification")
    assert one.cells == ["E005"]
    assert read_deepchrome(tmp_path / "E005" / "classification", cell="E116").cells == ["E116"]
    from histexpr.data.convert import detect_format, load_dataset

    assert detect_format(tmp_path) == "deepchrome"
    assert load_dataset(tmp_path).splits == {"train": 20, "valid": 20, "test": 20}


def test_ensg_gene_ids_and_a_header_row(tmp_path):
    lines = [f"ENSG00000000938,{b},1,0,0,2,0,1" for b in range(1, 101)]
    _write_lines(
        tmp_path / "train.csv",
        ["GeneID,BinID,H3K27me3,H3K36me3,H3K4me1,H3K4me3,H3K9me3,label", *lines],
    )
    _write_lines(tmp_path / "test.csv", _gene_lines("000003", label=0))
    ds = read_deepchrome(tmp_path, cell="E003")
    assert ds.gene.tolist() == ["ENSG00000000938", "ENSG00000000003"]
    assert ds.split.tolist() == ["train", "test"]
    assert deepchrome_to_ensg(["ENSG00000000938.4", "938"]).tolist() == ["ENSG00000000938"] * 2
    with pytest.raises(DataError, match="neither a number nor an ENSG id"):
        deepchrome_to_ensg(["TP53"])


@needs_toy
def test_split_survives_conversion_to_hdf5(tmp_path):
    from histexpr.data.convert import convert, load_dataset

    convert(TOY, tmp_path / "toy.h5", progress=False)
    back = load_dataset(tmp_path / "toy.h5")
    orig = read_deepchrome(TOY)
    np.testing.assert_array_equal(back.split, orig.split)
    np.testing.assert_array_equal(back.select_split("valid").X, orig.select_split("valid").X)
