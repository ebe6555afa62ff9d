"""run_demo's wiring: experiment -> data summary -> explain -> report, at a tiny size.

The embedded data set and the demo's neural widths are patched to tiny ones; the real demo
(its table) is unchanged by this test.
"""

from __future__ import annotations

import json

import pytest

from conftest import FAST, make_planted
from histexpr.data.hdf5 import write_h5
from histexpr.workflows import demo


@pytest.mark.slow
def test_run_demo_writes_run_explanation_and_report(tmp_path, monkeypatch):
    import histexpr.simulator

    data = make_planted(n_genes=60, cells=("E003", "E004", "E071"))
    data.meta["unseen_cells"] = ["E071"]
    path = write_h5(data, tmp_path / "sim.h5")
    monkeypatch.setattr(histexpr.simulator, "default_dataset", lambda: path)
    monkeypatch.setattr(
        demo, "DEMO_NEURAL", (f"channels={FAST['channels']}", "epochs=1", "threads=1")
    )
    lines = []
    result = demo.run_demo(tmp_path / "run", models=("ridge", "convnet"), log=lines.append)
    run = result.run_dir
    assert json.loads((run / "run.json").read_text())["format"] == "histexpr-run"
    assert result.unseen_cells == ["E071"]
    info = json.loads((run / "explain" / "explain.json").read_text())
    assert info["model"] == "convnet" and info["cells"][-1] == "E071"
    text = (run / "report.html").read_text(encoding="utf-8")
    assert 'data-kind="attribution"' in text and 'data-kind="input-heatmap"' in text
    assert any(line.startswith("report: ") for line in lines)
