"""featurize: many cells and marks -> one HDF5 dataset, serial and through Dask."""

import time

import numpy as np
import pandas as pd
import pytest

from conftest import real_data
from histexpr.data.dataset import MARKS, log2_rpkm
from histexpr.data.hdf5 import read_h5
from histexpr.errors import ConfigError, DataError
from histexpr.featurize.annotation import TssTable
from histexpr.featurize.bigwig import bin_bigwig
from histexpr.featurize.pipeline import featurize, parse_mark_specs, read_manifest, track_kind

pytest.importorskip("pyBigWig")

DEMO = real_data("chromoformer_demo")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    if not (DEMO / "demo_meta.csv").exists():
        pytest.skip(f"real demo arrays not available at {DEMO}")
    from test_featurize_bigwig import build_demo_bigwigs, load_demo

    meta, tss, arrays = load_demo()
    paths = build_demo_bigwigs(tmp_path_factory.mktemp("bw"), meta, arrays)
    # A second "cell type": the same real tracks under rotated mark names.
    rotated = {m: paths[MARKS[(i + 1) % len(MARKS)]] for i, m in enumerate(MARKS)}
    marks = {"E003": paths, "E999": rotated}
    expression = pd.DataFrame(
        {"E003": meta["expression"].to_numpy(), "E999": meta["expression"].to_numpy()[::-1]},
        index=meta["gene_id"],
    )
    return tss, marks, expression


def test_serial_featurize_writes_binned_tracks_and_targets(demo, tmp_path):
    tss, marks, expression = demo
    # Genes missing from the expression table are dropped with missing="drop" (90 of 100;
    # 5 of the fixture's 6); the default refuses them (test_featurize_missing_expression).
    k = 90 if len(expression) == 100 else len(expression) - 1
    with pytest.warns(UserWarning, match="have no expression"):
        out = featurize(
            tss,
            marks,
            tmp_path / "d.h5",
            expression=expression.iloc[:k],
            progress=False,
            missing="drop",
        )
    ds = read_h5(out)
    assert ds.marks == MARKS and ds.cells == ["E003", "E999"]
    assert len(ds) == 2 * k and ds.X.shape[1:] == (5, 100)
    e003 = ds.select_cells(["E003"])
    keep = np.isin(tss.gene_id, expression.index[:k])
    assert list(e003.gene) == list(tss.gene_id[keep])
    for j, m in enumerate(MARKS):
        assert np.array_equal(e003.X[:, j], bin_bigwig(marks["E003"][m], tss)[keep])
    rpkm = expression.loc[e003.gene, "E003"].to_numpy()
    assert np.array_equal(e003.y, log2_rpkm(rpkm))
    e999 = ds.select_cells(["E999"])
    assert np.array_equal(e999.X[:, 0], e003.X[:, 1])  # rotated marks
    meta = ds.meta
    assert meta["n_genes"] == k and meta["n_genes_tss"] == len(tss)
    assert meta["window"] == {"upstream": 5000, "downstream": 5000, "n_bins": 100}


@pytest.mark.parametrize("mode", ["threads", "processes", "scheduler"])
def test_parallel_output_is_identical_to_serial(demo, tmp_path, mode):
    distributed = pytest.importorskip("distributed")
    tss, marks, expression = demo
    serial = read_h5(
        featurize(tss, marks, tmp_path / "s.h5", expression=expression, progress=False)
    )
    kwargs = {"expression": expression, "progress": False}
    t0 = time.perf_counter()
    if mode == "scheduler":
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster:
            out = featurize(
                tss, marks, tmp_path / "p.h5", scheduler=cluster.scheduler_address, **kwargs
            )
    else:
        # A local process cluster takes ~3 s to start on 2 cores; threads ~0.3 s.
        out = featurize(
            tss, marks, tmp_path / "p.h5", workers=2, processes=mode == "processes", **kwargs
        )
    assert time.perf_counter() - t0 < 30
    parallel = read_h5(out)
    assert np.array_equal(serial.X, parallel.X)
    assert np.array_equal(serial.y, parallel.y)
    assert list(serial.cell) == list(parallel.cell) and list(serial.gene) == list(parallel.gene)
    assert serial.meta == parallel.meta


def test_without_expression_there_is_no_target(demo, tmp_path):
    tss, marks, _ = demo
    ds = read_h5(featurize(tss, {"E003": marks["E003"]}, tmp_path / "n.h5", progress=False))
    assert not ds.has_target and len(ds) == len(tss)


def test_missing_marks_fail_unless_filled_with_zeros(demo, tmp_path):
    tss, marks, _ = demo
    partial = {"E003": {m: p for m, p in marks["E003"].items() if m != "H3K9me3"}}
    with pytest.raises(DataError, match="H3K9me3"):
        featurize(tss, partial, tmp_path / "x.h5", progress=False)
    assert not (tmp_path / "x.h5").exists()
    ds = read_h5(featurize(tss, partial, tmp_path / "x.h5", progress=False, fill_missing=True))
    assert ds.X[:, MARKS.index("H3K9me3")].sum() == 0
    assert ds.X[:, MARKS.index("H3K4me3")].sum() > 0
    assert ds.meta["filled_zero"] == {"E003": ["H3K9me3"]}
    extra = {**marks["E003"], "H3K27ac": marks["E003"]["H3K4me3"]}
    six = read_h5(featurize(tss, {"E003": extra}, tmp_path / "y.h5", progress=False))
    assert six.marks == (*MARKS, "H3K27ac")
    assert np.array_equal(six.X[:, 5], six.X[:, MARKS.index("H3K4me3")])
    with pytest.raises(DataError, match="bad mark name"):
        featurize(tss, {"E003": {"H3K 27ac": extra["H3K4me3"]}}, tmp_path / "z.h5")


def test_failed_track_leaves_no_output(tmp_path):
    tss = TssTable(["c"], [100], ["+"], ["g"], ["g"])
    bad = tmp_path / "bad.bw"
    bad.write_text("not a bigwig")
    marks = {"E1": dict.fromkeys(MARKS, bad)}
    with pytest.raises(DataError, match="not a bigWig"):
        featurize(tss, marks, tmp_path / "out.h5", progress=False)
    assert list(tmp_path.iterdir()) == [bad]


def test_mixed_track_types(tmp_path):
    import gzip

    tss = TssTable(["chr1"], [1000], ["-"], ["g"], ["g"])
    reads = tmp_path / "E1-H3K4me3.tagAlign.gz"
    with gzip.open(reads, "wt") as fh:
        fh.write("chr1\t990\t1026\tN\t1000\t+\nchr1\t964\t1000\tN\t1000\t-\n")
    from test_featurize_bigwig import write_bigwig

    empty = tmp_path / "empty.bw"
    write_bigwig(empty, {"chr1": 5000}, {})
    marks = {"E1": {**dict.fromkeys(MARKS, empty), "H3K4me3": reads}}
    ds = read_h5(featurize(tss, marks, tmp_path / "m.h5", progress=False))
    x = ds.X[0, MARKS.index("H3K4me3")]
    # Minus gene, TSS base 1000 is the first base of bin 50 (its window ends at 1100 here).
    # 5' ends: 990 (+ read) and 999 (- read) are both in reference bin [901, 1001) -> bin 50.
    assert x[50] == 2 and x.sum() == 2
    assert track_kind(reads) == "tagalign" and track_kind(empty) == "bigwig"


def test_mark_specs_and_manifest(tmp_path):
    got = parse_mark_specs(["H3K4me3=a.bw", "E005:H3K9me3=b.bam"], cell="E003")
    assert got == {"E003": {"H3K4me3": "a.bw"}, "E005": {"H3K9me3": "b.bam"}}
    with pytest.raises(ConfigError, match="no cell"):
        parse_mark_specs(["H3K4me3=a.bw"])
    with pytest.raises(ConfigError, match="MARK=PATH"):
        parse_mark_specs(["H3K4me3"], cell="E003")
    with pytest.raises(ConfigError, match="twice"):
        parse_mark_specs(["H3K4me3=a", "H3K4me3=b"], cell="E003")
    manifest = tmp_path / "tracks.tsv"
    manifest.write_text("cell\tmark\tpath\nE003\tH3K4me3\tx/a.bw\nE003\tH3K9me3\t/abs/b.bw\n")
    got = read_manifest(manifest)
    assert got == {"E003": {"H3K4me3": str(tmp_path / "x" / "a.bw"), "H3K9me3": "/abs/b.bw"}}


def test_featurize_missing_expression_is_an_error_by_default(demo, tmp_path):
    tss, marks, expression = demo
    k = len(expression) - 1
    with pytest.raises(DataError, match=r"have no expression.*--missing drop"):
        featurize(tss, marks, tmp_path / "e.h5", expression=expression.iloc[:k], progress=False)
    assert not (tmp_path / "e.h5").exists()
    with pytest.raises(ConfigError, match="'error' or 'drop'"):
        featurize(tss, marks, tmp_path / "e.h5", expression=expression, missing="keep")
