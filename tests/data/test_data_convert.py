"""Tests for format detection, loading and conversion (histexpr.data.convert)."""

import shutil

import numpy as np
import pytest

from conftest import real_data
from histexpr.data.convert import ConvertResult, convert, detect_format, load_dataset
from histexpr.data.dataset import TARGET_LOG2_RPKM, TARGET_PASSTHROUGH, HistoneDataset
from histexpr.data.deepchrome import TARGET_LABEL, write_deepchrome
from histexpr.data.hdf5 import open_h5, read_h5, write_h5
from histexpr.data.npz import NpzWriter, gene_to_int, read_npz, write_npz
from histexpr.errors import DataError

TOY = real_data("deepchrome/toy")


def _ds(cells=("E003", "E004", "E005"), n=8, seed=0, target=TARGET_PASSTHROUGH):
    rng = np.random.default_rng(seed)
    cell = np.repeat(cells, n)
    gene = np.tile([str(3 + i) for i in range(n)], len(cells))
    X = rng.poisson(2.0, size=(len(cell), 5, 100)).astype(np.float32)
    y = rng.integers(0, 2, len(cell)).astype(np.float32)
    return HistoneDataset(X=X, y=y, cell=cell, gene=gene, target=target)


def test_detect_format(tmp_path):
    ds = _ds()
    write_npz(ds, tmp_path / "a.npz")
    write_h5(ds, tmp_path / "a.h5")
    write_deepchrome(ds, tmp_path / "dc")
    shutil.copy(tmp_path / "a.npz", tmp_path / "renamed.bin")
    assert detect_format(tmp_path / "a.npz") == "npz"
    assert detect_format(tmp_path / "renamed.bin") == "npz"  # by signature
    assert detect_format(tmp_path / "a.h5") == "h5"
    assert detect_format(tmp_path / "dc") == "deepchrome"
    assert detect_format(tmp_path / "dc" / "E003") == "deepchrome"
    (tmp_path / "fake.npz").write_text("hello")
    with pytest.raises(DataError, match=r"fake\.npz: file extension says \.npz"):
        detect_format(tmp_path / "fake.npz")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataError, match=r"x\.txt: unrecognised format"):
        detect_format(tmp_path / "x.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="folder holds no DeepChrome"):
        detect_format(tmp_path / "empty")
    with pytest.raises(DataError, match="not found"):
        detect_format(tmp_path / "nothing")


def test_load_dataset_any_format(tmp_path):
    ds = _ds()
    write_npz(ds, tmp_path / "a.npz")
    write_h5(ds, tmp_path / "a.h5")
    lab = _ds(target=TARGET_LABEL)
    assert lab.gene[0].startswith("ENSG")  # integer ids are canonical ENSG ids in memory
    write_deepchrome(lab, tmp_path / "dc")
    for path in (tmp_path / "a.npz", tmp_path / "a.h5"):
        got = load_dataset(path)
        np.testing.assert_array_equal(got.X, ds.X)
        np.testing.assert_array_equal(got.y, ds.y)
    got = load_dataset(tmp_path / "dc", cells=["E004"])
    np.testing.assert_array_equal(got.X, lab.X[8:16])
    assert load_dataset(tmp_path / "a.h5", target="none").y is None
    assert load_dataset(tmp_path / "a.npz", target="no").y is None
    with pytest.raises(DataError, match="does not apply to an HDF5"):
        load_dataset(tmp_path / "a.h5", target="rpkm")


@pytest.mark.parametrize("fmt", ["npz", "h5", "deepchrome"])
def test_convert_round_trip(tmp_path, fmt):
    ds = _ds(target=TARGET_LABEL if fmt == "deepchrome" else TARGET_PASSTHROUGH)
    src = tmp_path / {"npz": "train.npz", "h5": "src.h5", "deepchrome": "dc"}[fmt]
    {"npz": write_npz, "h5": write_h5, "deepchrome": write_deepchrome}[fmt](ds, src)
    res = convert(src, tmp_path / "out.h5", progress=False)
    assert isinstance(res, ConvertResult)
    assert res.source_format == fmt and res.n_examples == 24 and res.has_target
    assert res.cells == ("E003", "E004", "E005") and res.target == ds.target
    back = read_h5(res.path)
    order = np.lexsort((gene_to_int(back.gene), back.cell))
    np.testing.assert_array_equal(back.X[order], ds.X)
    np.testing.assert_array_equal(back.y[order], ds.y)
    with open_h5(res.path) as h:
        assert h.meta["source_format"] == fmt


def test_convert_selection_and_progress(tmp_path, capsys):
    ds = _ds()
    write_npz(ds, tmp_path / "train.npz")
    res = convert(tmp_path / "train.npz", tmp_path / "o.h5", cells=["E005", "E003"], progress=True)
    assert res.cells == ("E005", "E003") and read_h5(res.path).cells == ["E005", "E003"]
    assert "o.h5" in capsys.readouterr().err
    res = convert(tmp_path / "train.npz", tmp_path / "n.h5", target="no", progress=False)
    assert not res.has_target and read_h5(res.path).y is None


def test_convert_bad_block_leaves_no_output(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "train.npz"
    with NpzWriter(path) as w:
        w.write_cell(
            "E003", rng.poisson(1.0, (4, 5, 100)).astype(np.float32), np.arange(4), np.ones(4)
        )
    # Append a malformed key by hand: expression varies across bins.
    import zipfile

    bad = np.zeros((2, 100, 7), np.float32)
    bad[:, :, 0] = [[1], [2]]
    bad[1, 10, 6] = 3.0
    with zipfile.ZipFile(path, "a") as zf, zf.open("E004.npy", "w") as fh:
        np.lib.format.write_array(fh, bad)
    out = tmp_path / "out.h5"
    with pytest.raises(DataError, match=r"train\.npz \[E004\]: expression varies"):
        convert(path, out, progress=False)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.npz"]
    assert len(read_npz(path, cells=["E003"])) == 4


def test_convert_refuses_overwriting_input(tmp_path):
    write_h5(_ds(), tmp_path / "a.h5")
    with pytest.raises(DataError, match="overwrite the input"):
        convert(tmp_path / "a.h5", tmp_path / "a.h5", progress=False)


@pytest.mark.skipif(not TOY.is_dir(), reason=f"real toy files absent: {TOY}")
def test_convert_real_toy_with_rpkm(tmp_path):
    root = tmp_path / "dc"
    shutil.copytree(TOY, root / "E003")
    res = convert(root, tmp_path / "toy.h5", target="rpkm", progress=False)
    assert res.n_examples == 30 and res.target == TARGET_LOG2_RPKM
    back = read_h5(res.path)
    assert back.X.shape == (30, 5, 100) and np.isfinite(back.y).all()
    assert back.gene[0] == "ENSG00000000003"


@pytest.mark.parametrize("fmt", ["npz", "h5", "deepchrome"])
@pytest.mark.parametrize("target", ["auto", "yes", "no"])
def test_generic_target_choices_work_for_every_format(tmp_path, fmt, target):
    """`--target auto|yes|no` (the CLI default is auto) works for every input format."""
    ds = _ds(target=TARGET_LABEL if fmt == "deepchrome" else TARGET_PASSTHROUGH)
    src = tmp_path / {"npz": "eval.npz", "h5": "src.h5", "deepchrome": "dc"}[fmt]
    {"npz": write_npz, "h5": write_h5, "deepchrome": write_deepchrome}[fmt](ds, src)
    res = convert(src, tmp_path / "out.h5", target=target, progress=False)
    assert res.has_target == (target != "no")
    got = load_dataset(src, target=target)
    assert got.has_target == (target != "no")
    if target != "no":
        np.testing.assert_array_equal(got.y, ds.y)


def test_target_yes_without_target_is_an_error(tmp_path):
    write_h5(_ds().without_target(), tmp_path / "x.h5")
    with pytest.raises(DataError, match=r"x\.h5 \[target\]: no expression values"):
        convert(tmp_path / "x.h5", tmp_path / "o.h5", target="yes", progress=False)
    assert not (tmp_path / "o.h5").exists()
