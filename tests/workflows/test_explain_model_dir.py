"""explain and report of a model directory from ``histexpr train``, through the CLI.

A tiny ConvNet is trained with ``histexpr train``, explained with ``--data`` and ``-o``,
then reported; the printed hint runs as printed; another model's explanation is never
replaced; a baseline is refused in one line but still reported.
"""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest

from conftest import FAST, make_planted, run_cli
from histexpr.data.hdf5 import write_h5
from histexpr.explain import load_attributions, load_gene_attributions


def _train(data, out, kind="convnet", seed=0):
    sets = (
        []
        if kind == "ridge"
        else [a for k in ("channels", "threads") for a in ("--set", f"{k}={FAST[k]}")]
    )
    sets += [] if kind == "ridge" else ["--set", "epochs=2", "--set", f"seed={seed}"]
    assert run_cli("train", data, "--model", kind, "-o", out, *sets) == 0
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("explain_model")
    data = write_h5(make_planted(n_genes=60, cells=("E003", "E071")), d / "data.h5")
    return d, data, _train(data, d / "convnet")


def test_explain_and_report_a_model_directory(trained, tmp_path, capsys):
    _d, data, model = trained
    before = sorted(p.name for p in model.iterdir())
    out = tmp_path / "why"
    code = run_cli(
        "explain", model, "--data", data, "-o", out, "--methods", "saliency",
        "--cells", "E071", "--genes", "ENSG00000000001,ENSG00000000002", "--max-genes", "20",
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert sorted(p.name for p in model.iterdir()) == before  # nothing written into the model
    means = load_attributions(out / "attributions_saliency.npz")
    assert means.cells == ("E071",) and means.n.tolist() == [20]
    genes = load_gene_attributions(out / "genes_saliency.npz")
    assert genes.values.shape == (2, 5, 100) and sorted(genes.gene) == [
        "ENSG00000000001",
        "ENSG00000000002",
    ]
    assert np.isfinite(genes.values).all() and np.abs(genes.values).sum() > 0
    info = json.loads((out / "explain.json").read_text())
    assert info["model_dir"] == str(model.resolve()) and info["source"] == "model"
    # the hint is a command that works as printed
    hints = [line[len("next: ") :] for line in printed.splitlines() if line.startswith("next: ")]
    assert len(hints) == 1 and "--explain" in hints[0]
    argv = shlex.split(hints[0])
    assert argv[:2] == ["histexpr", "report"]
    assert run_cli(*argv[1:]) == 0
    html = model.with_name(model.name + ".report.html")
    text = html.read_text(encoding="utf-8")
    assert 'data-kind="attribution"' in text and 'data-kind="loss-curves"' in text
    assert "Per-gene saliency maps of 2 genes" in text
    assert sorted(p.name for p in model.iterdir()) == before


def test_default_folder_and_refusing_another_models_explanation(trained, capsys):
    d, data, model = trained
    args = ("--data", data, "--methods", "saliency", "--max-genes", "5", "--n-genes", "2")
    assert run_cli("explain", model, *args) == 0
    default = d / "convnet.explain"
    assert (default / "explain.json").is_file() and (default / "genes_saliency.npz").is_file()
    assert run_cli("explain", model, *args) == 0  # the same model's explanation is replaced
    other = _train(data, d / "other", seed=1)
    capsys.readouterr()
    assert run_cli("explain", other, *args, "-o", default) == 2
    err = capsys.readouterr().err.strip()
    assert "explanation of another model" in err and len(err.splitlines()) == 1
    assert json.loads((default / "explain.json").read_text())["model_dir"] == str(model.resolve())
    # the report of the other model refuses an explanation that is not its own
    assert run_cli("report", other, "--explain", default, "-o", d / "o.html") == 2
    assert "explains another model" in capsys.readouterr().err


def test_user_errors_are_one_line(trained, tmp_path, capsys):
    _d, data, model = trained
    ridge = _train(data, tmp_path / "ridge", kind="ridge")
    cases = [
        (("explain", model, "--data", data, "--steps", "0"), "n_steps"),
        (("explain", model, "--data", data, "--methods", "deeplift"), "unknown attribution"),
        (("explain", model), "give one with --data"),
        (("explain", ridge, "--data", data), "baseline has no gradients"),
        (("explain", tmp_path, "--data", data), "neither a run directory"),
        (("explain", model, "--data", data, "--genes", "NOPE"), "NOPE"),
    ]
    for argv, match in cases:
        capsys.readouterr()
        assert run_cli(*argv, "-o", tmp_path / "x") == 2, argv
        err = capsys.readouterr().err.strip()
        assert match in err and len(err.splitlines()) == 1, (argv, err)
    # a baseline still has a report: contract and metrics, no interpretation
    assert run_cli("report", ridge) == 0
    text = (tmp_path / "ridge.report.html").read_text(encoding="utf-8")
    assert "H3K4me3" in text and "baseline has no gradients" in text


def test_explain_a_run_directory_with_its_recorded_data(trained, tmp_path, capsys):
    """The demo's path: a run records its data file, so `explain RUN` needs no --data."""
    from histexpr.workflows.experiment import ExperimentConfig, run_experiment

    _d, data, _model = trained
    config = ExperimentConfig(
        models=("ridge", "convnet"),
        unseen_cells=("E071",),
        neural=(f"channels={FAST['channels']}", "epochs=2", "threads=1"),
    )
    from histexpr.data.convert import load_dataset

    run = tmp_path / "run"
    run_experiment(load_dataset(data), run, config, data_path=str(data), log=lambda s: None)
    capsys.readouterr()
    assert run_cli("explain", run, "--methods", "saliency", "--max-genes", "5") == 0
    printed = capsys.readouterr().out
    info = json.loads((run / "explain" / "explain.json").read_text())
    assert info["cells"] == ["E003", "E071"] and info["source"] == "run"  # one seen, one unseen
    assert "not explained: ridge" in printed
    hint = next(line[6:] for line in printed.splitlines() if line.startswith("next: "))
    assert hint == f"histexpr report {shlex.quote(str(run))}"
    assert run_cli(*shlex.split(hint)[1:]) == 0
    text = (run / "report.html").read_text(encoding="utf-8")
    assert 'data-kind="attribution"' in text and "E071 (unseen)" in text
