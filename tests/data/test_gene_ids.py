"""One canonical gene id everywhere: course npz integers and Ensembl ids name the same gene."""

import warnings

import numpy as np
import pytest

from conftest import make_planted
from histexpr.data.convert import load_dataset
from histexpr.data.dataset import TARGET_PASSTHROUGH, canonical_gene_ids, course_gene_ids
from histexpr.data.h5writer import write_h5
from histexpr.data.npz import write_npz
from histexpr.estimators import make_estimator


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("938", "ENSG00000000938"),
        ("000938", "ENSG00000000938"),
        ("ENSG938", "ENSG00000000938"),
        ("ENSG00000000938", "ENSG00000000938"),
        ("ENSG00000000938.12", "ENSG00000000938"),
        ("ENSMUSG00000000001.3", "ENSMUSG00000000001"),
        ("RP11-34P13.7", "RP11-34P13.7"),  # not Ensembl: kept verbatim, dot and all
        (" TP53 ", "TP53"),
    ],
)
def test_canonical_form(raw, canonical):
    assert canonical_gene_ids([raw]).tolist() == [canonical]
    # Idempotent, and the dataset applies it on construction.
    assert canonical_gene_ids(canonical_gene_ids([raw])).tolist() == [canonical]


def test_course_form_round_trip():
    ids = canonical_gene_ids(["938", "3", "TP53"])
    assert course_gene_ids(ids).tolist() == ["938", "3", "TP53"]


def test_npz_and_h5_agree_on_gene_ids(tmp_path):
    ds = make_planted(n_genes=12, cells=("E003", "E004"))
    ds.target = TARGET_PASSTHROUGH
    write_npz(ds, tmp_path / "train.npz")
    write_h5(ds, tmp_path / "train.h5")
    a, b = load_dataset(tmp_path / "train.npz"), load_dataset(tmp_path / "train.h5")
    np.testing.assert_array_equal(a.gene, b.gene)
    assert a.gene[0] == "ENSG00000000000"


def test_gene_mean_matches_across_formats_and_counts_unknown(tmp_path):
    """gene-mean trained on npz ids predicts per-gene means on HDF5 ids (not the global mean)."""
    ds = make_planted(n_genes=30, cells=("E003", "E004"))
    ds.target = TARGET_PASSTHROUGH
    write_npz(ds, tmp_path / "train.npz")
    est = make_estimator("gene-mean").fit(load_dataset(tmp_path / "train.npz"))
    test = make_planted(n_genes=40, cells=("E005",), seed=1)  # genes 30-39 are new
    with pytest.warns(UserWarning, match=r"gene-mean: 10 of 40 genes are not among"):
        pred = est.predict(test)
    known = np.isin(test.gene, ds.gene)
    assert len(np.unique(pred[known])) == 30  # one mean per known gene
    assert np.all(pred[~known] == pytest.approx(float(np.mean(ds.y))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every gene known: no notice
        est.predict(test.subset(np.flatnonzero(known)))
