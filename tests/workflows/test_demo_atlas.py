"""The demo's atlas models and differential section, and ``explain`` of an atlas model.

Tiny planted data; the embedded data set is patched, so the real demo is untouched.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_planted
from histexpr import runs
from histexpr.data.hdf5 import write_h5
from histexpr.errors import HistexprError
from histexpr.estimators import make_estimator
from histexpr.workflows import demo

CELLS = ("E003", "E004", "E005", "E006", "E071")
GROUPS = {"seen/new", "unseen/known", "unseen/new"}


@pytest.fixture(scope="module")
def planted():
    data = make_planted(n_genes=80, cells=CELLS, seed=2)
    data.meta["unseen_cells"] = ["E071"]
    return data


def test_demo_lists_the_atlas_kinds():
    from histexpr.estimators import KINDS

    atlas = {"atlas-ridge", "atlas-lightgbm", "atlas-convnet"}
    assert atlas <= set(demo.DEMO_MODELS) and atlas <= set(KINDS)
    assert set(demo.DEFAULT_MODELS) <= set(demo.DEMO_MODELS)


def test_demo_neural_settings_reach_atlas_convnet():
    from histexpr.workflows.experiment import ExperimentConfig, _neural_overrides

    config = ExperimentConfig(
        models=("ensemble", "atlas-convnet", "ridge"), neural=demo.DEMO_NEURAL
    )
    over = _neural_overrides(config)
    assert set(over) == {"ensemble", "atlas-convnet"}
    assert over["atlas-convnet"] == over["ensemble"] and len(over["ensemble"]) == 4


@pytest.mark.slow
def test_demo_scores_atlas_in_three_groups_and_writes_differential(planted, tmp_path, monkeypatch):
    import histexpr.simulator

    path = write_h5(planted, tmp_path / "sim.h5")
    monkeypatch.setattr(histexpr.simulator, "default_dataset", lambda: path)
    lines = []
    result = demo.run_demo(tmp_path / "run", models=("ridge", "atlas-ridge"), log=lines.append)
    table = result.evaluation.table
    atlas_groups = set(table.loc[table["model"] == "atlas-ridge", "group"])
    assert GROUPS <= atlas_groups
    run = runs.read_run(result.run_dir)
    # predictions.csv records each example's group, the same groups the table scores
    assert GROUPS == set(run.predictions()["group"]) - {"seen/train"}
    assert "group" not in run.prediction_columns()
    assert run.has_differential()
    diff = run.differential()
    assert {"diff-ridge", "ridge difference"} <= set(diff["model"])
    assert any("diff-ridge" in line and "E003:E004" in line for line in lines)
    html = (result.run_dir / "report.html").read_text(encoding="utf-8")
    assert 'id="differential"' in html
    assert "unseen/known" in html and 'data-kind="pred-vs-obs"' in html


def test_report_reads_runs_without_group_column(planted, tmp_path, monkeypatch):
    import histexpr.simulator
    from histexpr.report import write_report

    path = write_h5(planted, tmp_path / "sim.h5")
    monkeypatch.setattr(histexpr.simulator, "default_dataset", lambda: path)
    result = demo.run_demo(
        tmp_path / "run", models=("gene-mean",), report=False, differential=False
    )
    preds = result.run_dir / runs.PREDICTIONS
    pd.read_csv(preds).drop(columns="group").to_csv(preds, index=False)  # an older run
    assert not (result.run_dir / runs.DIFFERENTIAL).exists()
    html = write_report(result.run_dir).read_text(encoding="utf-8")
    assert 'data-kind="pred-vs-obs"' in html and 'id="differential"' not in html


def test_explain_atlas_model_writes_prior_and_prediction(planted, tmp_path):
    from histexpr.report import write_report
    from histexpr.workflows.explain import explain_run

    train = planted.subset(planted.cell != "E071")
    est = make_estimator("atlas-ridge", {"alpha": 10.0}).fit(train)
    model_dir = tmp_path / "atlas"
    est.save(model_dir)
    result = explain_run(model_dir, planted, cells=["E003", "E071"], show_progress=False)
    table = runs.read_atlas_prior(result.out_dir)
    assert table is not None and set(table["cell"]) == {"E003", "E071"}
    part = planted.select_cells(["E003", "E071"])
    with pytest.warns(Warning):
        expected = est.predict(part)
    np.testing.assert_allclose(table["prediction"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(table["observed"], part.y, rtol=1e-5, atol=1e-5)
    has = table["prior"].notna()
    assert has.any()
    np.testing.assert_allclose(table["prior"][has], est.prior_[has.to_numpy()], rtol=1e-5)
    assert any("atlas model" in n for n in result.notes)
    html = write_report(model_dir).read_text(encoding="utf-8")
    assert 'data-kind="atlas-prior"' in html


def test_explain_still_refuses_a_plain_baseline(planted, tmp_path):
    from histexpr.workflows.explain import explain_run

    make_estimator("ridge", {"alpha": 10.0}).fit(planted).save(tmp_path / "ridge")
    with pytest.raises(HistexprError, match="no gradients"):
        explain_run(tmp_path / "ridge", planted, show_progress=False)


def test_explain_atlas_convnet_writes_prior_and_histone_attributions(planted, tmp_path):
    from conftest import TINY
    from histexpr.explain import attribute
    from histexpr.report import write_report
    from histexpr.workflows.explain import explain_run

    train = planted.subset(planted.cell != "E071")
    sets = {"channels": TINY, "n_folds": 1, "epochs": 2, "progress": False, "threads": 1}
    est = make_estimator("atlas-convnet", {**sets, "alpha": 10.0}).fit(train)
    model_dir = tmp_path / "atlas-convnet"
    est.save(model_dir)
    result = explain_run(
        model_dir,
        planted,
        cells=["E003", "E071"],
        methods=["input_x_gradient"],
        n_genes=3,
        show_progress=False,
    )
    table = runs.read_atlas_prior(result.out_dir)
    assert table is not None and table["prior"].notna().any()
    # the per-gene attributions are those of the network with the atlas features fixed
    ga = result.genes["input_x_gradient"]
    part = planted.select_cells(["E003", "E071"])
    rows = np.flatnonzero(np.isin(part.gene, ga.gene) & np.isin(part.cell, ga.cell))
    side = est.side_inputs(part)
    again = attribute(est.model_, part.X[rows], "input_x_gradient", side=side[rows])
    np.testing.assert_allclose(ga.values, again, rtol=1e-4, atol=1e-6)
    assert (result.out_dir / runs.attribution_file("input_x_gradient")).is_file()
    html = write_report(model_dir).read_text(encoding="utf-8")
    assert 'data-kind="atlas-prior"' in html
