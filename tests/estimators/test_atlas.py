"""Atlas kinds: no leakage (by construction and by planted test), fallback, save/load."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import atlas_parts, atlas_with_truth, make_planted, quiet_predict
from histexpr.data.atlas import AtlasNotice
from histexpr.data.dataset import canonical_gene_ids
from histexpr.errors import ConfigError
from histexpr.estimators import load_estimator, make_estimator
from histexpr.estimators.histone_features import pooled_log1p

CELLS = ("E003", "E004", "E005", "E006", "E007")
LGB = {"n_estimators": 40, "n_jobs": 1, "alpha": 10.0}  # fixed alpha: no CV, fast


@pytest.fixture(scope="module")
def parts():
    return atlas_parts(CELLS)


@pytest.fixture(scope="module")
def ridge(parts):
    return make_estimator("atlas-ridge", {"alpha": 10.0}).fit(parts["train"])


def own_rows(data, cell):
    return np.flatnonzero(data.cell == cell)


@pytest.mark.parametrize("kind", ["atlas-ridge", "atlas-lightgbm"])
def test_planted_target_column_has_no_effect_on_its_own_prediction(parts, ridge, kind):
    est = ridge if kind == "atlas-ridge" else make_estimator(kind, LGB).fit(parts["train"])
    target = parts["unseen_known"]
    before = quiet_predict(est, target)
    est.atlas_ = atlas_with_truth(est.atlas_, target)
    with pytest.warns(
        AtlasNotice, match=r"atlas column\(s\) of E007 excluded while predicting them"
    ):
        after = est.predict(target)
    np.testing.assert_array_equal(before, after)
    assert est.atlas_used_.all()


def test_training_features_of_a_cell_never_see_its_own_column(parts, ridge):
    train = parts["train"]
    genes = canonical_gene_ids(train.gene)
    P = pooled_log1p(train.X, ridge.config.pool_bins)
    F0, order0, prior0, _ = ridge._features(train, genes, True, P)
    # shift E004's atlas column by 100: only the other cells' features move (the
    # temperature, like the coefficients, is learned from all cells and stays fixed here)
    atlas = ridge.atlas_
    k = list(atlas.cells).index("E004")
    values = atlas.values.copy()
    values[:, k] += 100.0
    ridge.atlas_ = dataclasses.replace(atlas, values=values)
    try:
        F1, order1, prior1, _ = ridge._features(train, genes, True, P)
    finally:
        ridge.atlas_ = atlas
    np.testing.assert_array_equal(order0, order1)
    own = train.cell[order0] == "E004"
    np.testing.assert_array_equal(F0[own], F1[own])
    np.testing.assert_array_equal(prior0[own_rows(train, "E004")], prior1[own_rows(train, "E004")])
    assert not np.allclose(F0[~own], F1[~own])


def test_atlas_beats_histone_only_on_known_genes_and_falls_back_on_new_ones(parts, ridge):
    plain = make_estimator("ridge", {"alpha": 10.0}).fit(parts["train"])
    known, new = parts["unseen_known"], parts["unseen_new"]
    mse = lambda est, d: float(np.mean((quiet_predict(est, d) - d.y) ** 2))  # noqa: E731
    assert mse(ridge, known) < 0.8 * mse(plain, known)
    assert ridge.atlas_used_ is not None
    # genes absent from the atlas: exactly the histone-only model of the same family
    np.testing.assert_allclose(quiet_predict(ridge, new), plain.predict(new), rtol=1e-5)
    assert not ridge.atlas_used_.any() and np.isnan(ridge.prior_).all()


@pytest.mark.parametrize("kind", ["atlas-ridge", "atlas-lightgbm"])
def test_save_load_round_trip(parts, ridge, kind, tmp_path):
    est = ridge if kind == "atlas-ridge" else make_estimator(kind, LGB).fit(parts["train"])
    est.save(tmp_path / "m")
    assert (tmp_path / "m" / "atlas.npz").is_file()
    assert not list((tmp_path / "m").rglob("*.pkl"))
    back = load_estimator(tmp_path / "m")
    assert back.kind == kind
    for d in (parts["unseen_known"], parts["unseen_new"]):
        np.testing.assert_allclose(quiet_predict(back, d), quiet_predict(est, d), rtol=1e-5)
        np.testing.assert_array_equal(back.atlas_used_, est.atlas_used_)


def test_user_table_atlas_with_other_cell_types(parts, tmp_path):
    # a table of reference cells that are not in the training data (transformed values)
    train = parts["train"]
    genes = np.unique(train.gene)
    y = pd.DataFrame({"gene": train.gene, "cell": train.cell, "y": train.y})
    wide = y.pivot_table(index="gene", columns="cell", values="y").loc[genes]
    table = pd.DataFrame({"gene": genes, "REF1": wide.mean(axis=1).to_numpy()})
    table["REF2"] = table["REF1"] + 0.5
    table.to_csv(tmp_path / "atlas.tsv", sep="\t", index=False)
    est = make_estimator(
        "atlas-ridge",
        {"atlas": str(tmp_path / "atlas.tsv"), "atlas_values": "transformed", "alpha": 10.0},
    )
    est.fit(train)
    assert list(est.atlas_.cells) == ["REF1", "REF2"] and est.metrics_["atlas_cells"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", AtlasNotice)  # no column shares a predicted cell's id
        pred = est.predict(parts["unseen_known"])
    assert est.atlas_used_.all() and np.isfinite(pred).all()


def test_roadmap_source_and_exclusion_by_config():
    from histexpr.data.reference import load_expression

    genes = load_expression().index[:80].to_numpy()
    data = make_planted(n_genes=80, cells=("E003", "E004", "E005"), seed=1)
    data.gene = np.tile(genes, 3)
    est = make_estimator(
        "atlas-ridge", {"atlas": "roadmap", "atlas_exclude": "E005,E006", "alpha": 10.0}
    )
    est.fit(data.select_cells(["E003", "E004"]))
    assert len(est.atlas_.cells) == 54 and "E005" not in est.atlas_.cells
    pred = quiet_predict(est, data.select_cells(["E005"]))
    assert est.atlas_used_.all() and pred.shape == (80,)


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="atlas_values"):
        make_estimator("atlas-ridge", {"atlas_values": "log"})
    with pytest.raises(ConfigError, match="temperature"):
        make_estimator("atlas-lightgbm", {"temperature": -1})


def test_atlas_lightgbm_max_rows_caps_both_boosted_models():
    data = make_planted(n_genes=60, cells=("E003", "E004", "E005"), seed=3)
    sets = ["n_estimators=20", "n_jobs=1", "alpha=10", "max_rows=90"]
    est = make_estimator("atlas-lightgbm", sets).fit(data)
    assert est.metrics_["fallback_rows"] == 90 and est.metrics_["residual_rows"] == 90
    full = make_estimator("atlas-lightgbm", [*sets[:3], "max_rows=0"]).fit(data)
    assert full.metrics_["fallback_rows"] == len(data)
    assert np.isfinite(est.predict(data)).all()
    with pytest.raises(ConfigError, match="max_rows"):
        make_estimator("atlas-lightgbm", ["max_rows=-1"])
