"""The HTML report: self-contained, every figure kind, graceful when pieces are missing."""

from __future__ import annotations

import base64
import io
import json
import re
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


def test_report_degrades_with_notes_when_pieces_are_missing(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"command": "train", "data": {}}))
    page = _page(write_report(run, out=tmp_path / "r.html"))
    assert page.images == []
    joined = " ".join(page.notes)
    for piece in ("results.csv", "predictions.csv", "history.csv", "attributions", "data_summary"):
        assert piece in joined, piece
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "run.json is missing" in " ".join(_page(write_report(empty)).notes)
    with pytest.raises(HistexprError, match="not a run directory"):
        write_report(tmp_path / "nowhere")


def test_corrupt_file_skips_only_its_section(tmp_path):
    run = make_fake_run(tmp_path / "run")
    (run / "results.csv").write_text("name,value\nfoo,1\n")
    (run / "explain" / "attributions_saliency.npz").write_bytes(b"not a zip")
    page = _page(write_report(run))
    joined = " ".join(page.notes)
    assert "Metrics skipped" in joined and "Interpretation skipped" in joined
    assert {"input-heatmap", "loss-curves", "pred-vs-obs"} <= set(page.kinds)


def test_data_figures_fall_back_to_data_file_then_predictions(tmp_path):
    h5 = write_h5(synthetic_data(), tmp_path / "data.h5")
    run = make_fake_run(tmp_path / "a", data_path=str(h5), summary=False)
    page = _page(write_report(run))
    assert {"input-heatmap", "expression-histogram"} <= set(page.kinds)
    run = make_fake_run(tmp_path / "b", data_path=None, summary=False)
    page = _page(write_report(run))
    assert "expression-histogram" in page.kinds and "input-heatmap" not in page.kinds
    assert any("Data summary skipped" in n for n in page.notes)


def test_summarize_data_matches_the_data():
    data = synthetic_data()
    summary = summarize_data(data)
    assert list(summary["cells"]) == CELLS and summary["n_genes"] == 40
    entry = summary["cells"]["E071"]
    rows = data.cell == "E071"
    np.testing.assert_allclose(entry["mean_signal"], data.X[rows].mean(0), atol=1e-4)
    assert sum(entry["y_hist"]["counts"]) == rows.sum() == entry["n"]
    json.dumps(summary)  # JSON-ready
