"""Issue 24: every command that writes goes through the one output guard, with the same rules.

The rules, checked per class over the commands that write: nothing is written inside a
model or run directory (each has one writer; a run keeps only its own ``explain/`` and
``report.html`` slots), nor inside an input folder; a default output path is guarded like
a given one (an earlier output needs ``--force``); ``protocol`` is guarded like the rest;
``--resume`` continues only an interrupted run of the same kind, settings and data. And
the output files themselves: standard JSON, one file mode, ``.tsv`` tables with tabs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO_ROOT, TINY, make_planted, run_cli
from fake_run import make_fake_run
from histexpr.data.hdf5 import write_h5
from test_cli_outputs import one_error_line, snapshot

TOY = REPO_ROOT / "tests" / "data" / "fixtures" / "deepchrome" / "toy"
#: Commands that have no --force (explain replaces only its own model's explanation).
NO_FORCE = {"explain"}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """data/train.h5, a bigWig, a DeepChrome folder, a ridge model and a run directory."""
    root = tmp_path_factory.mktemp("guarded")
    (root / "data").mkdir()
    write_h5(make_planted(n_genes=40, cells=("E003", "E004")), root / "data" / "train.h5")
    (root / "track.bw").write_bytes(b"\x26\xfc\x8f\x88" + bytes(range(200)))
    shutil.copytree(TOY, root / "dc" / "E003" / "classification")
    assert (
        run_cli("train", root / "data" / "train.h5", "--model", "ridge", "-o", root / "model") == 0
    )
    make_fake_run(root / "run")
    return root


def refused(capsys, *command, force=True) -> str:
    """Run ``command`` with and without --force: exit 2, one line, nothing written."""
    root = Path.cwd()
    before = snapshot(root)
    capsys.readouterr()
    lines = []
    for extra in ([], ["--force"]) if force and command[0] not in NO_FORCE else ([],):
        assert run_cli(*command, *extra) == 2, (command, extra)
        lines.append(one_error_line(capsys))
    assert snapshot(root) == before, command
    return lines[-1]


INSIDE = [
    ["train", "data/train.h5", "--model", "ridge", "-o", "run/models/mine"],
    ["train", "data/train.h5", "--model", "ridge", "-o", "model/sub"],
    ["evaluate", "model", "data/train.h5", "-o", "run/e.csv"],
    ["predict", "model", "data/train.h5", "-o", "run/predictions.csv"],
    ["predict", "model", "data/train.h5", "-o", "model/p.csv"],
    ["predict", "model", "data/train.h5", "-o", "run/models/ridge/p.csv"],
    ["report", "model", "-o", "model/report.html"],
    ["report", "model", "-o", "run/report.html"],  # the run's slot, but not its report
    ["report", "run", "-o", "run/models/ridge/r.html"],
    ["report", "run", "-o", "run/r.html"],
    ["explain", "run", "--model", "ensemble", "-o", "model/x"],
    ["explain", "run", "--model", "ensemble", "-o", "run/models/ensemble/x"],
    ["convert", "data/train.h5", "run/d.h5"],
    ["simulate", "-o", "model/s.h5", "--n-genes", "10", "--cells", "E003"],
    ["featurize", "-o", "run/f.h5", "--cell", "E003", "--mark", "H3K4me3=track.bw"],
    ["protocol", "dc", "-o", "run/p"],
    ["protocol", "dc", "-o", "model/p"],
    ["demo", "--run-dir", "run/models/demo"],
    ["download", "roadmap-rpkm", "--dest", "model/dl", "--dry-run"],
]


@pytest.mark.parametrize("command", INSIDE, ids=lambda c: " ".join(c))
def test_no_command_writes_inside_a_model_or_run_directory(project, command, capsys):
    line = refused(capsys, *command)
    assert "inside the" in line and len(line) <= 310


@pytest.mark.parametrize(
    "command",
    [
        ["protocol", "dc/E003", "-o", "dc/E003"],
        ["protocol", "dc/E003", "-o", "dc/E003/out"],
        ["protocol", "dc", "-o", "."],
        ["protocol", "dc", "-o", "dc/models"],
        ["train", "dc", "--model", "ridge", "-o", "dc/model"],
        ["protocol", "dc", "-o", "dc/E003/p"],
    ],
    ids=lambda c: " ".join(c),
)
def test_no_command_writes_into_its_input_folder(project, command, capsys):
    refused(capsys, *command)


def test_protocol_is_guarded_like_every_command(project, capsys):
    user = project / "mine"
    user.mkdir()
    (user / "protocol.csv").write_text("cell,auc\nE003,0.9\n")  # the user's own table
    assert "not a histexpr protocol folder" in refused(capsys, "protocol", "dc", "-o", "mine")
    assert run_cli("protocol", "dc", "-o", "p") == 0
    assert sorted(os.listdir("p")) == ["models", "protocol.csv"]
    table = pd.read_csv("p/protocol.csv")
    # the mean row averages the metrics and sums no counts
    mean = table[table.cell == "mean"].iloc[0]
    assert mean[["n_train", "n_valid", "n_test"]].isna().all() and mean.auc == table.auc[0]
    assert "--force" in refused(capsys, "protocol", "dc", "-o", "p", force=False)
    assert run_cli("protocol", "dc", "-o", "p", "--joint", "--force") == 0
    assert sorted(os.listdir("p")) == ["model", "protocol.csv"]  # replaced, not mixed


def test_default_outputs_are_guarded_like_given_ones(project, capsys):
    # report MODEL writes MODEL.report.html; RUN/report.html is the run's own slot
    for target, default in (("model", "model.report.html"), ("run", "run/report.html")):
        assert run_cli("report", target) == 0 and Path(default).is_file()
        assert "--force" in refused(capsys, "report", target, force=False)
        assert run_cli("report", target, "--force") == 0
    # demo's run directory: an earlier run needs --force; a folder of the user's, always refused
    assert "--force" in refused(capsys, "demo", "--run-dir", "run", force=False)
    assert "not a histexpr" in refused(capsys, "demo", "--run-dir", "data")


def test_run_slots_are_the_runs_own_names(project):
    from histexpr import runs
    from histexpr.atomic import RUN_SLOTS
    from histexpr.report import default_report_path

    assert RUN_SLOTS == {
        runs.EXPLAIN: "explain-dir",
        default_report_path(project / "run").name: "report-file",
    }


def test_predict_never_replaces_a_runs_own_table(project, capsys):
    line = refused(capsys, "predict", "model", "data/train.h5", "-o", "run/predictions.csv")
    assert "run directory" in line
    assert run_cli("report", "run", "-o", "r.html") == 0


def test_download_never_replaces_a_file_it_did_not_fetch(project, capsys):
    (project / "dl").mkdir()
    (project / "dl" / "57epigenomes.RPKM.pc.gz").write_bytes(b"my own file")
    line = refused(capsys, "download", "roadmap-rpkm", "--dest", "dl", force=False)
    assert "refusing to replace" in line and "--force" in line
    assert "is a file" in refused(capsys, "download", "roadmap-rpkm", "--dest", "track.bw")


def _not_json(constant: str):
    pytest.fail(f"{constant} in metrics.json: not standard JSON")


NEURAL = ("--set", f"channels={TINY}", "--set", "epochs=2", "--set", "batch_size=32")
NEURAL += ("--set", "progress=false", "--set", "threads=1")


def test_resume_continues_only_an_interrupted_run_of_the_same_kind(project, capsys, monkeypatch):
    train = ("train", "data/train.h5", "-o")
    # a finished model of another kind is neither resumed nor replaced, --force or not
    line = refused(capsys, *train, "model", "--model", "convnet", "--resume", *NEURAL)
    assert "finished ridge model" in line
    assert "no interrupted" in refused(capsys, *train, "new", "--model", "convnet", "--resume")
    # interrupt a training run (Ctrl-C while saving: the checkpoints are left)
    from histexpr.estimators import neural

    def interrupted(self, directory):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(neural.NeuralEstimator, "save", interrupted)
        assert run_cli(*train, "cnn", "--model", "convnet", *NEURAL) == 130
    assert (project / "cnn" / "checkpoints").is_dir()
    assert "--resume" in refused(capsys, *train, "cnn", "--model", "convnet", *NEURAL, force=False)
    assert "--resume" in refused(capsys, *train, "cnn", "--model", "ridge", "--resume")
    for other in (("--model", "deepchrome", "--set", "epochs=2"), ("--model", "convnet", *NEURAL)):
        extra = ("--set", "lr=0.5") if other[1] == "convnet" else ()
        assert "cannot resume" in refused(capsys, *train, "cnn", *other, *extra, "--resume")
    assert run_cli(*train, "cnn", "--model", "convnet", *NEURAL, "--resume") == 0
    assert not (project / "cnn" / "checkpoints").exists()
    # a finished network is not trained again from scratch by --resume
    line = refused(capsys, *train, "cnn", "--model", "convnet", *NEURAL, "--resume")
    assert "finished convnet model" in line
    # the report hint of explain works as printed when the default report exists
    assert run_cli("report", "cnn") == 0
    capsys.readouterr()
    args = ("--data", "data/train.h5", "--methods", "saliency", "--max-genes", "5")
    assert run_cli("explain", "cnn", *args, "--n-genes", "1") == 0
    out = capsys.readouterr().out
    hint = next(line[6:] for line in out.splitlines() if line.startswith("next: "))
    assert hint.endswith("--force") and run_cli(*shlex.split(hint)[1:]) == 0
    # one file mode for every model file, and standard JSON metrics (no NaN)
    for model in ("cnn", "model"):
        modes = {p.name: p.stat().st_mode & 0o777 for p in Path(model).iterdir()}
        assert len(set(modes.values())) == 1, modes
        json.loads((Path(model) / "metrics.json").read_text(), parse_constant=_not_json)


def test_tsv_tables_have_tabs(project, capsys):
    assert run_cli("predict", "model", "data/train.h5", "-o", "p.tsv") == 0
    table = pd.read_csv("p.tsv", sep="\t")
    assert list(table.columns[:3]) == ["cell", "gene", "prediction"] and len(table) == 80
    assert "--force" in refused(
        capsys, "predict", "model", "data/train.h5", "-o", "p.tsv", force=False
    )
    assert run_cli("predict", "model", "data/train.h5", "-o", "p.tsv", "--force") == 0
    assert run_cli("evaluate", "model", "data/train.h5", "-o", "e.tsv") == 0
    for name in ("e.tsv", "e.per_cell.tsv"):
        assert pd.read_csv(name, sep="\t").columns[0] == "model"
    submission = ("predict", "model", "data/train.h5", "--format", "submission", "-o", "s.tsv")
    assert "CSV" in refused(capsys, *submission)
