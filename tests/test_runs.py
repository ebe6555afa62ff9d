"""The run directory: one writer, one reader, a versioned header, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from histexpr import runs
from histexpr.errors import HistexprError
from histexpr.estimators.bundle import HEADER


def _write(run_dir, **over):
    cell = np.array(["E003", "E003", "E071"])
    kw = dict(
        results=pd.DataFrame({"model": ["ridge"], "group": ["all"], "mse": [0.5]}),
        per_cell=pd.DataFrame(
            {"model": ["ridge"] * 2, "cell": ["E003", "E071"], "pearson": [1, 0]}
        ),
        cell=cell,
        gene=np.array(["G1", "G2", "G1"]),
        y=np.array([1.0, 2.0, 3.0]),
        predictions={"ridge": np.array([1.5, 2.5, 2.0]), "oracle": np.array([1.0, 2.0, 3.0])},
        config={"seed": 3, "models": ["ridge"]},
        n_examples=9,
        cells=["E003", "E004", "E071"],
        train_cells=["E003", "E004"],
        unseen_cells=["E071"],
        target="log2rpkm",
        data_path=None,
    )
    return runs.write_run(run_dir, **(kw | over))


def test_round_trip(tmp_path):
    path = _write(tmp_path / "run", data_path=tmp_path / "data.h5")
    assert path == tmp_path / "run" / runs.RUN_JSON
    raw = json.loads(path.read_text())
    assert raw["format"] == "histexpr-run" and raw["format_version"] == runs.RUN_FORMAT_VERSION
    run = runs.read_run(tmp_path / "run")
    h = run.header
    assert h.format_version == 1 and h.command == "experiment" and h.config["seed"] == 3
    assert h.data_path == str((tmp_path / "data.h5").resolve()) and h.n_test == 3
    assert run.train_cells == ("E003", "E004") and run.unseen_cells == ("E071",)
    assert run.labels(["E003", "E071", "E999"]) == {
        "E003": "E003 (seen)",
        "E071": "E071 (unseen)",
        "E999": "E999",
    }
    assert run.is_unseen("E071") and not run.is_unseen("E003")
    assert run.results()["mse"].tolist() == [0.5]
    assert set(run.per_cell()["cell"]) == {"E003", "E071"}
    preds = run.predictions()
    np.testing.assert_allclose(preds["ridge"], [1.5, 2.5, 2.0])
    assert run.prediction_columns() == ["ridge", "oracle"]  # the oracle, a reference, last
    assert run.model_metrics("ridge") == {"all": {"mse": 0.5}}
    assert run.model_dirs() == {} and run.histories() == {} and not run.has_data_summary()
    # models are listed only when they are model directories
    (tmp_path / "run" / "models" / "ridge").mkdir(parents=True)
    (tmp_path / "run" / "models" / "stray").mkdir()
    (tmp_path / "run" / "models" / "ridge" / HEADER).write_text("{}")
    assert list(run.model_dirs()) == ["ridge"]
    assert runs.MODEL_HEADER == HEADER  # the model directory's name, owned by bundle.py


def test_numeric_cell_ids_are_read_as_text(tmp_path):
    _write(tmp_path, cell=np.array(["3", "3", "71"]), unseen_cells=["71"], train_cells=["3"])
    run = runs.read_run(tmp_path)
    assert run.predictions()["cell"].tolist() == ["3", "3", "71"]
    assert run.label("71") == "71 (unseen)"


@pytest.mark.parametrize("command", ["experiment", "demo"])
def test_version_0_header_is_read(tmp_path, command):
    """Runs written before the header was versioned: no "format" key."""
    legacy = {
        "command": command,
        "histexpr_version": "0.1.0",
        "created": "2026-01-01T00:00:00+00:00",
        "config": {"seed": 0},
        "data": {"path": None, "cells": ["A", "B"], "train_cells": ["A"], "unseen_cells": ["B"]},
    }
    (tmp_path / "run.json").write_text(json.dumps(legacy))
    h = runs.read_header(tmp_path)
    assert h.format_version == 0 and h.command == command
    assert runs.read_run(tmp_path).label("B") == "B (unseen)"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{", "unreadable run header"),
        ("[1, 2]", "not a JSON object"),
        ('{"command": "train"}', "not a histexpr run header"),
        ('{"format": "other"}', "format is 'other'"),
        ('{"format": "histexpr-run", "format_version": "1"}', "format_version"),
        ('{"format": "histexpr-run", "format_version": 99}', "newer histexpr"),
        ('{"format": "histexpr-run", "format_version": 1, "data": []}', "data is not an object"),
        ('{"command": "demo", "data": {"train_cells": "E003"}}', r"data\.train_cells"),
        ('{"command": "demo", "data": {"n_examples": "many"}}', r"data\.n_examples"),
        ('{"command": "demo", "config": [1]}', "config is not an object"),
    ],
)
def test_malformed_header_is_one_line_naming_file_and_key(tmp_path, text, match):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(HistexprError, match=match) as info:
        runs.read_header(tmp_path)
    assert "run.json" in str(info.value) and "\n" not in str(info.value)


def test_malformed_tables_are_one_line(tmp_path):
    _write(tmp_path)
    (tmp_path / runs.RESULTS).write_text("name,value\nfoo,1\n")
    (tmp_path / runs.PREDICTIONS).unlink()
    (tmp_path / runs.PER_CELL).write_bytes(b"\xff\xfe\x00garbage\x00")
    run = runs.read_run(tmp_path)
    with pytest.raises(HistexprError, match=r"results\.csv: no column\(s\) model, group"):
        run.results()
    with pytest.raises(HistexprError, match=r"predictions\.csv: missing"):
        run.predictions()
    with pytest.raises(HistexprError, match=r"per_cell\.csv") as info:
        run.per_cell()
    assert "\n" not in str(info.value)
    with pytest.raises(HistexprError, match="not a run directory"):
        runs.read_run(tmp_path / "nowhere")


def test_data_summary_and_explain_header_checks(tmp_path):
    _write(tmp_path)
    (tmp_path / runs.DATA_SUMMARY).write_text('{"cells": {}}')
    run = runs.read_run(tmp_path)
    assert run.has_data_summary()
    with pytest.raises(HistexprError, match=r"data_summary\.json: malformed"):
        run.data_summary()
    folder = tmp_path / "x.explain"
    folder.mkdir()
    assert not runs.has_explanation(folder)
    (folder / runs.EXPLAIN_JSON).write_text('{"methods": "saliency"}')
    with pytest.raises(HistexprError, match=r"explain\.json: malformed .*methods"):
        runs.read_explain_info(folder)
    (folder / runs.EXPLAIN_JSON).write_text('{"format": "histexpr-explain", "methods": []}')
    assert runs.read_explain_info(folder)["methods"] == []
    assert runs.model_explain_dir(tmp_path / "m") == tmp_path / "m.explain"
    assert runs.attribution_file("saliency") == "attributions_saliency.npz"
