"""The DeepChrome protocol (histexpr.workflows.protocol) and the split options of the CLI."""

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import REPO_ROOT
from histexpr.cli import app, main
from histexpr.data.deepchrome import read_deepchrome
from histexpr.estimators import load_estimator
from histexpr.evaluate import compute_metrics
from histexpr.workflows.protocol import COLUMNS, run_protocol

TOY = REPO_ROOT / "tests" / "data" / "fixtures" / "deepchrome" / "toy"


@pytest.fixture
def two_cells(tmp_path):
    """The real toy rows as two cell types, in the public archive's layout."""
    for c in ("E003", "E004"):
        shutil.copytree(TOY, tmp_path / "dc" / c / "classification")
    return tmp_path / "dc"


def test_per_cell_protocol_scores_each_cell_on_its_test_file(two_cells, tmp_path):
    res = run_protocol(two_cells, tmp_path / "out", model="ridge", log=lambda m: None)
    t = res.table
    assert list(t.columns) == list(COLUMNS)
    assert t.cell.tolist() == ["E003", "E004", "mean"]
    # the mean row averages metrics; it sums no counts (issue 24)
    assert t.n_test.tolist()[:2] == [10, 10] and t.n_valid.tolist()[:2] == [10, 10]
    assert t[["n_train", "n_valid", "n_test"]].iloc[2].isna().all()
    # labels: AUC only; the AUC is that of the saved model on test.csv
    assert t.mse.isna().all() and t.pearson.isna().all()
    test = read_deepchrome(two_cells, cells=["E004"], splits=("test",))
    pred = load_estimator(res.model_dirs["E004"]).predict(test)
    assert t.auc[1] == pytest.approx(compute_metrics(test.y, pred, test.cell).auc)
    assert t.auc[2] == pytest.approx(t.auc[:2].mean())
    pd.testing.assert_frame_equal(pd.read_csv(res.table_path), t, check_dtype=False)


def test_joint_protocol_with_rpkm_targets_adds_mse_and_r(two_cells, tmp_path):
    res = run_protocol(
        two_cells, tmp_path / "out", model="ridge", joint=True, target="rpkm", log=lambda m: None
    )
    assert list(res.model_dirs) == ["joint"]
    t = res.table.set_index("cell")
    assert np.isfinite(t[["auc", "mse", "pearson"]].to_numpy()).all()
    assert t.loc["mean", "mse"] == pytest.approx(t.loc[["E003", "E004"], "mse"].mean())
    # the joint model scores E004's own RPKM column (X is the same as E003's, y is not)
    test = read_deepchrome(two_cells, cells=["E004"], splits=("test",), target="rpkm")
    pred = load_estimator(res.model_dirs["joint"]).predict(test)
    assert t.loc["E004", "mse"] == pytest.approx(float(np.mean((test.y - pred) ** 2)), rel=1e-5)


def test_protocol_skips_cells_without_a_test_file(two_cells, tmp_path):
    (two_cells / "E004" / "classification" / "test.csv").unlink()
    logs = []
    res = run_protocol(two_cells, tmp_path / "out", model="global-mean", log=logs.append)
    assert res.table.cell.tolist() == ["E003", "mean"]
    assert any("E004: skipped" in m for m in logs)


def test_cli_train_on_train_split_evaluate_on_test_split_and_protocol(two_cells, tmp_path, capsys):
    runner = CliRunner()
    model = tmp_path / "m"
    r = runner.invoke(
        app,
        ["train", str(two_cells), "-o", str(model), "--model", "ridge",
         "--train-split", "train", "--valid-split", "valid"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "validation: split 'valid' (20 examples)" in r.output
    assert "training ridge on 20 examples" in r.output and "chosen by" in r.output
    r = runner.invoke(app, ["evaluate", str(model), str(two_cells), "--split", "test"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["info", str(two_cells)])
    assert "splits: train 20, valid 20, test 20" in r.output
    with pytest.raises(SystemExit) as exc:
        main(["train", str(TOY), "-o", str(tmp_path / "m2"), "--valid-split", "dev"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error:") and "dev not in data" in err
    r = runner.invoke(
        app, ["protocol", str(two_cells), "-o", str(tmp_path / "p"), "--model", "ridge", "--joint"]
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p" / "protocol.csv").is_file() and (tmp_path / "p" / "model").is_dir()
