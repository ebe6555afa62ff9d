"""Bad values through the CLI (issue 12, classes 3 and 5): rejected with their range
as one bounded line (exit 2), or reported; ``0`` never means "all"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY, make_planted, run_cli
from histexpr.cli import MAX_ERROR_CHARS, bounded
from histexpr.data.hdf5 import write_h5


def error_line(capsys) -> str:
    """The one error line of the last command (no traceback, bounded)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    joined = " ".join(" ".join(lines).split())
    assert joined.startswith("error:"), err
    assert len(joined) <= MAX_ERROR_CHARS + len("error: "), joined
    return joined


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("values")
    write_h5(make_planted(n_genes=40, cells=("E003", "E004")), root / "train.h5")
    assert run_cli("train", root / "train.h5", "--model", "ridge", "-o", root / "ridge") == 0
    return root


NEURAL = ["--model", "convnet", "--set", f"channels={TINY}", "--set", "threads=1"]
NEURAL += ["--set", "progress=false", "--set", "batch_size=32"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--valid-fraction", "-0.1"], ["--valid-fraction", "[0, 1)"]),
        (["--valid-fraction", "1"], ["--valid-fraction", "[0, 1)"]),
        ([*NEURAL, "--set", "epochs=0"], ["epochs", ">= 1"]),
        ([*NEURAL, "--set", "lr=-1"], ["lr", "> 0"]),
        (["--cells", ",".join(f"X{i:04d}" for i in range(500))], ["known: E003, E004"]),
    ],
    ids=["valid-negative", "valid-one", "epochs-0", "lr-negative", "many-unknown-cells"],
)
def test_train_rejects_bad_values_with_their_range(files, tmp_path, args, words, capsys):
    base = ["train", files / "train.h5", "-o", tmp_path / "m"]
    if "--model" not in args:
        base += ["--model", "ridge"]
    capsys.readouterr()
    assert run_cli(*base, *args) == 2
    line = error_line(capsys)
    for w in words:
        assert w in line, line
    assert not (tmp_path / "m").exists()


def test_valid_fraction_zero_is_reported(files, tmp_path, capsys):
    out = tmp_path / "m"
    assert (
        run_cli("train", files / "train.h5", "--model", "ridge", "-o", out, "--valid-fraction", "0")
        == 0
    )
    assert "no genes held out" in capsys.readouterr().out
    assert (out / "model.json").is_file()


@pytest.mark.parametrize("memory", ["0", "-1GB", "inf", "lots"])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_memory_budget_must_be_positive(files, tmp_path, command, memory, capsys):
    capsys.readouterr()
    out = tmp_path / "out.csv"
    code = run_cli(command, files / "ridge", files / "train.h5", "-o", out, "--memory", memory)
    assert code == 2
    assert "memory size" in error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    ("n_genes", "words"),
    [
        ("0", "positive integer or 'all'"),
        ("-5", "positive"),
        ("many", "'all'"),
        ("10000000", "at most"),
    ],
)
def test_simulate_gene_count_zero_never_means_all(tmp_path, n_genes, words, capsys):
    capsys.readouterr()
    out = tmp_path / "s.h5"
    args = ["simulate", "-o", out, "--n-genes", n_genes, "--cells", "E003", "--no-progress"]
    assert run_cli(*args) == 2
    assert words in error_line(capsys)
    assert not out.exists()


def test_truncated_ridge_state_is_one_line(files, tmp_path, capsys):
    import shutil

    model = tmp_path / "ridge"
    shutil.copytree(files / "ridge", model)
    state = model / "state.npz"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    capsys.readouterr()
    assert run_cli("predict", model, files / "train.h5", "-o", tmp_path / "p.csv") == 2
    assert "state.npz" in error_line(capsys)


def test_time_budget_that_stops_training_is_reported(files, tmp_path, capsys):
    out = tmp_path / "m"
    args = ["train", files / "train.h5", "-o", out, *NEURAL, "--set", "epochs=50"]
    assert run_cli(*args, "--max-minutes", "0.0001") == 0
    err = capsys.readouterr().err
    assert "stopped by the time budget" in err
    members = json.loads((out / "metrics.json").read_text())["members"]
    assert members and all(m["stopped_by"] == "time budget" for m in members)
    # explain of the same model: --steps 0 is rejected with its range
    capsys.readouterr()
    assert run_cli("explain", out, "--data", files / "train.h5", "--steps", "0") == 2
    assert ">= 1" in error_line(capsys)


def test_fill_missing_says_which_marks_were_filled(tmp_path, capsys):
    # the run stops at the (fake) track; the report of what will be filled comes first
    track = tmp_path / "k4.bw"
    track.write_bytes(b"not really a bigWig")
    args = ["featurize", "-o", tmp_path / "f.h5", "--cell", "E003", "--mark", f"H3K4me3={track}"]
    run_cli(*args, "--fill-missing", "--no-progress")
    err = " ".join(capsys.readouterr().err.split())
    assert "E003" in err and "H3K27me3" in err and "4 of 5 marks" in err


def test_bounded_keeps_both_ends():
    text = "a" * 200 + " middle " + "z" * 200
    short = bounded(text)
    assert len(short) <= MAX_ERROR_CHARS and short.startswith("aaa") and short.endswith("zzz")
    assert bounded("two\nlines") == "two lines"
