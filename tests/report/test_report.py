"""The HTML report: self-contained, every figure kind, notes for optional pieces, loud on damage."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from html.parser import HTMLParser

import matplotlib.image
import numpy as np
import pytest

from fake_run import CELLS, make_fake_run, synthetic_data
from histexpr import __version__
from histexpr.data.hdf5 import write_h5
from histexpr.errors import HistexprError
from histexpr.report import summarize_data, write_report

FIVE_KINDS = {"input-heatmap", "expression-histogram", "loss-curves", "attribution", "pred-vs-obs"}


class _Page(HTMLParser):
    def __init__(self, text):
        super().__init__()
        self.images, self.kinds, self.notes, self.refs = [], [], [], []
        self._in_note = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "figure":
            self.kinds.append(attrs["data-kind"])
        if tag == "p" and attrs.get("class") == "note":
            self._in_note = True
            self.notes.append("")
        for key in ("src", "href"):
            if key in attrs:
                self.refs.append(attrs[key])
        if tag == "link":
            self.refs.append(str(attrs))

    def handle_endtag(self, tag):
        self._in_note = False if tag == "p" else self._in_note

    def handle_data(self, data):
        if self._in_note:
            self.notes[-1] += data


def _page(path):
    return _Page(path.read_text(encoding="utf-8"))


def test_full_report_is_self_contained_with_all_figure_kinds(tmp_path):
    run = make_fake_run(tmp_path / "run")
    out = write_report(run)
    assert out == run / "report.html"
    text = out.read_text(encoding="utf-8")
    page = _page(out)
    assert FIVE_KINDS | {"attention"} <= set(page.kinds)
    # two models and the oracle, each one figure with seen and unseen panels
    assert page.kinds.count("pred-vs-obs") == 3
    assert len(page.images) == len(page.kinds) >= 7
    assert text.index("oracle: predicted") > text.index("ensemble: predicted")
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(src[len(prefix) :])))
        assert pixels.shape[0] > 50 and pixels.shape[1] > 50
    # nothing fetched from anywhere: only data URIs and in-page anchors
    assert all(r.startswith(("data:", "#")) for r in page.refs), page.refs
    assert not re.search(r"url\(|@import|https?://", text)
    assert __version__ in text and "0.8123" in text and "E071 (unseen)" in text
    assert '"epochs": 5' in text  # the run configuration
    assert "data-images-decoded" not in text and "imagesDecoded" in text
    assert page.notes == []
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # atomic write
    assert out.stat().st_mode & 0o644 == 0o644


def test_optional_pieces_get_notes(tmp_path):
    run = make_fake_run(tmp_path / "run", summary=False)
    shutil.rmtree(run / "explain")
    (run / "models" / "ensemble" / "history.csv").unlink()
    page = _page(write_report(run, out=tmp_path / "r.html"))
    joined = " ".join(page.notes)
    for piece in ("history.csv", "No explanation", "data_summary.json"):
        assert piece in joined, piece
    # the hint names this run; the run records no data file, so it asks for one
    assert f"histexpr explain {run}" in joined and "--data" in joined
    # the test-set targets still show the expression distribution; metrics are all there
    assert {"expression-histogram", "pred-vs-obs"} <= set(page.kinds)
    assert "attribution" not in page.kinds and "loss-curves" not in page.kinds


def test_not_a_run_or_model_directory_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for path in (empty, tmp_path / "nowhere"):
        with pytest.raises(HistexprError, match=r"not a run directory .* nor a model directory"):
            write_report(path)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (
            lambda r: (r / "results.csv").write_text("name,value\nfoo,1\n"),
            r"results\.csv: no column",
        ),
        (lambda r: (r / "results.csv").unlink(), r"results\.csv: missing"),
        (lambda r: (r / "per_cell.csv").write_text("model,cell\nridge,E003\n"), "pearson"),
        (
            lambda r: (r / "predictions.csv").write_text("cell,gene\nE003,G\n"),
            r"predictions.*\by\b",
        ),
        (
            lambda r: (r / "explain" / "attributions_saliency.npz").write_bytes(b"not a zip"),
            r"attributions_saliency\.npz",
        ),
        (lambda r: (r / "explain" / "attention.npz").write_bytes(b"junk"), r"attention\.npz"),
        (lambda r: (r / "explain" / "explain.json").write_text("{"), r"explain\.json"),
        (lambda r: (r / "data_summary.json").write_text("{}"), r"data_summary\.json"),
        (lambda r: (r / "run.json").write_text("[1]"), r"run\.json"),
        (
            lambda r: (r / "models" / "ensemble" / "history.csv").write_text("a,b\n1,2\n"),
            r"history\.csv: no column",
        ),
    ],
)
def test_malformed_piece_fails_the_report_in_one_line(tmp_path, damage, match):
    run = make_fake_run(tmp_path / "run")
    damage(run)
    with pytest.raises(HistexprError, match=match) as info:
        write_report(run)
    assert "\n" not in str(info.value)
    assert not (run / "report.html").exists()


def test_data_figures_fall_back_to_data_file_then_predictions(tmp_path):
    h5 = write_h5(synthetic_data(), tmp_path / "data.h5")
    run = make_fake_run(tmp_path / "a", data_path=str(h5), summary=False)
    page = _page(write_report(run))
    assert {"input-heatmap", "expression-histogram"} <= set(page.kinds)
    run = make_fake_run(tmp_path / "b", data_path=None, summary=False)
    page = _page(write_report(run))
    assert "expression-histogram" in page.kinds and "input-heatmap" not in page.kinds
    assert any("No data_summary.json" in n for n in page.notes)


def test_report_of_a_version_0_run(tmp_path):
    """Runs written before run.json was versioned (no "format") still report."""
    run = make_fake_run(tmp_path / "run")
    info = json.loads((run / "run.json").read_text())
    legacy = {k: v for k, v in info.items() if k not in ("format", "format_version")}
    (run / "run.json").write_text(json.dumps(legacy | {"command": "experiment"}))
    shutil.rmtree(run / "explain")  # fewer figures: this test is about the header
    text = write_report(run).read_text(encoding="utf-8")
    assert "E071 (unseen)" in text and "0.8123" in text


def test_report_of_a_baseline_model_directory(tmp_path):
    from histexpr.workflows import train_model

    h5 = write_h5(synthetic_data(), tmp_path / "data.h5")
    model = tmp_path / "ridge"
    train_model(h5, model, "ridge", log=lambda s: None)
    out = write_report(model)
    assert out == tmp_path / "ridge.report.html"  # next to the model, never inside it
    assert sorted(p.name for p in model.iterdir()) == sorted(
        p.name for p in model.iterdir() if not p.name.endswith(".html")
    )
    page = _page(out)
    text = out.read_text(encoding="utf-8")
    assert "ridge" in text and "H3K4me3" in text and "held out" in text  # contract, metrics
    joined = " ".join(page.notes)
    assert "baseline has no gradients" in joined and "history.csv" in joined


def test_summarize_data_matches_the_data():
    data = synthetic_data()
    summary = summarize_data(data)
    assert list(summary["cells"]) == CELLS and summary["n_genes"] == 40
    entry = summary["cells"]["E071"]
    rows = data.cell == "E071"
    np.testing.assert_allclose(entry["mean_signal"], data.X[rows].mean(0), atol=1e-4)
    assert sum(entry["y_hist"]["counts"]) == rows.sum() == entry["n"]
    json.dumps(summary)  # JSON-ready
