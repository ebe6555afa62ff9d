"""Differential expression from the command line, on a DeepDiff folder written by the test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_planted, run_cli
from histexpr.data.dataset import HistoneDataset
from histexpr.data.deepdiff import write_deepdiff


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("deepdiff")
    ds = make_planted(90, ("E003", "E004", "E005", "E006"), seed=4)
    split = np.where(np.arange(len(ds)) % 90 < 60, "train", "test")
    ds = HistoneDataset(
        ds.X[:, :, 35:65], np.abs(ds.y), ds.cell, ds.gene, marks=ds.marks, split=split
    )
    # DeepDiff-style file names, mapped back to cell ids with --names
    write_deepdiff(ds, d / "dd", names={"E003": "cellA", "E004": "cellB"})
    return d


NAMES = ("--names", "cellA=E003,cellB=E004")


def test_train_evaluate_predict_explain_through_the_cli(folder, tmp_path, capsys):
    dd, model, base = folder / "dd", tmp_path / "diff", tmp_path / "ridge"
    assert (
        run_cli("train", dd, "--model", "diff-ridge", "-o", model, "--train-split", "train",
                "--pairs", "E003:E004,E004:E005", *NAMES) == 0
    )  # fmt: skip
    assert "saved diff-ridge" in capsys.readouterr().out
    assert run_cli("train", dd, "--model", "ridge", "-o", base, "--train-split", "train") == 0
    capsys.readouterr()
    # evaluate a seen pair and an unseen one (E006 never trained on), the baseline beside
    table = tmp_path / "scores.csv"
    args = ("--pair", "E003:E004,E003:E006", "--split", "test", "-o", table)
    assert run_cli("evaluate", model, dd, *args, "--from-model", base, *NAMES) == 0
    scores = pd.read_csv(table)
    assert len(scores) == 4 and set(scores.cells) == {"seen", "unseen"}
    assert (scores.pearson > 0.3).all() and (scores.n == 30).all()
    capsys.readouterr()
    out = tmp_path / "p.csv"
    assert run_cli("predict", model, dd, "--pair", "E004:E003", "-o", out, *NAMES) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["gene", "cell_a", "cell_b", "predicted_lfc"]
    assert len(pred) == 90 and (pred.cell_a == "E004").all()
    ex = tmp_path / "ex"
    assert run_cli("explain", model, "--data", dd, "--pair", "E003:E005", "-o", ex, *NAMES) == 0
    with np.load(ex / "attributions_E003_vs_E005.npz", allow_pickle=False) as z:
        assert z["attribution"].shape == (90, 5, 30)
        np.testing.assert_allclose(z["attribution"].sum((1, 2)), z["predicted"], atol=1e-3)
    assert (ex / "attribution_E003_vs_E005.png").stat().st_size > 1000


def test_errors_are_one_line_exit_2(folder, tmp_path, capsys):
    dd, model = folder / "dd", tmp_path / "m"
    assert run_cli("train", dd, "--model", "diff-ridge", "-o", model, "--pairs", "E003") == 2
    assert run_cli("train", dd, "--model", "ridge", "-o", model, "--pairs", "E003:E004") == 2
    assert run_cli("train", dd, "--model", "diff-ridge", "-o", model, "--names", "x") == 2
    err = capsys.readouterr().err
    assert "CELL_A:CELL_B" in err and "differential kinds" in err and "NAME=CELL" in err


def test_valid_split_info_and_convert_read_the_folder(folder, tmp_path, capsys):
    dd, model = folder / "dd", tmp_path / "m"
    args = ("--train-split", "train", "--valid-split", "test", "--set", "max_pairs=2")
    assert run_cli("train", dd, "--model", "diff-ridge", "-o", model, *args, *NAMES) == 0
    assert "pearson" in capsys.readouterr().out  # the held-out scores per training pair
    assert run_cli("info", dd) == 0
    assert "cellA" in capsys.readouterr().out
    assert run_cli("convert", dd, tmp_path / "dd.h5") == 0
    from histexpr.data.hdf5 import read_h5

    assert sorted(read_h5(tmp_path / "dd.h5").cells) == ["E005", "E006", "cellA", "cellB"]
    assert run_cli("predict", model, dd, "-o", tmp_path / "x.csv", *NAMES) == 2
    assert "--names applies with --pair" in capsys.readouterr().err


def test_diff_convnet_through_the_cli(folder, tmp_path, capsys):
    from conftest import TINY

    dd, model = folder / "dd", tmp_path / "siamese"
    sets = ["--set", f"channels={TINY}", "--set", "epochs=3", "--pairs", "E003:E004,E004:E005"]
    args = ("--model", "diff-convnet", "-o", model, "--train-split", "train", *sets, *NAMES)
    assert run_cli("train", dd, *args) == 0
    assert "saved diff-convnet" in capsys.readouterr().out
    table = tmp_path / "scores.csv"
    args = ("--pair", "E003:E004,E003:E006", "--split", "test", "-o", table, *NAMES)
    assert run_cli("evaluate", model, dd, *args) == 0
    scores = pd.read_csv(table)
    assert set(scores.cells) == {"seen", "unseen"} and np.isfinite(scores.pearson).all()
    out = tmp_path / "p.csv"
    assert run_cli("predict", model, dd, "--pair", "E004:E003", "-o", out, *NAMES) == 0
    rev = tmp_path / "r.csv"
    assert run_cli("predict", model, dd, "--pair", "E003:E004", "-o", rev, *NAMES) == 0
    a, b = pd.read_csv(out), pd.read_csv(rev)
    np.testing.assert_allclose(a.predicted_lfc, -b.predicted_lfc, atol=1e-5)  # antisymmetric
    ex = tmp_path / "ex"
    assert run_cli("explain", model, "--data", dd, "--pair", "E003:E005", "-o", ex, *NAMES) == 0
    with np.load(ex / "attributions_E003_vs_E005.npz", allow_pickle=False) as z:
        assert z["attribution"].shape == (90, 5, 30) and np.isfinite(z["attribution"]).all()
