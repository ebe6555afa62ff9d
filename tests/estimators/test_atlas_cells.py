"""Atlas kinds: a gene's prediction does not depend on the batch (issue #24); the
per-cell similarity and temperature; an atlas model is no worse than its prior on an
unlike cell type (issue #22)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import FAST, make_planted, quiet_atlas, run_cli
from histexpr.data.hdf5 import write_h5
from histexpr.errors import DataError
from histexpr.estimators import make_estimator
from histexpr.estimators.atlas_cells import MIN_CELL_GENES, FewGenesNotice, cell_state

CELLS = ("E003", "E004", "E005", "E006")
# A sharp fixed temperature: the prior then follows the estimated similarity closely,
# so a similarity estimated per block would change the predictions (the planted cells
# are alike, and the temperature chosen per cell would be the plain mean).
SHARP = {"alpha": 10.0, "temperature": 0.05}
SETS = {
    "atlas-ridge": SHARP,
    "atlas-lightgbm": {"n_estimators": 30, "n_jobs": 1, **SHARP},
    "atlas-convnet": {**FAST, "epochs": 2, "n_folds": 1, **SHARP},
}


@pytest.fixture(scope="module")
def data():
    # just enough genes to estimate each cell's similarity (MIN_CELL_GENES)
    return make_planted(n_genes=MIN_CELL_GENES + 40, cells=CELLS, seed=5)


@pytest.fixture(scope="module", params=list(SETS))
def fitted(request, data):
    kind = request.param
    train = data.subset(data.cell != "E006")
    return quiet_atlas(make_estimator(kind, SETS[kind]).fit, train)


def _blocks(ds, size):
    return [ds.subset(np.arange(i, min(i + size, len(ds)))) for i in range(0, len(ds), size)]


def test_prediction_of_a_gene_does_not_depend_on_the_batch(fitted, data):
    new = data.subset(data.cell == "E006")
    alone = quiet_atlas(fitted.predict, new)
    assert np.isfinite(alone).all() and fitted.atlas_used_.all()
    # inside a bigger input, shuffled, beside other cell types
    big = data.subset(np.random.default_rng(0).permutation(len(data)))
    inside = quiet_atlas(fitted.predict, big)
    pos = pd.Series(np.arange(len(big)), index=big.cell + "/" + big.gene)
    np.testing.assert_allclose(inside[pos[new.cell + "/" + new.gene].to_numpy()], alone, atol=1e-5)
    # in tiny blocks after a first pass over the whole input (what streaming does)
    blocks = _blocks(big, 97)
    naive = np.concatenate([quiet_atlas(fitted.predict, b) for b in blocks])
    assert np.abs(naive - inside).max() > 1e-3  # without it, the blocks would matter
    quiet_atlas(fitted.prepare_cells, iter(blocks))
    try:
        streamed = np.concatenate([quiet_atlas(fitted.predict, b) for b in blocks])
    finally:
        fitted.prepare_cells(None)
    np.testing.assert_allclose(streamed, inside, atol=1e-5)


def test_cli_predictions_equal_with_a_tiny_memory_budget_and_in_a_bigger_file(tmp_path):
    data = make_planted(n_genes=MIN_CELL_GENES + 40, cells=CELLS, seed=6)
    write_h5(data.subset(data.cell != "E006"), tmp_path / "train.h5")
    write_h5(data.subset(data.cell == "E006").without_target(), tmp_path / "alone.h5")
    shuffled = data.subset(np.random.default_rng(1).permutation(len(data)))
    write_h5(shuffled.without_target(), tmp_path / "big.h5")
    model = tmp_path / "m"
    args = ["train", tmp_path / "train.h5", "--model", "atlas-ridge", "-o", model]
    assert run_cli(*args, "--set", "alpha=10", "--set", "temperature=0.05") == 0
    outs = {}
    for name, src, memory in [
        ("alone", "alone", "512MB"),
        ("tiny", "alone", "200KB"),
        ("big", "big", "512MB"),
        ("big_tiny", "big", "200KB"),
    ]:
        out = tmp_path / f"{name}.csv"
        cmd = ["predict", model, tmp_path / f"{src}.h5", "-o", out, "--memory", memory]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert run_cli(*cmd) == 0
        t = pd.read_csv(out)
        outs[name] = t[t["cell"] == "E006"].set_index("gene")["prediction"].sort_index()
    for name in ("tiny", "big", "big_tiny"):
        np.testing.assert_allclose(outs[name].to_numpy(), outs["alone"].to_numpy(), atol=1e-5)


def test_too_few_genes_is_one_notice_and_the_plain_mean(fitted, data):
    few = data.subset((data.cell == "E006") & np.isin(data.gene, np.unique(data.gene)[:40]))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fitted.predict(few)
    lines = [str(w.message) for w in seen if issubclass(w.category, FewGenesNotice)]
    assert len(lines) == 1 and "E006 (40)" in lines[0] and "\n" not in lines[0]
    # the plain mean does not depend on which other genes of the cell are predicted
    part = quiet_atlas(fitted.predict, few.subset(np.arange(20)))
    np.testing.assert_allclose(part, quiet_atlas(fitted.predict, few)[:20], atol=1e-5)


def test_cell_state_does_not_depend_on_gene_order_and_picks_a_close_cell():
    rng = np.random.default_rng(0)
    n = 2 * MIN_CELL_GENES
    genes = np.array([f"ENSG{i:011d}" for i in range(n)])
    base = rng.normal(4, 2, n)
    ref = base[:, None] + rng.normal(0, 1, (n, 8))
    twin = ref[:, 3] + rng.normal(0, 0.1, n)  # the cell is nearly reference cell 3
    score = twin + rng.normal(0, 0.5, n)
    state = cell_state(genes, score, ref)
    perm = rng.permutation(n)
    again = cell_state(genes[perm], score[perm], ref[perm])
    np.testing.assert_array_equal(state.corr, again.corr)
    assert state.temperature == again.temperature and np.isfinite(state.temperature)
    assert int(np.argmax(state.corr)) == 3
    # a cell like none of them: the smooth prior (the mean)
    lone = base + rng.normal(0, 1, n) + rng.normal(0, 0.5, n)
    assert cell_state(genes, lone, ref).temperature >= 0.5
    assert not cell_state(genes[:10], score[:10], ref[:10]).estimated


def test_log_scaled_table_is_refused_as_rpkm(tmp_path):
    from histexpr.data.atlas import read_atlas_table

    rng = np.random.default_rng(0)
    genes = [f"ENSG{i:011d}" for i in range(200)]
    rpkm = pd.DataFrame(rng.lognormal(1.5, 2.0, (200, 3)), index=genes, columns=["A", "B", "C"])
    rpkm.index.name = "gene"
    rpkm.to_csv(tmp_path / "rpkm.csv")
    np.log2(rpkm + 1).to_csv(tmp_path / "log.csv")
    assert read_atlas_table(tmp_path / "rpkm.csv", "rpkm").values.shape == (200, 3)
    with pytest.raises(DataError, match="already log-scaled"):
        read_atlas_table(tmp_path / "log.csv", "rpkm")
    assert read_atlas_table(tmp_path / "log.csv", "transformed").values.shape == (200, 3)


@pytest.fixture(scope="module")
def unlike_pair():
    """The simulator's ES line and leukaemia line (real Roadmap expression as targets)."""
    from histexpr.simulator import SimulatorConfig
    from histexpr.simulator.generate import simulate

    return simulate(SimulatorConfig(cells=("E003", "E123"), n_genes=800, seed=0))


@pytest.mark.parametrize("train_cell,new_cell", [("E003", "E123"), ("E123", "E003")])
def test_atlas_is_no_worse_than_its_prior_or_histone_only_on_an_unlike_cell(
    unlike_pair, train_cell, new_cell
):
    from histexpr.data.atlas import roadmap_atlas
    from histexpr.data.dataset import canonical_gene_ids

    data = unlike_pair
    genes = np.unique(data.gene)
    held = np.random.default_rng(0).permutation(genes)[: len(genes) // 4]
    train = data.subset((data.cell == train_cell) & ~np.isin(data.gene, held))
    est = quiet_atlas(make_estimator("atlas-ridge", {"atlas": "roadmap"}).fit, train)
    new = data.subset(data.cell == new_cell)  # all its genes in the input
    scored = np.isin(new.gene, held)  # scored on the genes never trained on
    y = new.y[scored]
    atlas = roadmap_atlas().without([new_cell])
    rows, _ = atlas.rows(canonical_gene_ids(new.gene[scored]))
    mse = {
        "atlas": np.mean((quiet_atlas(est.predict, new)[scored] - y) ** 2),
        "prior": np.mean((np.nanmean(atlas.values[rows], axis=1) - y) ** 2),
        "histone": np.mean((est.fallback_.predict(new)[scored] - y) ** 2),
    }
    assert mse["atlas"] <= min(mse["prior"], mse["histone"]), mse
