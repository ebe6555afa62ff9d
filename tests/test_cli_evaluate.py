"""``histexpr evaluate`` and ``histexpr predict`` through the command line.

A model trained on two cell types (E003, E004) and the first 100 of 150 genes is
evaluated on data with a third cell type (E005) and 50 more genes: every group
appears with its size, training genes are flagged, wrong ``--unseen`` ids are
one-line errors; predictions come out tidy (any cell id), as the course
submission, or as Parquet.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_planted, run_cli
from histexpr.data.hdf5 import write_h5
from histexpr.evaluate import TRAINING_GROUP

N_GENES, N_TRAIN_GENES = 150, 100


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from histexpr.workflows.evaluate import training_record

    d = tmp_path_factory.mktemp("cli_evaluate")
    data = make_planted(n_genes=N_GENES, cells=("E003", "E004", "E005"))
    write_h5(data, d / "all.h5")
    write_h5(data.select_genes(np.unique(data.gene)[:N_TRAIN_GENES]), d / "train.h5")
    code = run_cli(
        "train", d / "train.h5", "--model", "ridge", "--cells", "E003,E004", "-o", d / "ridge"
    )
    assert code == 0
    cells, genes = training_record(d / "ridge")
    if cells is None or genes is None:
        pytest.skip("ridge does not record its training cells and genes (bundle contract)")
    return d, data, cells, genes


def test_groups_appear_with_their_sizes(files, tmp_path, capsys):
    d, data, cells, genes = files
    assert sorted(cells) == ["E003", "E004"]
    capsys.readouterr()
    out = tmp_path / "ev.csv"
    assert run_cli("evaluate", d / "ridge", d / "all.h5", "-o", out, "--per-cell") == 0
    printed = capsys.readouterr()
    n = pd.read_csv(out).set_index("group")["n"]
    n_known = len(genes)  # training genes (the record; valid genes are held out)
    assert n_known < N_TRAIN_GENES
    assert n["seen/new"] == 2 * (N_GENES - n_known)
    assert n["unseen/known"] == n_known
    assert n["unseen/new"] == N_GENES - n_known
    assert n[TRAINING_GROUP] == 2 * n_known
    assert n["all"] == len(data) - 2 * n_known
    # the table names the groups; the warning flags the training-gene rows, on one line
    assert "unseen x known genes" in printed.out
    warnings = [line for line in printed.err.splitlines() if line.startswith("warning:")]
    assert any(f"{2 * n_known} of {len(data)} examples are training genes" in w for w in warnings)
    # --per-cell printed the per-cell table; -o wrote it beside the group table
    per_cell = pd.read_csv(tmp_path / "ev.per_cell.csv")
    assert set(per_cell.cell) == {"E003", "E004", "E005"}
    assert "per cell type" in printed.out and "E005" in printed.out
    flagged = per_cell[per_cell.group == TRAINING_GROUP]
    assert set(flagged.cell) == {"E003", "E004"} and (flagged.n == n_known).all()


@pytest.mark.parametrize(
    "unseen, needle",
    [
        ("E003", "E003 is a training cell type of the model (trained on: E003, E004)"),
        ("E999", "unknown cell type(s) E999; known: E003, E004, E005"),
    ],
)
def test_wrong_unseen_is_a_one_line_error(files, capsys, unseen, needle):
    d, *_ = files
    assert run_cli("evaluate", d / "ridge", d / "all.h5", "--unseen", unseen) == 2
    err = capsys.readouterr().err
    assert needle in " ".join(err.split()) and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("option, value", [("--exclude-cells", "e071"), ("--cells", "E003,E999")])
def test_train_rejects_unknown_cells(files, tmp_path, capsys, option, value):
    d, *_ = files
    assert (
        run_cli("train", d / "all.h5", "--model", "ridge", option, value, "-o", tmp_path / "m") == 2
    )
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown cell type(s)" in err and "known: E003, E004, E005" in err
    assert not (tmp_path / "m").exists()


def test_predict_tidy_any_cell_id_submission_and_parquet(files, tmp_path):
    from histexpr.data.submission import read_predictions, read_submission

    d, data, *_ = files
    mine = make_planted(n_genes=30, cells=("my_cell",), seed=4).without_target()
    write_h5(mine, tmp_path / "mine.h5")
    tidy = tmp_path / "p.csv"
    assert run_cli("predict", d / "ridge", tmp_path / "mine.h5", "-o", tidy) == 0
    df = read_predictions(tidy)
    assert list(df.columns[:3]) == ["cell", "gene", "prediction"]
    assert (df.cell == "my_cell").all() and len(df) == 30 and np.isfinite(df.prediction).all()
    # the course format needs {cell}_{gene} ids: an id with '_' is refused there only
    sub = tmp_path / "sub.csv"
    assert (
        run_cli("predict", d / "ridge", tmp_path / "mine.h5", "-o", sub, "--format", "submission")
        == 2
    )
    assert not sub.exists()
    assert run_cli("predict", d / "ridge", d / "all.h5", "-o", sub, "--format", "submission") == 0
    s = read_submission(sub)
    assert list(s.columns[:2]) == ["id", "expression"] and len(s) == len(data)
    # Parquet by suffix: the same table, streamed in small blocks
    pq = tmp_path / "p.parquet"
    assert run_cli("predict", d / "ridge", d / "all.h5", "-o", pq, "--memory", "100k") == 0
    assert run_cli("predict", d / "ridge", d / "all.h5", "-o", tmp_path / "all.csv") == 0
    a, b = read_predictions(pq), read_predictions(tmp_path / "all.csv")
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    np.testing.assert_allclose(s.expression.to_numpy(), b.prediction.to_numpy())


def test_predict_refuses_to_overwrite_its_input(files, tmp_path, capsys):
    d, data, *_ = files
    write_h5(data.without_target(), tmp_path / "in.h5")
    before = (tmp_path / "in.h5").read_bytes()
    assert run_cli("predict", d / "ridge", tmp_path / "in.h5", "-o", tmp_path / "in.h5") == 2
    assert "input" in capsys.readouterr().err
    assert (tmp_path / "in.h5").read_bytes() == before


def test_classifier_writes_probability_high():
    from histexpr.estimators.bundle import BundleHeader
    from histexpr.workflows.predict import model_task

    header = BundleHeader(kind="convnet", config={}, marks=("H3K4me3",), n_bins=10)
    assert model_task(header) == "regression"
    flagged = BundleHeader("convnet", {}, ("H3K4me3",), 10, extra={"task": "classification"})
    assert model_task(flagged) == "classification"


def test_model_flags_join_the_tidy_table(files, tmp_path, monkeypatch):
    """A kind that says per example whether something special applied (atlas_used_)."""
    from histexpr.data.submission import read_predictions
    from histexpr.workflows import predict as predict_module

    d, data, *_ = files
    real_load = predict_module._load_model

    def load_flagging(model_dir):
        est = real_load(model_dir)
        predict = est.predict

        def flagging_predict(block, *args, **kwargs):
            est.atlas_used_ = block.gene < "ENSG00000000050"
            return predict(block, *args, **kwargs)

        est.predict = flagging_predict
        return est

    monkeypatch.setattr(predict_module, "_load_model", load_flagging)
    lines = []
    out = tmp_path / "flags.csv"
    n = predict_module.predict_file(
        d / "ridge", d / "all.h5", out, memory_budget="100k", log=lines.append
    )
    df = read_predictions(out)
    assert list(df.columns) == ["cell", "gene", "prediction", "atlas_used"]
    assert df.atlas_used.sum() == 3 * 50 and n == len(data)
    assert lines == [f"atlas_used: 150 of {len(data)} predictions"]


def test_split_selects_examples_before_predicting(files, tmp_path, capsys):
    from dataclasses import replace

    from histexpr.data.submission import read_predictions

    d, data, *_ = files
    split = np.where(np.arange(len(data)) % 3 == 0, "test", "train")
    write_h5(replace(data, split=split), tmp_path / "split.h5")
    out = tmp_path / "ev.csv"
    args = ("evaluate", d / "ridge", tmp_path / "split.h5", "-o", out, "--memory", "100k")
    assert run_cli(*args, "--split", "test") == 0
    table = pd.read_csv(out).set_index("group")
    assert table.loc["all", "n"] + table.loc[TRAINING_GROUP, "n"] == (split == "test").sum()
    pred = tmp_path / "p.csv"
    assert (
        run_cli("predict", d / "ridge", tmp_path / "split.h5", "-o", pred, "--split", "test") == 0
    )
    assert len(read_predictions(pred)) == (split == "test").sum()
    capsys.readouterr()
    assert run_cli("evaluate", d / "ridge", tmp_path / "split.h5", "--split", "tset") == 2
    assert "no examples in split 'tset' (splits: test, train)" in capsys.readouterr().err
    assert run_cli("evaluate", d / "ridge", d / "all.h5", "--split", "test") == 2
    assert "no split field" in capsys.readouterr().err


def test_report_rejects_unknown_cells(tmp_path, capsys):
    from fake_run import make_fake_run

    run = make_fake_run(tmp_path / "run")
    assert run_cli("report", run, "--cells", "E003,E999", "-o", tmp_path / "r.html") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--cells: unknown cell type(s) E999; known: E003, E004, E071" in err
    assert not (tmp_path / "r.html").exists()
