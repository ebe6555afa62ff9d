"""Any marks, any window, end to end through the command line (issue 16).

A 40-bin and a 200-bin dataset (with a sixth mark) go through train -> predict for
every model kind, from files whose marks are reordered and have an extra one, and
evaluate -> explain -> report for a baseline and a network; a 7-mark dataset
featurized from bigWigs of the real E003 arrays trains and predicts; models refuse
data missing one of their marks with a line naming it, unless trained with mark
dropout. The whole train -> evaluate -> predict -> explain -> report path for every
single-cell kind on all three datasets is in ``test_marks_pipeline.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA, run_cli
from histexpr.data.dataset import MARKS, HistoneDataset
from histexpr.data.hdf5 import read_h5, write_h5
from histexpr.estimators import KINDS, kind_names, settings

NEURAL_KINDS = kind_names(family="network")

SIX = (*MARKS, "H3K27ac")
#: Tiny settings per neural kind (seconds per fit).
COMMON = ["progress=false", "batch_size=32", "threads=1", "epochs=1"]
TINY = {
    "convnet": ["channels=4,4,8,8,8,8,8,8"],
    "ensemble": ["channels=4,4,8,8,8,8,8,8", "n_folds=2"],
    "celltype-weighted": ["channels=4,4,8,8,8,8,8,8"],
    "deepchrome": ["n_filters=4", "hidden=8"],
    "attentivechrome": ["bin_hidden=2", "mark_hidden=2"],
    # not a registry network (it has an atlas input too), so COMMON is added by name
    "atlas-convnet": ["channels=4,4,8,8,8,8,8,8", "n_folds=1", "alpha=1", *COMMON],
}
#: Settings that make any kind having them fast (tree counts, threads, a fixed ridge penalty).
GENERIC = {"n_estimators": "5", "n_jobs": "1", "alpha": "1"}


def _sets(kind: str) -> list[str]:
    names = {s.name for s in settings(kind)}
    opts = [f"{k}={v}" for k, v in GENERIC.items() if k in names and kind not in NEURAL_KINDS]
    opts += TINY.get(kind, []) + (COMMON if kind in NEURAL_KINDS else [])
    return [a for o in opts for a in ("--set", o)]


def planted(n_bins: int, marks=SIX, n_genes: int = 40, cells=("E003", "E004", "E005"), seed=0):
    """Counts whose expression follows central H3K4me3 and H3K27ac, any window and marks."""
    rng = np.random.default_rng(seed)
    a_gene = rng.normal(size=n_genes)
    lo, hi = int(0.45 * n_bins), max(int(0.55 * n_bins), int(0.45 * n_bins) + 1)
    parts = []
    for ci, c in enumerate(cells):
        a = a_gene + 0.3 * rng.normal(size=n_genes)
        rate = np.full((n_genes, len(marks), n_bins), 0.5)
        for m in ("H3K4me3", "H3K27ac"):
            if m in marks:
                rate[:, marks.index(m), lo:hi] = np.exp(1.0 + a)[:, None]
        rate *= 1.0 + 0.2 * ci
        y = (3 + 2 * a + 0.3 * rng.normal(size=n_genes)).astype(np.float32)
        genes = np.array([f"ENSG{i:011d}" for i in range(n_genes)])
        X = rng.poisson(rate).astype(np.float32)
        parts.append(HistoneDataset(X, y, np.full(n_genes, c), genes, marks))
    ds = HistoneDataset.concat(parts)
    ds.meta = {"bin_size": 10_000 // n_bins}
    return ds


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    d = tmp_path_factory.mktemp("windows")
    out = {}
    for n_bins in (40, 200):
        ds = planted(n_bins)
        write_h5(ds, d / f"train{n_bins}.h5")
        # Same marks in another order plus an extra one: selected and reordered by name.
        other = planted(n_bins, marks=("CTCF", *SIX[::-1]), cells=("E003", "E071"), seed=1)
        write_h5(other, d / f"test{n_bins}.h5")
        out[n_bins] = d
    return out


@pytest.mark.parametrize("n_bins", [40, 200])
@pytest.mark.parametrize("kind", [k for k in KINDS if not k.startswith("diff-")])
def test_every_kind_trains_and_predicts_any_window(kind, n_bins, windows, tmp_path, capsys):
    d = windows[n_bins]
    model = tmp_path / "m"
    assert (
        run_cli("train", d / f"train{n_bins}.h5", "--model", kind, "-o", model, *_sets(kind)) == 0
    )
    out = tmp_path / "p.csv"
    with pytest.warns(UserWarning, match="CTCF"):  # the extra mark is dropped, with a notice
        assert run_cli("predict", model, d / f"test{n_bins}.h5", "-o", out) == 0
    pred = pd.read_csv(out)
    assert len(pred) == 80 and np.isfinite(pred.select_dtypes("number").to_numpy()).all()
    # Order does not matter: the reordered file predicts what the training order does.
    test = read_h5(d / f"test{n_bins}.h5")
    from histexpr.estimators import load_estimator

    est = load_estimator(model)
    with pytest.warns(UserWarning):
        shuffled = est.predict(test)
    np.testing.assert_allclose(shuffled, est.predict(test.select_marks(SIX)), rtol=1e-5)


@pytest.mark.parametrize("kind", ["ridge", "convnet"])
def test_evaluate_explain_report_with_six_marks_and_40_bins(kind, windows, tmp_path, capsys):
    d = windows[40]
    model = tmp_path / kind
    assert run_cli("train", d / "train40.h5", "--model", kind, "-o", model, *_sets(kind)) == 0
    with pytest.warns(UserWarning, match="CTCF"):
        assert run_cli("evaluate", model, d / "test40.h5", "-o", tmp_path / "m.csv") == 0
    assert len(pd.read_csv(tmp_path / "m.csv"))
    if kind in NEURAL_KINDS:
        ex = tmp_path / "explain"
        args = ("--cells", "E003", "--n-genes", "1", "--methods", "saliency", "--max-genes", "20")
        assert run_cli("explain", model, "--data", d / "train40.h5", "-o", ex, *args) == 0
        assert list(ex.glob("*.png"))
    assert run_cli("report", model) == 0
    html = (tmp_path / f"{kind}.report.html").read_text()
    assert "H3K27ac" in html  # the model card names its marks


def test_missing_mark_is_refused_by_name_unless_mark_dropout(windows, tmp_path, capsys):
    d = windows[40]
    five = read_h5(d / "test40.h5").select_marks(MARKS)
    write_h5(five, tmp_path / "five.h5")
    plain = tmp_path / "plain"
    assert run_cli("train", d / "train40.h5", "--model", "ridge", "-o", plain, *_sets("ridge")) == 0
    capsys.readouterr()
    assert run_cli("predict", plain, tmp_path / "five.h5", "-o", tmp_path / "p.csv") == 2
    err = capsys.readouterr().err
    assert "missing mark(s) H3K27ac" in err and len(err.strip().splitlines()) == 1
    masked = tmp_path / "masked"
    sets = [*_sets("convnet"), "--set", "mark_dropout=0.3"]
    assert run_cli("train", d / "train40.h5", "--model", "convnet", "-o", masked, *sets) == 0
    with pytest.warns(UserWarning, match="H3K27ac missing"):
        assert run_cli("predict", masked, tmp_path / "five.h5", "-o", tmp_path / "q.csv") == 0
    q = pd.read_csv(tmp_path / "q.csv")
    assert len(q) == len(five) and np.isfinite(q.select_dtypes("number").to_numpy()).all()
    from histexpr.estimators import load_estimator

    est = load_estimator(masked)
    assert est.model_.normalizer.mark_mask is not None  # the mask channels are part of the model


@pytest.mark.skipif(
    not (SHARED_DATA / "chromoformer_demo" / "demo_meta.csv").exists(),
    reason="real demo arrays not available",
)
def test_seven_marks_featurized_from_bigwigs(tmp_path, capsys):
    pytest.importorskip("pyBigWig")
    from featurize.test_featurize_bigwig import write_demo_bigwigs

    meta, specs = write_demo_bigwigs(tmp_path)
    tss = SHARED_DATA / "chromoformer_demo" / "demo_meta.csv"
    rpkm = tmp_path / "rpkm.csv"
    pd.DataFrame({"gene_id": meta["gene_id"], "E003": meta["expression"]}).to_csv(rpkm, index=False)
    out = tmp_path / "e003.h5"
    args = ("--tss", tss, "--expression", rpkm, "--no-progress", "-o", out)
    assert run_cli("featurize", "--cell", "E003", *specs, *args) == 0
    ds = read_h5(out)
    assert ds.marks == (*MARKS, "H3K27ac", "H3K9ac") and ds.X.shape == (len(meta), 7, 100)
    assert run_cli("train", out, "--model", "ridge", "-o", tmp_path / "r", *_sets("ridge")) == 0
    assert run_cli("predict", tmp_path / "r", out, "-o", tmp_path / "p.csv") == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(meta)


def test_mark_names_follow_one_pattern():
    from histexpr.data.dataset import check_mark_names, order_marks
    from histexpr.data.download import catalogue
    from histexpr.errors import DataError

    ok = ("H3K27ac", "DNase", "ATAC", "CTCF", "H2A.Z", "H3K4me3_rep-2")
    assert check_mark_names(ok) == ok
    for bad in (["3K"], ["H3K 4me3"], [""], ["H3K4me3", "H3K4me3"], []):
        with pytest.raises(DataError):
            check_mark_names(bad)
    assert order_marks(["CTCF", "H3K9ac", *MARKS, "H3K27ac"]) == (*SIX, "H3K9ac", "CTCF")
    # download and featurize accept the same names
    files = catalogue("roadmap-tagalign", ["E003"], ["H3K27ac", "DNase"], base_url="http://x")
    assert [f.name for f in files] == ["E003-H3K27ac.tagAlign.gz", "E003-DNase.tagAlign.gz"]
    with pytest.raises(DataError, match="bad mark name"):
        catalogue("roadmap-tagalign", ["E003"], ["H3K27 ac"], base_url="http://x")


def test_select_marks_by_name(tmp_path):
    from histexpr.data.convert import load_dataset
    from histexpr.errors import DataError

    ds = planted(40, n_genes=5, cells=("E003",))
    picked = ds.select_marks(["H3K27ac", "H3K4me3"])
    assert picked.marks == ("H3K27ac", "H3K4me3")
    assert np.array_equal(picked.X[:, 0], ds.X[:, 5]) and np.array_equal(picked.X[:, 1], ds.X[:, 3])
    assert picked.meta["dropped_marks"] == [m for m in SIX if m not in picked.marks]
    with pytest.raises(DataError, match=r"missing mark.*DNase"):
        ds.select_marks(["H3K4me3", "DNase"])
    filled = ds.select_marks(["H3K4me3", "DNase"], allow_missing=True)
    assert filled.meta["missing_marks"] == ["DNase"] and not filled.X[:, 1].any()
    assert ds.select_marks(SIX) is ds
    # a 6-mark HDF5 file written through the Python API loads (and keeps its bin size)
    write_h5(ds, tmp_path / "six.h5")
    back = load_dataset(tmp_path / "six.h5")
    assert back.marks == SIX and back.n_bins == 40 and back.meta["bin_size"] == 250
    assert run_cli("info", tmp_path / "six.h5") == 0
