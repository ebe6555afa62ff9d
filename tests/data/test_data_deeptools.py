"""deepTools computeMatrix reference-point matrices as datasets (histexpr.data.deeptools).

The matrices are written exactly as deepTools 3.5 does (tests/deeptools_files.py).
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from deeptools_files import GENES, STRANDS, write_gz, write_text
from histexpr.data.convert import convert, detect_format, load_dataset
from histexpr.data.dataset import TARGET_LOG2_RPKM, log2_rpkm
from histexpr.data.deeptools import read_deeptools, sample_key
from histexpr.data.hdf5 import read_h5
from histexpr.errors import DataError


def _signal(seed, n=len(GENES), n_bins=4):
    return np.random.default_rng(seed).integers(0, 9, (n, n_bins)).astype(float)


def test_gz_matrix_several_samples(tmp_path):
    k4, k27 = _signal(1), _signal(2)
    k4[0, 3] = np.nan  # deepTools writes nan for a bin without data
    path = write_gz(tmp_path / "E003.matrix.gz", {"E003-H3K4me3.pval": k4, "H3K27ME3": k27})
    assert detect_format(path) == "deeptools"
    ds = load_dataset(path)
    assert ds.marks == ("H3K27me3", "H3K4me3")  # normalised, house order
    assert ds.cells == ["E003"] and ds.n_bins == 4 and not ds.has_target
    assert ds.meta["bin_size"] == 100 and ds.meta["upstream"] == 200
    np.testing.assert_array_equal(ds.gene, GENES)
    np.testing.assert_array_equal(ds.X[:, 1], np.nan_to_num(k4))  # nan -> 0
    # minus-strand rows are already upstream -> downstream in deepTools: never flipped
    np.testing.assert_array_equal(ds.X[0, 0], k27[0])
    with pytest.raises(DataError, match="nan value for region ENSG00000000003"):
        read_deeptools(path, nan="error")


def test_text_matrix_with_sorted_regions_equals_gz(tmp_path):
    samples = {"H3K4me3": _signal(3), "H3K27me3": _signal(4)}
    text = write_text(tmp_path / "m.tab", samples)
    gz = write_gz(tmp_path / "m.gz", samples)
    a, b = load_dataset(text, cell="E005"), load_dataset(gz, cell="E005")
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.gene, b.gene)
    assert a.cells == ["E005"]
    (tmp_path / "m.bed").unlink()
    with pytest.raises(DataError, match="no region names"):
        load_dataset(text)


def test_folder_one_file_per_mark_merged_by_name_with_expression(tmp_path):
    folder = tmp_path / "E004"
    folder.mkdir()
    write_gz(folder / "1_k4.gz", {"sig_a": _signal(5)})
    # the second mark in another region order and one region fewer
    order = [2, 0, 1]
    write_gz(
        folder / "2_k27.gz",
        {"sig_b": _signal(6)[order]},
        genes=[GENES[i] for i in order],
        strands=[STRANDS[i] for i in order],
    )
    rpkm = pd.DataFrame({"gene_id": GENES, "E004": [1.0, 3.0, 7.0, 15.0]})
    rpkm.to_csv(tmp_path / "rpkm.tsv", sep="\t", index=False)
    with pytest.warns(UserWarning, match="1 region"):
        ds = load_dataset(
            folder, marks="sig_a=H3K4me3,sig_b=h3k27me3", expression=tmp_path / "rpkm.tsv"
        )
    assert ds.marks == ("H3K27me3", "H3K4me3") and ds.cells == ["E004"]
    np.testing.assert_array_equal(ds.gene, GENES[:3])
    np.testing.assert_array_equal(ds.X[:, 0], _signal(6)[:3])  # aligned by region name
    np.testing.assert_array_equal(ds.X[:, 1], _signal(5)[:3])
    assert ds.target == TARGET_LOG2_RPKM
    np.testing.assert_allclose(ds.y, log2_rpkm(np.array([1.0, 3.0, 7.0])))
    with pytest.raises(DataError, match=r"1_k4.gz \[marks\]: sample label 'sig_a' names no"):
        load_dataset(folder)
    rpkm.rename(columns={"E004": "E005"}).to_csv(tmp_path / "other.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match="no column E004"), pytest.warns(UserWarning):
        load_dataset(
            folder, marks="sig_a=H3K4me3,sig_b=H3K27me3", expression=tmp_path / "other.tsv"
        )


def test_convert_keeps_bin_size_and_targets(tmp_path):
    path = write_gz(tmp_path / "m.gz", {"E006_H3K4me3": _signal(7)}, size=50, up=100, down=100)
    rpkm = pd.DataFrame({"gene_id": GENES, "E006": [0.0, 1.0, 2.0, 3.0]})
    rpkm.to_csv(tmp_path / "rpkm.csv", index=False)
    res = convert(path, tmp_path / "out.h5", progress=False, expression=tmp_path / "rpkm.csv")
    assert res.source_format == "deeptools" and res.has_target and res.cells == ("E006",)
    back = read_h5(tmp_path / "out.h5")
    assert back.meta["bin_size"] == 50 and back.marks == ("H3K4me3",)
    np.testing.assert_array_equal(back.X[:, 0], _signal(7))


@pytest.mark.parametrize(
    ("layout", "message"),
    [({"body": 1000}, "scale-regions"), ({"ref": "TES"}, "reference point TES")],
)
def test_refuses_other_layouts(tmp_path, layout, message):
    path = write_gz(tmp_path / "m.gz", {"H3K4me3": _signal(8)}, **layout)
    with pytest.raises(DataError, match=message):
        load_dataset(path)


def test_sample_labels_and_options():
    assert sample_key("E017-H3K9ac.fc.signal", {}, None, "x") == ("E017", "H3K9ac")
    assert sample_key("foo", {"foo": "E008:dnase"}, None, "x") == ("E008", "DNase")
    assert sample_key("H3K4me1_rep1", {}, "K562", "x") == ("K562", "H3K4me1")
    with pytest.raises(DataError, match="several marks"):
        sample_key("H3K4me1_vs_H3K4me3", {}, None, "x")


def test_options_refused_for_other_formats(tmp_path, planted):
    from histexpr.data.hdf5 import write_h5

    write_h5(planted, tmp_path / "d.h5")
    with pytest.raises(DataError, match="apply to deepTools matrices only"):
        load_dataset(tmp_path / "d.h5", marks="a=H3K4me3")


def test_infinite_or_negative_values_refused_naming_the_gene(tmp_path):
    k4 = _signal(9)
    k4[2, 1] = np.inf
    with pytest.raises(DataError, match="infinite count at gene ENSG00000000419"):
        load_dataset(write_gz(tmp_path / "a.gz", {"H3K4me3": k4}))
    k4[2, 1] = -1.0  # e.g. a bigwigCompare log2 ratio: not a count
    with pytest.raises(DataError, match="negative count at gene ENSG00000000419"):
        load_dataset(write_gz(tmp_path / "b.gz", {"H3K4me3": k4}))


def test_expression_in_the_roadmap_layout(tmp_path):
    """57epigenomes.RPKM.pc.gz: tab-separated, every data row ends with a tab."""
    rows = "".join(f"{g}\t1.0\t{i}.0\t\n" for i, g in enumerate(GENES))
    (tmp_path / "rpkm.pc.gz").write_bytes(gzip.compress(f"gene_id\tE000\tE003\n{rows}".encode()))
    path = write_gz(tmp_path / "m.gz", {"E003.H3K4me3": _signal(10)})
    ds = load_dataset(path, expression=tmp_path / "rpkm.pc.gz")
    np.testing.assert_allclose(ds.y, log2_rpkm(np.arange(4.0)))


def test_before_deeptools_3_single_values_and_two_groups(tmp_path):
    """deepTools 2.x wrote one upstream/downstream/bin size for all samples."""
    k4 = _signal(11)
    path = write_gz(tmp_path / "new.gz", {"H3K4me3": k4})
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    header = json.loads(lines[0][1:])
    for key in ("upstream", "downstream", "body", "bin size", "ref point"):
        header[key] = header[key][0]
    header["group_labels"], header["group_boundaries"] = ["up", "down"], [0, 2, 4]
    lines[0] = "@" + json.dumps(header, separators=(",", ":"))
    old = tmp_path / "old.gz"
    old.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    np.testing.assert_array_equal(load_dataset(old).X, load_dataset(path).X)
    text = tmp_path / "t.tab"
    write_text(text, {"H3K4me3": k4})
    body = text.read_text().splitlines()
    body[0] = "#up:2\tdown:2"
    body[1] = "#downstream:200\tupstream:200\tbody:0\tbin size:100\tunscaled 5 prime:0\t"
    body[1] += "unscaled 3 prime:0"
    body[2] = "up:2\tdown:2\t" + "\t".join(["H3K4me3"] * 4)
    text.write_text("\n".join(body) + "\n")
    np.testing.assert_array_equal(load_dataset(text).X, load_dataset(path).X)


def test_cell_option_refused_where_it_means_nothing(tmp_path, planted):
    from histexpr.data.npz import write_npz

    write_npz(planted, tmp_path / "d.npz")
    with pytest.raises(DataError, match="option cell applies to deepTools"):
        load_dataset(tmp_path / "d.npz", cell="X")
