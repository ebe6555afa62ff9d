"""End-to-end tests of the command line (baseline models; neural ones in test_train)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import make_planted
from histexpr.cli import main
from histexpr.data.hdf5 import write_h5


def run_cli(*args) -> int:
    try:
        main(list(map(str, args)))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    ds = make_planted(n_genes=150)
    write_h5(ds, d / "train.h5")
    test = make_planted(n_genes=150, cells=("E003", "E071"), seed=1)
    write_h5(test, d / "test.h5")
    write_h5(test.without_target(), d / "eval.h5")
    return d


def test_train_evaluate_predict_round_trip(data_files, tmp_path, capsys):
    model = tmp_path / "ridge"
    assert run_cli("train", data_files / "train.h5", "--model", "ridge", "-o", model) == 0
    assert (model / "model.json").is_file()
    assert (
        run_cli(
            "evaluate", model, data_files / "test.h5", "--unseen", "E071", "-o", tmp_path / "m.csv"
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "m.csv")
    assert set(table.group) == {"all", "seen", "unseen"}
    assert (table.r2 > 0.5).all()
    sub = tmp_path / "sub.csv"
    assert run_cli("predict", model, data_files / "eval.h5", "-o", sub, "--batch-size", "64") == 0
    df = pd.read_csv(sub)
    assert list(df.columns) == ["id", "expression"]
    assert len(df) == 300 and df.id.is_unique
    assert df.id.iloc[0].startswith("E003_ENSG")
    # streaming in small blocks gives the same predictions as one block
    sub2 = tmp_path / "sub2.csv"
    assert run_cli("predict", model, data_files / "eval.h5", "-o", sub2) == 0
    np.testing.assert_allclose(pd.read_csv(sub2).expression, df.expression)


def test_info_prints_summary(data_files, capsys):
    assert run_cli("info", data_files / "train.h5") == 0
    out = capsys.readouterr().out
    assert "E003" in out and "H3K4me3" in out


def test_user_errors_are_one_line_exit_2(tmp_path, capsys):
    assert run_cli("info", tmp_path / "missing.h5") == 2
    err = capsys.readouterr().err
    assert "missing.h5" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert run_cli("train", tmp_path / "missing.h5", "--model", "nope", "-o", tmp_path / "m") == 2


def test_unknown_option_exits_2():
    assert run_cli("train", "--bogus") == 2


def test_predict_refuses_model_dir_that_is_not_a_model(data_files, tmp_path, capsys):
    assert run_cli("predict", tmp_path, data_files / "eval.h5", "-o", tmp_path / "x.csv") == 2
    assert "not a model directory" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_debug_flag_shows_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "histexpr", "--debug", "info", str(tmp_path / "missing.h5")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "histexpr", "info", str(tmp_path / "missing.h5")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
