"""The report leads with pictures: model comparison per group, ranked table, sections on demand."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from fake_run import make_fake_run, make_scored_run
from histexpr.data.dataset import MARKS, N_BINS
from histexpr.errors import HistexprError
from histexpr.estimators.bundle import record_auto, write_header
from histexpr.report import write_report
from histexpr.report.page import Page, format_value
from histexpr.report.scores import constant_predictions


class _Html(HTMLParser):
    """Sections, figures with captions, and the rows of every table (bold or not)."""

    def __init__(self, text):
        super().__init__()
        self.sections, self.kinds, self.captions, self.tables, self.notes = [], [], [], [], []
        self._cell = self._caption = self._note = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "h2":
            self.sections.append(attrs["id"])
        elif tag == "figure":
            self.kinds.append(attrs["data-kind"])
        elif tag == "figcaption":
            self._caption = ""
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append((attrs.get("class") == "best", []))
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "p" and attrs.get("class") == "note":
            self._note = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1][1].append(self._cell)
            self._cell = None
        elif tag == "figcaption":
            self.captions.append(self._caption)
            self._caption = None
        elif tag == "p" and self._note is not None:
            self.notes.append(self._note)
            self._note = None

    def handle_data(self, data):
        for name in ("_cell", "_caption", "_note"):
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name) + data)


@pytest.fixture
def figures(monkeypatch):
    """Every figure the report draws, with its kind and caption."""
    drawn = []
    original = Page.figure

    def spy(self, fig, kind, caption):
        drawn.append((fig, kind, caption))
        return original(self, fig, kind, caption)

    monkeypatch.setattr(Page, "figure", spy)
    return drawn


def _plot_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_report_leads_with_a_comparison_per_group_and_a_ranked_table(tmp_path, figures):
    run = make_scored_run(tmp_path / "run")
    page = _Html(write_report(run).read_text(encoding="utf-8"))
    assert page.sections[:4] == ["comparison", "intervals", "auto", "predictions"]
    # one figure per honest group, first on the page; the flagged seen/train only in the table
    groups = ["all", "seen/new", "unseen/known", "unseen/new"]
    assert page.kinds[:4] == ["model-comparison"] * 4
    assert page.kinds.count("model-comparison") == 4
    assert [c.split(":")[0] for c in page.captions[:4]] == groups
    header, *rows = page.tables[0]
    assert header[1][:3] == ["group", "model", "mse_over_oracle"]
    table = pd.DataFrame([cells for _, cells in rows], columns=header[1])
    bold = [b for b, _ in rows]
    assert list(pd.unique(table["group"])) == [*groups, "seen/train"]
    for group, part in table.groupby("group", sort=False):
        models = part["model"].tolist()
        assert models[-1] == "oracle" and models[0] == "convnet"  # reference last, best first
        ratio = part["mse_over_oracle"].astype(float).to_numpy()[:-1]
        assert np.all(np.diff(ratio) >= 0), group  # ordered by score
        assert [bold[i - 1] for i in part.index + 1] == [True] + [False] * (len(part) - 1)
    # 3-4 significant digits: no number in the table carries more
    for value in table.drop(columns=["group", "model", "n"]).to_numpy().ravel():
        digits = re.sub(r"^-?0*\.?0*|[.-]|e.*$", "", value)
        assert value == "–" or len(digits) <= 4, value


def test_every_figure_has_a_title_labelled_axes_and_a_one_line_caption(tmp_path, figures):
    write_report(make_scored_run(tmp_path / "scored"))
    write_report(make_fake_run(tmp_path / "fake"))  # explanation, history, data summary
    kinds = {kind for _, kind, _ in figures}
    assert {"model-comparison", "intervals", "pred-vs-obs", "loss-curves"} <= kinds
    assert {"input-heatmap", "attribution", "attention", "expression-histogram"} <= kinds
    for fig, kind, caption in figures:
        titles = [fig._suptitle.get_text()] if fig._suptitle else []
        titles += [ax.get_title() for ax in _plot_axes(fig)]
        assert any(titles), kind
        for ax in _plot_axes(fig):
            assert ax.get_xlabel() and (ax.get_ylabel() or ax.get_yticklabels()), kind
        assert caption.strip() and "\n" not in caption, kind
    # units on the expression and score axes
    units = {ax.get_xlabel() for fig, kind, _ in figures for ax in _plot_axes(fig)}
    assert "observed expression (log2(RPKM+1))" in units
    assert "MSE / oracle MSE (ratio; 1 = oracle)" in units
    assert "position relative to TSS (kb)" in units


def test_constant_predictors_are_found_from_their_predictions_not_their_names(tmp_path, figures):
    run = make_fake_run(tmp_path / "run")
    preds = pd.read_csv(run / "predictions.csv")
    y = preds["y"].to_numpy()
    preds["ridge"] = 2.5  # a constant under an informative name: left out
    preds["global-mean"] = y + 0.1  # an informative one under a constant's name: kept
    preds["per-cell"] = preds["cell"].map({"E003": 1.0, "E004": 2.0, "E071": 3.0})
    preds.to_csv(run / "predictions.csv", index=False)
    page = _Html(write_report(run).read_text(encoding="utf-8"))
    drawn = [c.split(":")[0] for c, k in zip(page.captions, page.kinds, strict=True)]
    drawn = [m for m, k in zip(drawn, page.kinds, strict=True) if k == "pred-vs-obs"]
    assert drawn == ["ensemble", "global-mean", "oracle"]
    (note,) = [n for n in page.notes if "constant" in n]
    assert "ridge (seen, unseen)" in note and "per-cell (seen, unseen)" in note
    # the comparison and its table still show every model of results.csv
    assert page.kinds[0] == "model-comparison"
    assert "intervals" not in page.sections and "auto" not in page.sections


def test_gene_mean_keeps_only_the_panels_where_it_varies(tmp_path, figures):
    write_report(make_scored_run(tmp_path / "run", intervals=False, auto=False))
    scatter = {c.split(":")[0]: fig for fig, kind, c in figures if kind == "pred-vs-obs"}
    assert "global-mean" not in scatter
    assert [ax.get_title() for ax in _plot_axes(scatter["gene-mean"])] == ["unseen/known"]
    assert len(_plot_axes(scatter["ridge"])) == 3


def test_comparison_of_results_without_scores_is_a_table_only():
    from histexpr.report.scores import comparison_section

    page = Page()
    results = pd.DataFrame({"model": ["b", "a"], "group": ["all", "all"], "mse": [2.0, 1.0]})
    comparison_section(page, results)
    assert page.figure_kinds == [] and page.toc == [("comparison", "Model comparison")]
    assert "<td>b</td>" in "".join(page.body)


def test_constant_predictions():
    cell = np.array(["a", "a", "b", "b"])
    assert constant_predictions(np.full(4, 2.0))
    assert constant_predictions([1.0, 1.0 + 1e-9, np.nan, 1.0])
    assert constant_predictions([1.0, 1.0, 5.0, 5.0], cell)
    assert not constant_predictions([1.0, 1.0, 5.0, 5.0])
    assert not constant_predictions([1.0, 2.0, 5.0, 5.0], cell)


def test_malformed_intervals_fail_in_one_line(tmp_path):
    run = make_scored_run(tmp_path / "run", auto=False)
    pd.DataFrame({"group": ["all"], "model": ["ridge"], "level": [0.9]}).to_csv(
        run / "intervals.csv", index=False
    )
    with pytest.raises(HistexprError, match=r"intervals\.csv: no column\(s\) coverage, width"):
        write_report(run)


def test_model_page_shows_intervals_and_automatic_choice(tmp_path):
    model = tmp_path / "auto"
    model.mkdir()
    auto = [
        {"candidate": "ridge", "score": 0.5, "spread": 0.01, "fit_seconds": 1.0, "chosen": False},
        {"candidate": "lightgbm", "score": 0.6, "spread": 0.02, "fit_seconds": 9.0, "chosen": True},
    ]
    write_header(model, "ridge", {}, MARKS, N_BINS)
    record_auto(model, auto)
    intervals = [{"group": "all", "model": "auto", "level": 0.9, "coverage": 0.91, "width": 3.0}]
    metrics = {"train_mse": 0.123456789, "intervals": intervals}
    (model / "metrics.json").write_text(json.dumps(metrics))
    page = _Html(write_report(model).read_text(encoding="utf-8"))
    assert page.sections[:4] == ["overview", "metrics", "intervals", "auto"]
    assert page.kinds == ["intervals"]
    (choice,) = [t for t in page.tables if t[0][1][0] == "candidate"]
    assert [(b, cells[0]) for b, cells in choice[1:]] == [(False, "ridge"), (True, "lightgbm")]
    assert any("0.1235" in cells for t in page.tables for _, cells in t)  # 4 digits, not 9


def test_table_cells_bold_rows_and_scrolling():
    assert format_value(0.123456789) == "0.1235"
    assert format_value(12345.0) == "12345" and format_value(40) == "40"
    assert format_value(float("nan")) == "–" and format_value(None) == "–"
    assert format_value(np.float32(-0.00793912)) == "-0.007939"
    page = Page()
    page.table(pd.DataFrame({"model": ["a", "b"], "r": [0.5, 0.25]}), bold=[False, True])
    (html,) = page.body
    assert html.startswith('<div class="scroll"><table>')
    assert '<tr class="best"><td>b</td><td class="num">0.25</td></tr>' in html
    assert '<th>model</th><th class="num">r</th>' in html  # numbers right, names left
    with pytest.raises(ValueError, match="bold"):
        page.table(pd.DataFrame({"a": [1]}), bold=[True, False])
