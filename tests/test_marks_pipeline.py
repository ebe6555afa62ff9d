"""Every single-cell model kind, train -> evaluate -> predict -> explain -> report (issue 16).

Three datasets go the whole way through the command line: a 40-bin and a 200-bin one with
a sixth mark, and (when the real E003 arrays are present) a 7-mark one featurized from
bigWigs. Each kind is trained once per dataset (module-scoped) and reused by every step.
Baselines answer ``explain`` with one line (no gradients), except the atlas kinds,
which are explained by their reference prior.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA
from histexpr.data.dataset import MARKS, HistoneDataset
from histexpr.data.hdf5 import read_h5, write_h5
from histexpr.estimators import KINDS, kind_names
from test_marks_end_to_end import _sets, planted, run_cli

NEURAL_KINDS = kind_names(family="network")

SIX = (*MARKS, "H3K27ac")
SEVEN = (*SIX, "H3K9ac")
SINGLE = [k for k in KINDS if not k.startswith("diff-")]
DATASETS = ["bins40", "bins200", "seven"]
#: attentivechrome's smallest widths that still train (bin_hidden 3, mark_hidden 2).
EXTRA = {"attentivechrome": ["--set", "bin_hidden=3"]}
#: Genes explained: one per-gene map, 4 genes averaged; attentivechrome's gradients
#: through its LSTMs are slow on CPU, so it gets the cell means of 2 genes only.
EXPLAIN = {
    "": ("--n-genes", "1", "--max-genes", "4"),
    "attentivechrome": ("--n-genes", "0", "--max-genes", "2"),
}


def _featurize_seven(d) -> object:
    """The E003 per-base fixture written as 7 bigWigs and featurized back (7 marks, 100 bins)."""
    pytest.importorskip("pyBigWig")
    from featurize.test_featurize_bigwig import write_demo_bigwigs

    meta, specs = write_demo_bigwigs(d)
    # A second cell type (same tracks, other expression) so the cross-cell kinds can train.
    rng = np.random.default_rng(0)
    expr = meta["expression"].to_numpy()
    rpkm = d / "rpkm.csv"
    table = {"gene_id": meta["gene_id"], "E003": expr, "E004": rng.permutation(expr)}
    pd.DataFrame(table).to_csv(rpkm, index=False)
    tss = SHARED_DATA / "chromoformer_demo" / "demo_meta.csv"
    parts = []
    for cell in ("E003", "E004"):
        one = d / f"{cell}.h5"
        args = ("--tss", tss, "--expression", rpkm, "--no-progress", "-o", one)
        assert run_cli("featurize", "--cell", cell, *specs, *args) == 0
        parts.append(read_h5(one))
        assert parts[-1].marks == SEVEN and parts[-1].X.shape == (len(meta), 7, 100)
    out = d / "seven.h5"
    both = HistoneDataset.concat(parts)
    both.meta = dict(parts[0].meta)
    write_h5(both, out)
    return out


@pytest.fixture(scope="module", params=DATASETS)
def dataset(request, tmp_path_factory):
    """(name, training file, marks, number of bins, first cell) of one dataset."""
    name = request.param
    d = tmp_path_factory.mktemp(name)
    if name == "seven":
        if not (SHARED_DATA / "chromoformer_demo" / "demo_meta.csv").exists():
            pytest.skip("real demo arrays not available")
        return name, _featurize_seven(d), SEVEN, 100, "E003"
    n_bins = int(name.removeprefix("bins"))
    path = d / "train.h5"
    write_h5(planted(n_bins, n_genes=24, cells=("E003", "E004")), path)
    return name, path, SIX, n_bins, "E003"


@pytest.fixture(scope="module")
def models(dataset, tmp_path_factory):
    """Every single-cell kind trained once on ``dataset``: kind -> model directory."""
    name, path, *_ = dataset
    d = tmp_path_factory.mktemp(f"models-{name}")
    out = {}
    for kind in SINGLE:
        model = d / kind
        sets = _sets(kind) + EXTRA.get(kind, [])
        assert run_cli("train", path, "--model", kind, "-o", model, *sets) == 0, kind
        out[kind] = model
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", SINGLE)
def test_kind_goes_the_whole_way(kind, dataset, models, tmp_path, capsys):
    name, path, marks, _n_bins, cell = dataset
    model = models[kind]
    n = len(read_h5(path))
    # evaluate: a metrics table
    assert run_cli("evaluate", model, path, "-o", tmp_path / "m.csv") == 0, (name, kind)
    assert len(pd.read_csv(tmp_path / "m.csv"))
    # predict: one finite row per gene
    assert run_cli("predict", model, path, "-o", tmp_path / "p.csv") == 0, (name, kind)
    pred = pd.read_csv(tmp_path / "p.csv")
    assert len(pred) == n and np.isfinite(pred.select_dtypes("number").to_numpy()).all()
    # explain: figures for networks, one line "no gradients" for baselines
    ex = tmp_path / "explain"
    args = ("--cells", cell, "--methods", "saliency", *EXPLAIN.get(kind, EXPLAIN[""]))
    capsys.readouterr()
    code = run_cli("explain", model, "--data", path, "-o", ex, *args)
    err = capsys.readouterr().err
    if kind in NEURAL_KINDS:
        assert code == 0, (name, kind, err)
        assert list(ex.glob("*.png")) and (ex / "explain.json").is_file()
        if kind == "attentivechrome":
            assert (ex / "attention.npz").is_file()
    elif kind.startswith("atlas-"):  # explained by the reference atlas prior, not gradients
        assert code == 0, (name, kind, err)
        assert sorted(p.name for p in ex.iterdir()), (name, kind)
    else:
        assert code == 2 and "no gradients" in err and len(err.strip().splitlines()) == 1, err
    # report: a page naming every mark of the model
    assert run_cli("report", model) == 0, (name, kind)
    html = (model.parent / f"{kind}.report.html").read_text()
    assert all(m in html for m in marks), (name, kind)
