"""``--pair A:B`` through the same commands for every kind (issue 20, pairs first-class).

A differential kind and a single-cell network both train, predict, evaluate and explain
a pair through ``train``, ``predict``, ``evaluate`` and ``explain``; a differential model
asked for without a pair is refused in one line that names ``--pair``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, make_planted, run_cli
from histexpr.data.hdf5 import write_h5

LGBM = ["--set", "n_estimators=60", "--set", "learning_rate=0.1", "--set", "n_jobs=1"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A planted data file, a diff-lightgbm model and a tiny ConvNet trained on it."""
    tmp = tmp_path_factory.mktemp("pairs")
    data = write_h5(make_planted(120, ("E003", "E004", "E005", "E006"), seed=2), tmp / "d.h5")
    diff, net = tmp / "diff", tmp / "net"
    args = ("--pairs", "E003:E004,E004:E005", "--valid-fraction", "0.2", *LGBM)
    assert run_cli("train", data, "--model", "diff-lightgbm", "-o", diff, *args) == 0
    sets = ("--set", f"channels={TINY}", "--set", "epochs=2", "--set", "progress=false")
    assert run_cli("train", data, "--model", "convnet", "-o", net, *sets) == 0
    return tmp, data, diff, net


def test_a_differential_kind_through_predict_evaluate_and_explain(models, capsys):
    tmp, data, diff, _ = models
    out = tmp / "lgbm-pred.csv"
    assert run_cli("predict", diff, data, "--pair", "E005:E003", "-o", out) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["gene", "cell_a", "cell_b", "predicted_lfc"] and len(pred) == 120
    scores = tmp / "lgbm-scores.csv"
    assert run_cli("evaluate", diff, data, "--pair", "E003:E004,E003:E006", "-o", scores) == 0
    table = pd.read_csv(scores)
    assert set(table.pair) == {"E003:E004", "E003:E006"}
    assert set(table.cells) == {"seen", "unseen"} and set(table.genes) == {"new", "train"}
    assert (table.groupby("pair").n.sum() == 120).all()
    ex = tmp / "lgbm-explain"
    assert run_cli("explain", diff, "--data", data, "--pair", "E005:E003", "-o", ex) == 0
    with np.load(ex / "attributions_E005_vs_E003.npz", allow_pickle=False) as z:
        assert z["attribution"].shape == (120, 5, 100)
        # SHAP values of the trees are exact: they add up to the prediction
        total = z["attribution"].sum((1, 2)) + z["base"]
        np.testing.assert_allclose(total, z["predicted"], atol=1e-3)
        np.testing.assert_allclose(z["predicted"], pred.predicted_lfc, atol=1e-5)


def test_a_single_cell_network_explains_its_difference(models):
    tmp, data, _, net = models
    out = tmp / "net-pred.csv"
    assert run_cli("predict", net, data, "--pair", "E004:E006", "-o", out) == 0
    pred = pd.read_csv(out)
    ex = tmp / "net-explain"
    assert run_cli("explain", net, "--data", data, "--pair", "E004:E006", "-o", ex) == 0
    with np.load(ex / "attributions_E004_vs_E006.npz", allow_pickle=False) as z:
        np.testing.assert_allclose(z["predicted"], pred.predicted_lfc, atol=1e-5)
        # integrated gradients of each cell's prediction from the same zero input:
        # their difference adds up to the predicted difference
        total = z["attribution"].sum((1, 2))
        assert np.corrcoef(total, z["predicted"])[0, 1] > 0.99
        np.testing.assert_allclose(total, z["predicted"], atol=0.05 * np.abs(z["predicted"]).max())
    assert (ex / "attribution_E004_vs_E006.png").stat().st_size > 1000


def test_a_differential_model_without_a_pair_is_refused_in_one_line(models, capsys):
    tmp, data, diff, _ = models
    capsys.readouterr()
    commands = [
        ("predict", diff, data, "-o", tmp / "none.csv"),
        ("evaluate", diff, data),
        ("explain", diff, "--data", data, "-o", tmp / "none-explain"),
    ]
    for args in commands:
        assert run_cli(*args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "give a pair (--pair A:B)" in err, err
    assert not (tmp / "none.csv").exists() and not (tmp / "none-explain").exists()


def test_explain_pair_refuses_a_model_without_gradients(models, capsys):
    tmp, data, *_ = models
    ridge = tmp / "ridge"
    assert run_cli("train", data, "--model", "ridge", "-o", ridge) == 0
    capsys.readouterr()
    assert run_cli("explain", ridge, "--data", data, "--pair", "E003:E004") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no gradients" in err
