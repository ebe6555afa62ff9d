"""No command destroys a file it did not write (issue 12, class 1), through the CLI.

Every command that writes goes through ``histexpr.atomic.guard_output``: an input
of the command, a foreign folder or file, ``.``/``..``, a folder where a file is
expected (or the reverse) and a path inside a missing folder are refused with one
line and exit code 2; ``--force`` replaces only a previous output of the same kind.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import make_planted, run_cli
from histexpr.data.hdf5 import write_h5


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> SHA-256), folders as ``/``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "/" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A user's project: data/train.h5, data/notes.txt, a bigWig, a trained ridge model."""
    root = tmp_path_factory.mktemp("project")
    data = root / "data"
    data.mkdir()
    write_h5(make_planted(n_genes=40, cells=("E003", "E004")), data / "train.h5")
    (data / "notes.txt").write_text("my notes")
    (root / "track.bw").write_bytes(b"\x26\xfc\x8f\x88" + bytes(range(200)))
    model = root / "model"
    assert run_cli("train", data / "train.h5", "--model", "ridge", "-o", model) == 0
    return root


def test_train_into_the_data_folder_destroys_nothing(project, capsys):
    before = snapshot(project)
    capsys.readouterr()
    for force in ([], ["--force"]):
        assert run_cli("train", "data/train.h5", "--model", "ridge", "-o", "data", *force) == 2
        assert "data" in one_error_line(capsys)
        assert run_cli("train", "data/train.h5", "--model", "ridge", "-o", "data/train.h5") == 2
        one_error_line(capsys)
        # a folder above the input, the current folder and its parent
        for out in (".", "..", str(project)):
            assert run_cli("train", "data/train.h5", "--model", "ridge", "-o", out, *force) == 2
            one_error_line(capsys)
    assert snapshot(project) == before


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "model", "data/train.h5", "-o", "data/train.h5"],
        ["predict", "model", "data/train.h5", "-o", "model"],
        ["predict", "model", "data/train.h5", "-o", "data/notes.txt"],
        ["predict", "model", "data/train.h5", "-o", "data"],
        ["predict", "model", "data/train.h5", "-o", "missing/p.csv"],
        ["evaluate", "model", "data/train.h5", "-o", "data/train.h5"],
        ["evaluate", "model", "data/train.h5", "-o", "track.bw"],
        ["convert", "data/train.h5", "data/train.h5"],
        ["convert", "data/train.h5", "track.bw"],
        ["simulate", "-o", "track.bw", "--n-genes", "10", "--cells", "E003"],
        ["simulate", "-o", "data", "--n-genes", "10", "--cells", "E003"],
        ["featurize", "-o", "track.bw", "--cell", "E003", "--mark", "H3K4me3=track.bw"],
        ["featurize", "-o", "data/train.h5", "--cell", "E003", "--mark", "H3K4me3=track.bw"],
        ["report", "model", "-o", "data/notes.txt"],
        ["report", "model", "-o", "model"],
    ],
    ids=lambda c: " ".join(c),
)
def test_outputs_over_inputs_or_foreign_files_are_refused(project, command, capsys):
    before = snapshot(project)
    capsys.readouterr()
    for force in ([], ["--force"]):
        assert run_cli(*command, *force) == 2
        line = one_error_line(capsys)
        assert len(line) <= 310
    assert snapshot(project) == before


def test_force_replaces_a_previous_model_but_not_a_foreign_folder(project, capsys):
    header = json.loads((project / "model" / "model.json").read_text())
    assert run_cli("train", "data/train.h5", "--model", "ridge", "-o", "model") == 2
    assert "--force" in one_error_line(capsys)
    assert run_cli("train", "data/train.h5", "--model", "ridge", "-o", "model", "--force") == 0
    assert json.loads((project / "model" / "model.json").read_text())["kind"] == header["kind"]
    foreign = project / "results"
    foreign.mkdir()
    (foreign / "paper.tex").write_text("draft")
    before = snapshot(project)
    capsys.readouterr()
    assert run_cli("train", "data/train.h5", "--model", "ridge", "-o", "results", "--force") == 2
    assert "not a histexpr" in one_error_line(capsys)
    assert snapshot(project) == before


def test_force_replaces_previous_tables_and_datasets(project, capsys):
    assert run_cli("predict", "model", "data/train.h5", "-o", "p.csv") == 0
    assert run_cli("predict", "model", "data/train.h5", "-o", "p.csv") == 2
    assert run_cli("predict", "model", "data/train.h5", "-o", "p.csv", "--force") == 0
    assert run_cli("convert", "data/train.h5", "copy.h5", "--no-progress") == 0
    assert "ConvertResult" not in capsys.readouterr().out
    assert run_cli("convert", "data/train.h5", "copy.h5", "--no-progress") == 2
    assert run_cli("convert", "data/train.h5", "copy.h5", "--no-progress", "--force") == 0
    # an npz we wrote is ours; a course npz of the user's is not
    sim = ["simulate", "-o", "sim.npz", "--n-genes", "10", "--cells", "E003", "--no-progress"]
    assert run_cli(*sim) == 0
    assert run_cli(*sim, "--force") == 0
    import numpy as np

    np.savez(project / "course.npz", E003=np.zeros((2, 100, 7), dtype=np.float32))
    before = snapshot(project)
    capsys.readouterr()
    assert run_cli("simulate", "-o", "course.npz", "--n-genes", "10", "--force") == 2
    one_error_line(capsys)
    assert snapshot(project) == before


def test_convert_prints_a_summary_not_a_repr(project, capsys):
    capsys.readouterr()
    assert run_cli("convert", "data/train.h5", "c.h5", "--no-progress") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "80 examples, 2 cell types" in out
    assert "PosixPath" not in out and "ConvertResult" not in out
    assert run_cli("info", "c.h5") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "80 examples, 2 cell types, 40 genes" in out and "HistoneDataset(" not in out
