"""Console output a user can read and plan with: notices as one plain line, once;
tables that never wrap a number in a log; progress lines with the time left."""

from __future__ import annotations

import itertools
import warnings
from types import SimpleNamespace

import pytest

from conftest import make_planted, run_cli
from histexpr import _runtime
from histexpr._runtime import Notice, PlainProgress, Steps, notice, plain_warnings, progress
from histexpr.data.hdf5 import write_h5
from histexpr.estimators import make_estimator

NOTICE = "genes are not among the training genes"


@pytest.fixture(scope="module")
def gene_mean(tmp_path_factory):
    """A gene-mean model on 60 genes and test data with 30 genes it never saw; the model
    directory's name is longer than a terminal line."""
    d = tmp_path_factory.mktemp("console")
    write_h5(make_planted(n_genes=90, cells=("E003", "E071"), seed=1), d / "test.h5")
    model = d / ("gene-mean-model-" + "x" * 100)
    make_estimator("gene-mean").fit(make_planted(n_genes=60)).save(model)
    return model, d / "test.h5"


def test_a_notice_is_one_plain_line_once_without_source(gene_mean, capsys):
    model, test = gene_mean
    capsys.readouterr()
    assert run_cli("evaluate", model, test, "--unseen", "E071") == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if NOTICE in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("note: gene-mean: ")
    assert "Warning" not in err and ".py:" not in err and "notice(" not in err


def test_debug_shows_python_warnings_in_full(gene_mean, capsys):
    model, test = gene_mean
    with pytest.warns(Notice, match=NOTICE):
        assert run_cli("--debug", "evaluate", model, test, "--unseen", "E071") == 0
    assert "note:" not in capsys.readouterr().err


def test_tables_do_not_wrap_when_not_a_terminal(gene_mean, capsys):
    model, test = gene_mean
    capsys.readouterr()
    assert run_cli("evaluate", model, test, "--unseen", "E071", "--per-cell") == 0
    out = capsys.readouterr().out
    assert str(model) in out  # the title (longer than 80 columns) on one line
    rows = [line.split() for line in out.splitlines() if line.startswith("gene-mean")]
    assert rows and all(len(r) >= 7 for r in rows)  # every number on its row


def test_plain_warnings_say_each_text_once():
    lines = []
    with plain_warnings(lines.append):
        for _ in range(2):
            notice("atlas columns excluded")
            notice("atlas columns excluded")  # another line of source: still once
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert lines == ["note: atlas columns excluded", "warning: something else"]


def test_progress_off_a_terminal_is_plain_lines(capsys):
    with progress(3, "members", "member") as bar:
        assert isinstance(bar, PlainProgress)  # pytest's stderr is not a terminal
        for _ in range(3):
            bar.update(1)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines()[-1].startswith("members: 3/3 member, 0:0")
    assert "elapsed" in err
    with progress(3, "members", "member", enabled=False) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


def test_steps_give_the_step_elapsed_time_and_time_left(monkeypatch):
    now = itertools.chain([90.0, 100.0, 130.0, 190.0], itertools.repeat(200.0))
    monkeypatch.setattr(_runtime, "time", SimpleNamespace(monotonic=lambda: next(now)))
    lines = []
    steps = Steps([1, 2, 1], emit=lines.append)
    for what in ("ridge", "convnet", "report"):
        steps.begin(what)
    assert lines == [
        "[step 1/3, 0:10 elapsed] ridge",  # 10 s of set-up before the first step
        "[step 2/3, 0:40 elapsed, about 1:30 left] convnet",
        "[step 3/3, 1:40 elapsed, about 0:30 left] report",
    ]
    quiet = Steps([1, 1], emit=lines.append, enabled=False)
    quiet.begin("x")
    assert len(lines) == 3


def test_experiment_logs_one_line_per_step_with_the_time_left(tmp_path):
    from histexpr.workflows.experiment import ExperimentConfig, run_experiment

    lines = []
    data = make_planted(n_genes=60, cells=("E003", "E004", "E005"))
    cfg = ExperimentConfig(models=("global-mean", "ridge"), unseen_cells=("E005",))
    run_experiment(data, tmp_path / "run", cfg, log=lines.append)
    steps = [line for line in lines if line.startswith("[step ")]
    assert steps[0].startswith("[step 1/2, ") and steps[0].endswith("] training global-mean ...")
    assert steps[1].startswith("[step 2/2, ") and "left] training ridge ..." in steps[1]
    lines.clear()
    run_experiment(data, tmp_path / "quiet", cfg, log=lines.append, progress=False)
    assert not [line for line in lines if line.startswith("[step ")]


def test_training_an_ensemble_says_each_member_unless_quiet(tmp_path, capsys):
    from conftest import TINY

    data = tmp_path / "d.h5"
    write_h5(make_planted(n_genes=40, cells=("E003", "E004", "E005")), data)
    sets = [f"channels={TINY}", "epochs=1", "batch_size=32", "threads=1"]
    args = ["train", data, "--model", "ensemble", *[a for s in sets for a in ("--set", s)]]
    capsys.readouterr()
    assert run_cli(*args, "-o", tmp_path / "loud") == 0
    err = capsys.readouterr().err
    assert "[step 1/3, 0:0" in err and "elapsed] training member fold0" in err
    assert "left] training member fold2" in err
    assert "\r" not in err  # no epoch bar when stderr is not a terminal
    assert run_cli("--quiet", *args, "-o", tmp_path / "quiet") == 0
    assert "[step" not in capsys.readouterr().err


def test_an_experiment_without_progress_trains_networks_quietly(tmp_path, capsys):
    from conftest import TINY
    from histexpr.workflows.experiment import ExperimentConfig, run_experiment

    data = make_planted(n_genes=40, cells=("E003", "E004", "E005", "E006"))
    neural = (f"channels={TINY}", "epochs=1", "batch_size=32", "threads=1")
    cfg = ExperimentConfig(models=("ensemble",), unseen_cells=("E006",), neural=neural)
    capsys.readouterr()
    run_experiment(data, tmp_path / "run", cfg, log=lambda line: None, progress=False)
    assert "training member" not in capsys.readouterr().err


def test_demo_prints_its_step_lines_as_text(tmp_path, capsys):
    args = ["demo", "--run-dir", tmp_path / "run", "--models", "global-mean,ridge"]
    assert run_cli(*args, "--no-report", "--no-differential") == 0
    out = capsys.readouterr().out
    assert "[step 1/2, " in out and "elapsed] training global-mean ..." in out
    assert "left] training ridge ..." in out
