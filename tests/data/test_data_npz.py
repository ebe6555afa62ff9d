"""Tests for the course npz reader/writer (histexpr.data.npz)."""

import zipfile

import numpy as np
import pytest

from histexpr.data.dataset import MARKS, TARGET_PASSTHROUGH, HistoneDataset
from histexpr.data.npz import NpzWriter, gene_to_int, iter_npz, read_npz, write_npz
from histexpr.errors import DataError


def _ds(cells=("E003", "E004"), n=6, seed=0, y=True):
    rng = np.random.default_rng(seed)
    cell = np.repeat(cells, n)
    gene = np.tile([str(3 + 7 * i) for i in range(n)], len(cells))
    X = rng.poisson(3.0, size=(len(cell), 5, 100)).astype(np.float32)
    yv = rng.normal(2.0, 1.0, len(cell)).astype(np.float32) if y else None
    return HistoneDataset(X=X, y=yv, cell=cell, gene=gene, target=TARGET_PASSTHROUGH)


def _raw(path, arrays, **kw):
    np.savez(path, **arrays, **kw)
    return path


def _course_array(n=3, bins=100, seed=1):
    rng = np.random.default_rng(seed)
    a = np.zeros((n, bins, 7))
    a[:, :, 0] = np.arange(1, n + 1)[:, None]
    a[:, :, 1:6] = rng.poisson(2.0, (n, bins, 5))
    a[:, :, 6] = rng.normal(size=n)[:, None]
    return a


def test_gene_to_int():
    ids = gene_to_int(["ENSG00000000003", "000003", "3", "ENSG00000172936"])
    assert ids.tolist() == [3, 3, 3, 172936] and ids.dtype == np.int64
    for bad in ["ENSG00000000003.5", "TP53", "", "-3"]:
        with pytest.raises(DataError, match="not an integer or ENSG id"):
            gene_to_int([bad])


def test_round_trip_identical(tmp_path):
    ds = _ds()
    write_npz(ds, tmp_path / "train.npz")
    back = read_npz(tmp_path / "train.npz")
    assert back.cells == ["E003", "E004"]
    np.testing.assert_array_equal(back.X, ds.X)
    np.testing.assert_array_equal(back.y, ds.y)
    np.testing.assert_array_equal(back.gene, ds.gene)
    np.testing.assert_array_equal(back.cell, ds.cell)
    assert back.marks == MARKS and back.target == TARGET_PASSTHROUGH
    # Layout of the course format: gene id col 0, marks 1-5, expression col 6.
    with np.load(tmp_path / "train.npz", allow_pickle=False) as z:
        a = z["E004"]
    assert a.shape == (6, 100, 7)
    np.testing.assert_array_equal(a[:, 0, 0], [3, 10, 17, 24, 31, 38])
    np.testing.assert_array_equal(a[2, :, 1:6].T, ds.X[8])


def test_compressed_and_cell_selection(tmp_path):
    ds = _ds(cells=("E003", "E004", "E005"))
    write_npz(ds, tmp_path / "c.npz", compress=True)
    with zipfile.ZipFile(tmp_path / "c.npz") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    back = read_npz(tmp_path / "c.npz", cells=["E005", "E003"])
    assert back.cells == ["E005", "E003"]
    np.testing.assert_array_equal(back.X[:6], ds.X[12:])
    with pytest.raises(DataError, match=r"c\.npz \[E999\]: cell type\(s\) not in file"):
        read_npz(tmp_path / "c.npz", cells=["E999"])


def test_iter_npz_streams_one_key(tmp_path):
    ds = _ds(cells=("E003", "E004", "E005"))
    write_npz(ds, tmp_path / "t.npz")
    parts = list(iter_npz(tmp_path / "t.npz"))
    assert [p.cells for p in parts] == [["E003"], ["E004"], ["E005"]]
    assert all(len(p) == 6 for p in parts)
    np.testing.assert_array_equal(HistoneDataset.concat(parts).X, ds.X)


def test_target_auto_rules(tmp_path):
    ds = _ds()
    write_npz(ds.without_target(), tmp_path / "noy.npz")
    assert not read_npz(tmp_path / "noy.npz").has_target  # zeros in col 6
    write_npz(ds, tmp_path / "eval.npz")
    back = read_npz(tmp_path / "eval.npz")  # the file name decides nothing
    assert back.has_target and back.meta["target_by_cell"] == {"E003": "yes", "E004": "yes"}
    assert not read_npz(tmp_path / "eval.npz", target="no").has_target
    assert not read_npz(tmp_path / "noy.npz", target="no").has_target
    a = _course_array()[:, :, :6]
    _raw(tmp_path / "six.npz", {"E003": a})
    assert not read_npz(tmp_path / "six.npz").has_target
    with pytest.raises(DataError, match=r"six\.npz \[E003\]: no expression column"):
        read_npz(tmp_path / "six.npz", target="yes")
    with pytest.raises(DataError, match="target must be one of"):
        read_npz(tmp_path / "six.npz", target="maybe")


def test_gene_ids_are_integer_strings(tmp_path):
    _raw(tmp_path / "r.npz", {"E050": _course_array()})
    ds = read_npz(tmp_path / "r.npz")
    # Course integer ids in the canonical Ensembl form, the same as HDF5/DeepChrome data.
    assert ds.gene.tolist() == ["ENSG00000000001", "ENSG00000000002", "ENSG00000000003"]
    assert ds.has_target


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda a: a.__setitem__((1, 5, 6), 9.0), "expression varies across the bins of gene 2"),
        (lambda a: a.__setitem__((0, 3, 2), -1.0), "negative count at gene 1, mark 1, bin 3"),
        (lambda a: a.__setitem__((2, 0, 4), np.nan), "NaN or infinite count at gene 3"),
        (lambda a: a.__setitem__((2, slice(None), 0), 2.0), "duplicated gene id"),
        (lambda a: a.__setitem__((0, slice(None), 0), 1.5), "gene id column 0 is not integer"),
        (lambda a: a.__setitem__((0, 7, 0), 5.0), "gene id varies across the bins"),
        (lambda a: a.__setitem__((1, slice(None), 6), np.inf), "NaN or infinite target at gene 2"),
    ],
)
def test_malformed_arrays(tmp_path, mutate, needle):
    good = _course_array()
    bad = _course_array()
    mutate(bad)
    path = _raw(tmp_path / "train.npz", {"E003": good, "E004": bad})
    with pytest.raises(DataError) as e:
        read_npz(path)
    msg = str(e.value)
    assert str(path) in msg and "[E004]" in msg and needle in msg, msg


def test_wrong_shapes(tmp_path):
    path = _raw(tmp_path / "s.npz", {"E003": np.zeros((3, 100))})
    with pytest.raises(DataError, match=r"s\.npz \[E003\]: expected shape"):
        read_npz(path)
    path = _raw(tmp_path / "b.npz", {"E003": _course_array(bins=90)})
    with pytest.raises(DataError, match=r"b\.npz \[E003\]: expected 100 bins, found 90"):
        read_npz(path)
    assert read_npz(path, n_bins=None).n_bins == 90


def test_object_array_rejected(tmp_path):
    obj = np.empty(2, dtype=object)
    obj[:] = [{"a": 1}, None]
    path = _raw(tmp_path / "p.npz", {"E003": obj})
    with pytest.raises(DataError, match=r"p\.npz \[E003\]: object \(pickled\) array"):
        read_npz(path)
    with pytest.raises(DataError, match=r"p\.npz \[E003\]: object"):
        list(iter_npz(path))


def test_not_a_zip_and_missing(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=r"x\.npz: not a readable npz archive"):
        read_npz(tmp_path / "x.npz")
    with pytest.raises(DataError, match="file not found"):
        read_npz(tmp_path / "nope.npz")


def test_writer_streams_and_is_atomic(tmp_path):
    path = tmp_path / "w.npz"
    ds = _ds(cells=("E003", "E004"))
    with pytest.raises(RuntimeError), NpzWriter(path) as w:
        w.write_cell("E003", ds.X[:6], np.arange(6), ds.y[:6])
        raise RuntimeError("interrupted")
    assert not path.exists() and not list(tmp_path.iterdir())
    with NpzWriter(path) as w:
        w.write_cell("E003", ds.X[:6], np.arange(6), ds.y[:6])
        assert not path.exists()  # only renamed into place on close
        with pytest.raises(DataError, match=r"w\.npz \[E003\]: cell type written twice"):
            w.write_cell("E003", ds.X[:6], np.arange(6))
        with pytest.raises(DataError, match=r"\[E004\]: gene_ids must be 6 integers"):
            w.write_cell("E004", ds.X[:6], np.arange(6.0))
        with pytest.raises(DataError, match=r"\[E005\]: negative count"):
            w.write_cell("E005", -ds.X[:6] - 1, np.arange(6))
    assert read_npz(path).cells == ["E003"]


def test_write_npz_rejects_symbol_gene_ids(tmp_path):
    ds = _ds()
    ds.gene = np.array(["TP53", *ds.gene[1:]])
    with pytest.raises(DataError, match=r"o\.npz \[E003\]: gene id 'TP53'"):
        write_npz(ds, tmp_path / "o.npz")
    assert not (tmp_path / "o.npz").exists()


def test_ensg_ids_written_as_integers(tmp_path):
    ds = _ds()
    assert ds.gene[0] == "ENSG00000000003"  # canonical in memory
    write_npz(ds, tmp_path / "e.npz")
    with np.load(tmp_path / "e.npz", allow_pickle=False) as z:
        assert z["E003"][:3, 0, 0].tolist() == [3, 10, 17]  # integers on disk
    np.testing.assert_array_equal(read_npz(tmp_path / "e.npz").gene, ds.gene)


def test_scale_small_preallocated_read(tmp_path):
    """Many keys: reading preallocates once and keeps file order and sizes."""
    rng = np.random.default_rng(3)
    path = tmp_path / "big.npz"
    sizes = {}
    with NpzWriter(path) as w:
        for i in range(20):
            n = int(rng.integers(1, 40))
            sizes[f"E{i:03d}"] = n
            X = rng.poisson(1.0, (n, 5, 100)).astype(np.float32)
            w.write_cell(f"E{i:03d}", X, np.arange(n), rng.normal(size=n))
    ds = read_npz(path)
    assert len(ds) == sum(sizes.values())
    assert ds.cells == list(sizes)
    assert [int((ds.cell == c).sum()) for c in sizes] == list(sizes.values())
    assert ds.X.dtype == np.float32 and ds.X.flags.c_contiguous


def test_target_decided_per_key(tmp_path):
    """The first key no longer decides for all: all-zero / all-NaN keys disagree loudly."""
    from histexpr.data.npz import npz_target_decisions

    good = _course_array()
    for fill, why in ((0.0, "all zero"), (np.nan, "all NaN")):
        first = _course_array(seed=2)
        first[:, :, 6] = fill
        path = _raw(tmp_path / f"train_{why[4:]}.npz", {"E003": first, "E004": good})
        assert npz_target_decisions(path) == {"E003": f"no ({why})", "E004": "yes"}
        with pytest.raises(DataError, match=r"keys disagree: E004 has expression.*E003 has none"):
            read_npz(path)
        with pytest.raises(DataError, match="keys disagree"):
            list(iter_npz(path))
        # Each key alone is read with its own decision.
        assert not read_npz(path, cells=["E003"]).has_target
        assert read_npz(path, cells=["E004"]).has_target
        assert not read_npz(path, target="no").has_target


def test_six_and_seven_columns_is_an_error(tmp_path):
    path = _raw(tmp_path / "mix.npz", {"E003": _course_array(), "E004": _course_array()[:, :, :6]})
    with pytest.raises(DataError, match=r"mix\.npz: keys disagree: E003 has 7 columns.*E004 has 6"):
        read_npz(path, target="no")


def test_nan_expression_ignored_with_target_no(tmp_path):
    a = _course_array()
    a[1, :, 6] = np.nan
    path = _raw(tmp_path / "eval.npz", {"E003": a})
    with pytest.raises(DataError, match="NaN or infinite target"):
        read_npz(path)
    ds = read_npz(path, target="no")
    assert not ds.has_target and len(ds) == 3


def test_extra_non_cell_key_skipped_with_warning(tmp_path):
    path = _raw(tmp_path / "x.npz", {"E003": _course_array(), "genes": np.arange(3)})
    with pytest.warns(UserWarning, match=r"x\.npz \[genes\]: not a cell-type array.*skipped"):
        ds = read_npz(path)
    assert ds.cells == ["E003"] and ds.has_target
    from histexpr.data.npz import npz_keys

    assert npz_keys(path) == ["E003"]
    only = _raw(tmp_path / "y.npz", {"genes": np.arange(3)})
    with pytest.raises(DataError, match="no cell-type arrays"), pytest.warns(UserWarning):
        read_npz(only)
