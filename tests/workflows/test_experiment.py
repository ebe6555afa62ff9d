import json

import numpy as np
import pandas as pd
import pytest

from conftest import make_planted
from histexpr.errors import HistexprError
from histexpr.workflows.experiment import ExperimentConfig, run_experiment


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    ds = make_planted(n_genes=200, cells=("E003", "E004", "E005", "E006"))
    cfg = ExperimentConfig(models=("global-mean", "gene-mean", "ridge"), unseen_cells=("E006",))
    out = tmp_path_factory.mktemp("run")
    return run_experiment(ds, out, cfg, log=lambda s: None), ds


def test_outputs_written(run):
    result, _ds = run
    d = result.run_dir
    for name in ("run.json", "results.csv", "per_cell.csv", "predictions.csv"):
        assert (d / name).is_file(), name
    for kind in ("global-mean", "gene-mean", "ridge"):
        assert (d / "models" / kind / "model.json").is_file()
    meta = json.loads((d / "run.json").read_text())
    assert meta["data"]["unseen_cells"] == ["E006"]
    assert "E006" not in meta["data"]["train_cells"]


def test_protocol_holds_out_genes_and_cells(run):
    result, _ds = run
    preds = pd.read_csv(result.run_dir / "predictions.csv")
    # held-out genes of the seen cell types, every gene of the unseen one
    assert set(preds.cell) == {"E003", "E004", "E005", "E006"}
    n_seen_genes = preds[preds.cell == "E003"].gene.nunique()
    assert 0.1 * 200 < n_seen_genes < 0.3 * 200
    assert preds[preds.cell == "E006"].gene.nunique() == 200
    assert set(result.train_cells) == {"E003", "E004", "E005"}


def test_ridge_beats_means_on_seen_and_unseen(run):
    result, _ = run
    t = result.evaluation.table.set_index(["model", "group"])
    assert {"seen/new", "unseen/known", "unseen/new"} == set(t.loc["ridge"].index) - {"all"}
    # the unseen cell type's 200 genes: training genes are known, the others new
    assert t.loc[("ridge", "unseen/known"), "n"] + t.loc[("ridge", "unseen/new"), "n"] == 200
    for group in ("seen/new", "unseen/new"):
        assert t.loc[("ridge", group), "mse"] < t.loc[("gene-mean", group), "mse"]
        # new genes have no gene mean (falls back to the global one)
        assert t.loc[("gene-mean", group), "mse"] == pytest.approx(
            t.loc[("global-mean", group), "mse"]
        )
    # known genes in an unseen cell type: their mean over the training cell types helps
    assert (
        t.loc[("gene-mean", "unseen/known"), "mse"] < t.loc[("global-mean", "unseen/known"), "mse"]
    )
    # no oracle on real-style data: ratio undefined
    assert np.isnan(t["mse_over_oracle"]).all()


def test_bad_requests_are_user_errors(tmp_path):
    ds = make_planted(n_genes=50)
    with pytest.raises(HistexprError, match="unknown model kind"):
        run_experiment(ds, tmp_path, ExperimentConfig(models=("svm",)), log=lambda s: None)
    with pytest.raises(HistexprError, match="not in data"):
        run_experiment(ds, tmp_path, ExperimentConfig(unseen_cells=("E999",)), log=lambda s: None)
    with pytest.raises(HistexprError, match="no expression"):
        run_experiment(ds.without_target(), tmp_path, ExperimentConfig(), log=lambda s: None)


def test_neural_overrides_reach_only_the_kinds_that_define_them():
    from histexpr.workflows.experiment import _neural_overrides

    cfg = ExperimentConfig(
        models=("ridge", "convnet", "deepchrome"), neural=("channels=8,8,8,8,8,8,8,8", "epochs=2")
    )
    out = _neural_overrides(cfg)
    assert out["convnet"] == ["channels=8,8,8,8,8,8,8,8", "epochs=2"]
    assert out["deepchrome"] == ["epochs=2"]  # DeepChrome has no 'channels'
    assert "ridge" not in out
    with pytest.raises(HistexprError, match="none of"):
        _neural_overrides(ExperimentConfig(models=("deepchrome",), neural=("chanels=8",)))


def test_a_differential_kind_is_refused_before_any_training(tmp_path, monkeypatch):
    """A run scores expression; a differential kind is refused in one line, nothing trained."""
    from histexpr.workflows import experiment

    def no_training(*args, **kwargs):
        raise AssertionError("a model was trained before the refusal")

    monkeypatch.setattr(experiment, "fit_estimator", no_training)
    cfg = ExperimentConfig(models=("ridge", "diff-ridge"), unseen_cells=("E005",))
    with pytest.raises(HistexprError) as exc:
        run_experiment(make_planted(n_genes=50), tmp_path / "run", cfg, log=lambda s: None)
    message = str(exc.value)
    assert "\n" not in message and "diff-ridge" in message and "--pair" in message
    assert not (tmp_path / "run").exists()  # no run directory started either


def test_the_demo_refuses_a_differential_kind_in_one_line(tmp_path, capsys):
    from conftest import run_cli

    assert run_cli("demo", "--run-dir", tmp_path / "demo", "--models", "diff-lightgbm") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "diff-lightgbm" in err and "--pair" in err
    assert not (tmp_path / "demo").exists()
