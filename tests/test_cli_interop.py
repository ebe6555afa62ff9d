"""deepTools matrices in, AnnData out, through the command line (issue 23, points 2-3)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from deeptools_files import write_gz
from histexpr.data.reference import load_tss

anndata = pytest.importorskip("anndata")

N_GENES, N_BINS = 60, 10


def _read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return anndata.read_h5ad(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A computeMatrix -out file of 2 cell types x 2 marks, and their RPKM table."""
    d = tmp_path_factory.mktemp("deeptools")
    genes = load_tss()["gene_id"].drop_duplicates().to_numpy()[:N_GENES].tolist()
    rng = np.random.default_rng(0)
    activity = rng.normal(size=N_GENES)
    samples, rpkm = {}, {"gene_id": genes}
    for c, cell in enumerate(("E003", "E004")):
        a = activity + 0.3 * rng.normal(size=N_GENES)
        samples[f"{cell}-H3K4me3.fc.signal"] = rng.poisson(np.exp(1 + a)[:, None] * np.ones(N_BINS))
        samples[f"{cell}_h3k27me3"] = rng.poisson(np.exp(0.5 - a)[:, None] * np.ones(N_BINS))
        rpkm[cell] = np.exp2(3 + 2 * a + 0.1 * c).round(3)
    strands = ["+", "-"] * (N_GENES // 2)
    matrix = write_gz(d / "matrix.gz", samples, genes=genes, strands=strands, up=500, down=500)
    pd.DataFrame(rpkm).to_csv(d / "rpkm.tsv", sep="\t", index=False)
    return matrix, d / "rpkm.tsv", samples, genes


def test_train_and_predict_on_a_deeptools_matrix_to_h5ad(inputs, tmp_path, capsys):
    matrix, rpkm, samples, genes = inputs
    model = tmp_path / "model"
    assert run_cli("train", matrix, "--model", "ridge", "-o", model, "--expression", rpkm) == 0
    assert run_cli("info", matrix) == 0
    assert "marks: H3K27me3, H3K4me3; bins: 10 x 100 bp" in capsys.readouterr().out
    out = tmp_path / "pred.h5ad"
    assert run_cli("predict", model, matrix, "-o", out) == 0
    ad = _read(out)
    assert list(ad.obs_names) == ["E003", "E004"] and list(ad.var_names) == genes
    assert ad.obs.loc["E003", "name"] == "H1 Cells" and ad.var["symbol"].notna().all()
    assert set(ad.layers) == {"predicted"}  # no expression given: nothing observed
    info = ad.uns["histexpr"]
    assert info["model_kind"] == "ridge" and '"bin_size": 100' in info["contract"]
    # an own output is replaced only with --force
    assert run_cli("predict", model, matrix, "-o", out) == 2
    assert run_cli("predict", model, matrix, "-o", out, "--force") == 0
    # the same signal under other sample labels, mapped with --marks and --cell
    renamed = write_gz(
        tmp_path / "other.gz",
        {"sigA": samples["E003-H3K4me3.fc.signal"], "sigB": samples["E003_h3k27me3"]},
        genes=genes,
        strands=["+"] * N_GENES,
        up=500,
        down=500,
    )
    assert run_cli("predict", model, renamed, "-o", tmp_path / "p.csv") == 2
    assert "names no known mark" in capsys.readouterr().err
    args = ("--marks", "sigA=H3K4me3,sigB=H3K27me3", "--cell", "X")
    assert run_cli("predict", model, renamed, "-o", tmp_path / "p.csv", *args) == 0
    p = pd.read_csv(tmp_path / "p.csv")
    assert (p.cell == "X").all()
    np.testing.assert_allclose(p.prediction, ad.layers["predicted"][0], rtol=1e-6)


def test_observed_layer_and_differential_h5ad(inputs, tmp_path):
    matrix, rpkm, _, genes = inputs
    data = tmp_path / "d.h5"
    assert run_cli("convert", matrix, data, "--expression", rpkm, "--no-progress") == 0
    model, diff = tmp_path / "m", tmp_path / "dm"
    assert run_cli("train", data, "--model", "ridge", "-o", model) == 0
    out = tmp_path / "pred.h5ad"
    assert run_cli("predict", model, data, "-o", out) == 0
    ad = _read(out)
    assert set(ad.layers) == {"predicted", "observed"}
    y = np.log2(pd.read_csv(rpkm, sep="\t", index_col=0).loc[genes, "E004"].to_numpy() + 1)
    np.testing.assert_allclose(ad.layers["observed"][1], y, rtol=1e-6)
    assert run_cli("train", data, "--model", "diff-ridge", "--pairs", "E003:E004", "-o", diff) == 0
    out = tmp_path / "diff.h5ad"
    assert run_cli("predict", diff, data, "--pair", "E003:E004,E004:E003", "-o", out) == 0
    ad = _read(out)
    assert list(ad.obs_names) == ["E003:E004", "E004:E003"]
    assert ad.obs.loc["E004:E003", "cell_a"] == "E004" and set(ad.layers) == {
        "predicted",
        "observed",
    }
    np.testing.assert_allclose(ad.layers["observed"][0], -ad.layers["observed"][1], atol=1e-6)
