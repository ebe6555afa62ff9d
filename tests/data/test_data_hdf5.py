"""Tests for the HDF5 dataset store (histexpr.data.hdf5)."""

import h5py
import numpy as np
import pytest

from histexpr.data.dataset import MARKS, HistoneDataset
from histexpr.data.hdf5 import FORMAT_VERSION, H5Writer, is_h5, open_h5, read_h5, write_h5
from histexpr.errors import DataError


def _ds(cells=("E003", "E004", "E005"), n=10, seed=0, y=True):
    rng = np.random.default_rng(seed)
    cell = np.repeat(cells, n)
    gene = np.tile([f"ENSG{i:011d}" for i in range(n)], len(cells))
    X = rng.poisson(2.0, size=(len(cell), 5, 100)).astype(np.float32)
    return HistoneDataset(
        X=X, y=rng.normal(size=len(cell)) if y else None, cell=cell, gene=gene, meta={"seed": seed}
    )


def _same(a: HistoneDataset, b: HistoneDataset):
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.cell, b.cell)
    np.testing.assert_array_equal(a.gene, b.gene)
    if a.y is None:
        assert b.y is None
    else:
        np.testing.assert_array_equal(a.y, b.y)


@pytest.mark.parametrize("compression", ["lzf", "gzip", None])
def test_round_trip(tmp_path, compression):
    ds = _ds()
    path = write_h5(ds, tmp_path / "d.h5", compression=compression)
    assert is_h5(path)
    back = read_h5(path)
    _same(ds, back)
    assert back.marks == MARKS and back.target == ds.target
    assert back.meta == {"seed": 0, "bin_size": 100}


def test_without_target(tmp_path):
    ds = _ds(y=False)
    back = read_h5(write_h5(ds, tmp_path / "d.h5"))
    _same(ds, back)
    with open_h5(tmp_path / "d.h5") as h:
        assert not h.has_target


def test_lazy_reads(tmp_path):
    ds = _ds()
    with open_h5(write_h5(ds, tmp_path / "d.h5")) as h:
        assert h.n == len(h) == 30 and h.cells == ["E003", "E004", "E005"]
        assert h.nbytes_X == 30 * 5 * 100 * 4
        _same(ds.subset(slice(5, 12)), h.read(slice(5, 12)))
        idx = np.array([17, 2, 3, 29, 2])  # unsorted, with a repeat
        _same(ds.subset(idx), h.read(idx))
        _same(ds.subset(np.array([], int)), h.read(np.array([], int)))
        ci = h.cell_index(["E005", "E003"])
        np.testing.assert_array_equal(ci, np.r_[0:10, 20:30])
        _same(ds.select_cells(["E004"]), h.load(["E004"]))
        batches = list(h.iter_batches(7))
        assert [len(b) for b in batches] == [7, 7, 7, 7, 2]
        _same(ds, HistoneDataset.concat(batches))
        sub = list(h.iter_batches(4, index=ci))
        _same(ds.subset(ci), HistoneDataset.concat(sub))
        with pytest.raises(DataError, match=r"d\.h5 \[cell\]: cell type\(s\) not in file: E999"):
            h.cell_index(["E999"])


def test_read_boolean_mask_and_list(tmp_path):
    ds = _ds()
    with open_h5(write_h5(ds, tmp_path / "d.h5")) as h:
        mask = np.zeros(30, bool)
        mask[[4, 20, 21]] = True
        _same(ds.subset(mask), h.read(mask))
        _same(ds.subset(np.array([8, 1])), h.read([8, 1]))
        assert len(h.read([])) == 0


def test_streaming_append_keeps_cell_codes(tmp_path):
    ds = _ds()
    order = np.r_[0:5, 20:25, 5:10, 10:20, 25:30]  # cell types split over blocks
    with H5Writer(tmp_path / "s.h5", MARKS, 100, has_target=True) as w:
        for lo in range(0, 30, 5):
            w.append(ds.subset(order[lo : lo + 5]))
        w.append(ds.subset(slice(0, 0)))
        assert not (tmp_path / "s.h5").exists()  # renamed only on close
    back = read_h5(tmp_path / "s.h5")
    _same(ds.subset(order), back)
    assert back.cells == ["E003", "E005", "E004"]


def test_writer_errors_and_abort(tmp_path):
    ds = _ds()
    path = tmp_path / "w.h5"
    with (
        pytest.raises(DataError, match="mixing examples with and without targets"),
        H5Writer(path, MARKS, 100, has_target=True) as w,
    ):
        w.append(ds.without_target())
    assert not path.exists() and not list(tmp_path.iterdir())
    with pytest.raises(DataError, match="bins"), H5Writer(path, MARKS, 50, has_target=True) as w:
        w.append(ds)
    with (
        pytest.raises(DataError, match="marks"),
        H5Writer(path, tuple(reversed(MARKS)), 100, has_target=True) as w,
    ):
        w.append(ds)
    assert not list(tmp_path.iterdir())


def test_open_errors(tmp_path):
    with pytest.raises(DataError, match=r"nope\.h5: file not found"):
        open_h5(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DataError, match=r"text\.h5: not a readable HDF5 file"):
        open_h5(tmp_path / "text.h5")
    assert not is_h5(tmp_path / "text.h5") and not is_h5(tmp_path)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["X"] = np.zeros(3)
    with pytest.raises(DataError, match="not a histexpr dataset"):
        open_h5(tmp_path / "plain.h5")
    path = write_h5(_ds(), tmp_path / "new.h5")
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(DataError, match="newer than this histexpr supports"):
        open_h5(path)
    path = write_h5(_ds(), tmp_path / "miss.h5")
    with h5py.File(path, "a") as f:
        del f["gene"]
    with pytest.raises(DataError, match=r"miss\.h5 \[gene\]: missing array"):
        open_h5(path)


def test_split_field_round_trip_and_backward_compatible(tmp_path):
    rng = np.random.default_rng(0)
    ds = HistoneDataset(
        X=rng.poisson(1.0, size=(6, 5, 100)),
        y=rng.normal(size=6),
        cell=["A"] * 3 + ["B"] * 3,
        gene=[f"ENSG{i:011d}" for i in range(3)] * 2,
        split=["train", "valid", "test"] * 2,
    )
    write_h5(ds, tmp_path / "s.h5")
    back = read_h5(tmp_path / "s.h5")
    np.testing.assert_array_equal(back.split, ds.split)
    assert back.splits == {"train": 2, "valid": 2, "test": 2}
    with open_h5(tmp_path / "s.h5") as h:  # lazy reads by index keep the split
        assert h.read([1, 4]).split.tolist() == ["valid", "valid"]
    # a file written without a split field (all files before issue 13) reads split=None
    plain = HistoneDataset(X=ds.X, y=ds.y, cell=ds.cell, gene=ds.gene)
    write_h5(plain, tmp_path / "plain.h5")
    with h5py.File(tmp_path / "plain.h5") as f:
        assert "split" not in f
    assert read_h5(tmp_path / "plain.h5").split is None
    # concatenating with and without: the unassigned examples get ""
    both = HistoneDataset.concat([ds, plain])
    assert both.splits == {"train": 2, "valid": 2, "test": 2, "": 6}


def test_gzip_filter_is_shuffled_gzip_and_unknown_filters_are_refused(tmp_path):
    ds = HistoneDataset(
        X=np.random.default_rng(1).poisson(2.0, size=(4, 5, 100)),
        y=None,
        cell=["A"] * 4,
        gene=[f"ENSG{i:011d}" for i in range(4)],
    )
    write_h5(ds, tmp_path / "g.h5", compression="gzip")
    with h5py.File(tmp_path / "g.h5") as f:
        assert f["X"].compression == "gzip" and f["X"].shuffle
    with pytest.raises(DataError, match="compression must be one of"):
        write_h5(ds, tmp_path / "z.h5", compression="zstd")
    assert not list(tmp_path.glob("z*"))
