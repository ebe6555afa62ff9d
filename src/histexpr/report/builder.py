"""``histexpr report``: one self-contained HTML page of a run or a model directory.

The page embeds its figures as base64 PNG data URIs and its style inline, so it
opens offline and can be mailed as one file. A run directory is read through
:mod:`histexpr.runs` (``run.json``, ``results.csv``, ``per_cell.csv``,
``predictions.csv``, ``data_summary.json``, ``models/<name>/``, ``explain/``); a model
directory through :mod:`histexpr.estimators.bundle` (see :mod:`histexpr.report.model`).

A run's page is the list :data:`RUN_SECTIONS`, pictures of the scores first: the model
comparison per evaluation group and its ranked table, prediction intervals
(``intervals.csv``) and the automatic model choice (``model.json`` key ``auto``)
when recorded, predicted vs observed, then training, data, interpretation, the run
header and the configuration (see :mod:`histexpr.report.scores`).

Optional pieces are decided by explicit checks and get a note: no explanation yet, no
training history (baselines record none), no data summary. A piece that is there but
malformed (a renamed column, a damaged archive) fails the report with a one-line
:class:`~histexpr.errors.HistexprError`. An inline script records, after load, how many
images decoded (``<body data-images-decoded="ok/total">``) for browser tests.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr import plot, runs
from histexpr.atomic import atomic_path
from histexpr.data.dataset import BIN_SIZE, HistoneDataset
from histexpr.errors import HistexprError
from histexpr.estimators.bundle import HEADER, read_auto
from histexpr.report.page import Page
from histexpr.report.scores import (
    INTERVALS,
    auto_section,
    comparison_section,
    intervals_section,
    predictions_section,
    read_intervals,
)
from histexpr.report.sections import (
    Explanation,
    interpretation_section,
    model_configs,
    read_explanation,
    read_history,
    training_section,
    versions_table,
)


def summarize_data(
    data: HistoneDataset, cells: Sequence[str] | None = None, hist_bins: int = 40
) -> dict:
    """A JSON-ready summary of a dataset for ``data_summary.json``.

    Per cell type: example count, mean signal ``(n_marks, n_bins)`` and, when targets
    are known, their mean, standard deviation and a histogram on shared edges.
    """
    cells = list(data.cells if cells is None else cells)
    out = {
        "format": "histexpr-data-summary",
        "version": 1,
        "marks": list(data.marks),
        "n_bins": data.n_bins,
        "bin_size": int(data.meta.get("bin_size", BIN_SIZE)),
        "target": data.target if data.has_target else None,
        "n_examples": len(data),
        "n_genes": int(np.unique(data.gene).size),
        "cells": {},
    }
    edges = None
    if data.has_target and len(data):
        edges = np.histogram_bin_edges(data.y[np.isfinite(data.y)], bins=hist_bins)
    for cell in cells:
        rows = data.cell == cell
        entry = {
            "n": int(rows.sum()),
            "mean_signal": np.round(data.X[rows].mean(axis=0, dtype=np.float64), 5).tolist(),
        }
        if edges is not None:
            y = data.y[rows]
            entry["y_mean"], entry["y_std"] = float(np.mean(y)), float(np.std(y))
            entry["y_hist"] = {
                "counts": np.histogram(y, edges)[0].tolist(),
                "edges": edges.tolist(),
            }
        out["cells"][cell] = entry
    return out


def write_data_summary(data: HistoneDataset, run_dir, cells: Sequence[str] | None = None) -> Path:
    """Write ``RUN_DIR/data_summary.json`` (see :func:`summarize_data`)."""
    path = Path(run_dir) / runs.DATA_SUMMARY
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summarize_data(data, cells)) + "\n")
    return path


def _choose_cells(run: runs.Run, available: Sequence[str], requested, limit: int = 4) -> list[str]:
    available = [str(c) for c in available]
    if requested:
        return [c for c in requested if c in available]
    unseen = [c for c in available if run.is_unseen(c)]
    seen = [c for c in available if not run.is_unseen(c)]
    chosen = seen[: limit // 2] + unseen[: limit // 2]
    return chosen + [c for c in available if c not in chosen][: limit - len(chosen)]


@dataclass
class RunInputs:
    """Every piece of a run, read and checked before the first figure is drawn."""

    run: runs.Run
    cells: list[str] | None
    max_points: int
    histories: dict[str, pd.DataFrame]
    summary: dict | None
    explanation: Explanation | None
    explain_folder: Path
    intervals: pd.DataFrame | None
    auto: dict[str, object]


def _comparison(page: Page, r: RunInputs) -> None:
    comparison_section(page, r.run.results())


def _intervals(page: Page, r: RunInputs) -> None:
    intervals_section(page, r.intervals, str(r.run.dir / INTERVALS))


def _auto(page: Page, r: RunInputs) -> None:
    auto_section(page, r.auto)


def _overview(page: Page, r: RunInputs) -> None:
    run = r.run
    page.section("overview", "Run")
    h = run.header
    rows = [
        ("command", h.command),
        ("created", h.created),
        ("histexpr version (run)", h.histexpr_version),
        ("run format version", h.format_version),
        ("data file", h.data_path),
        ("examples", h.n_examples),
        ("cell types", len(h.cells)),
        ("training cell types", len(h.train_cells)),
        ("unseen cell types", ", ".join(h.unseen_cells) or "none"),
        ("target", h.target),
    ]
    rows = [(k, "–" if v in (None, "") else str(v)) for k, v in rows]
    page.table(pd.DataFrame(rows, columns=["field", "value"]))


def _per_cell(page: Page, r: RunInputs) -> None:
    wide = r.run.per_cell().pivot_table(index="cell", columns="model", values="pearson")
    wide = wide.reset_index()
    page.table(wide, details=f"Pearson r per cell type ({len(wide)} cell types)")


def _predictions(page: Page, r: RunInputs) -> None:
    predictions_section(page, r.run, r.max_points)


def _differential(page: Page, r: RunInputs) -> None:
    """The demo's differential table (``differential.csv``), when the run has one."""
    run = r.run
    if not run.has_differential():
        return
    page.section("differential", "Differential expression")
    page.text(
        "Predicted change of expression between two cell types (pair A:B) against the "
        "observed change, on genes held out of training."
    )
    page.table(run.differential())


def _data(page: Page, run: runs.Run, summary: dict | None, cells) -> bool:
    """The data section; False (with a note) when neither a summary nor the data file is there."""
    page.section("data", "Data")
    if summary is None:
        from histexpr.data.hdf5 import is_h5, read_h5

        path = run.header.data_path
        if not path or not Path(path).is_file() or not is_h5(path):
            page.note(
                f"No {runs.DATA_SUMMARY} and the run's data file is not a readable HDF5 file: "
                "no input heatmaps."
            )
            return False
        chosen = _choose_cells(run, run.header.cells, None)
        summary = summarize_data(read_h5(path, cells=chosen), chosen)
    per_cell = summary["cells"]
    chosen = _choose_cells(run, list(per_cell), cells)
    page.text(
        f"{summary['n_examples']} examples, {summary['n_genes']} genes, {len(per_cell)} cell types "
        f"summarised; marks {', '.join(summary['marks'])}; target {summary.get('target')}."
    )
    try:
        rows = [
            {"cell": run.label(c), "n": e["n"], "y mean": e.get("y_mean"), "y sd": e.get("y_std")}
            | {
                m: float(np.mean(s))
                for m, s in zip(summary["marks"], e["mean_signal"], strict=True)
            }
            for c, e in per_cell.items()
        ]
        means = {run.label(c): np.asarray(per_cell[c]["mean_signal"]) for c in chosen}
        hists = {
            run.label(c): plot.Histogram(
                np.asarray(per_cell[c]["y_hist"]["counts"]),
                np.asarray(per_cell[c]["y_hist"]["edges"]),
            )
            for c in chosen
            if "y_hist" in per_cell[c]
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise HistexprError(
            f"{run.dir / runs.DATA_SUMMARY}: malformed cell entry ({exc})"
        ) from None
    page.table(
        pd.DataFrame(rows), details="Per cell type: examples, target and mean reads per mark"
    )
    fig = plot.input_heatmaps_figure(
        means,
        summary["marks"],
        summary.get("bin_size", BIN_SIZE),
        title="Mean input signal per mark around the TSS",
    )
    page.figure(
        fig,
        "input-heatmap",
        "Look for the peaks at the TSS (0 kb) and how they differ between cell types.",
    )
    if hists:
        ax = plot.plot_expression_histogram(hists, title="Expression per cell type")
        page.figure(ax.figure, "expression-histogram", _HIST_CAPTION)
    return True


_HIST_CAPTION = "Compare location and spread between cell types; a spike at 0 is silent genes."


def _data_figures(page: Page, r: RunInputs) -> None:
    if (
        not _data(page, r.run, r.summary, r.cells)
        or "expression-histogram" not in page.figure_kinds
    ):
        # Without a data summary the test-set targets still show the expression distribution.
        run, preds = r.run, r.run.predictions()
        chosen = _choose_cells(run, pd.unique(preds["cell"]), r.cells)
        values = {run.label(c): preds.loc[preds["cell"] == c, "y"].to_numpy() for c in chosen}
        ax = plot.plot_expression_histogram(values, title="Expression per cell type (test genes)")
        page.figure(ax.figure, "expression-histogram", _HIST_CAPTION)


def _training(page: Page, r: RunInputs) -> None:
    training_section(page, r.histories)


def _interpretation(page: Page, r: RunInputs) -> None:
    note = f"No explanation in {r.explain_folder}: " + _explain_hint(r.run)
    interpretation_section(page, r.explanation, r.run.label, note)


def _config(page: Page, r: RunInputs) -> None:
    run = r.run
    page.section("config", "Configuration and versions")
    if run.header.config:
        page.pre(json.dumps(run.header.config, indent=2, sort_keys=True))
    else:
        page.note(f"No configuration recorded in {runs.RUN_JSON}.")
    model_configs(page, run.model_dirs())
    versions_table(page)


def _explain_hint(run: runs.Run) -> str:
    data = run.header.data_path
    if data and Path(data).is_file():
        return (
            "run `" + " ".join(["histexpr", "explain", shlex.quote(str(run.dir))]) + "` to add one."
        )
    return (
        "run `histexpr explain "
        + shlex.quote(str(run.dir))
        + " --data DATA_FILE` (the run records no readable data file) to add one."
    )


#: The sections of a run's page, in order: pictures of the scores first. Each takes the
#: page and the checked :class:`RunInputs`; a section with nothing to show adds nothing.
RUN_SECTIONS: list[Callable[[Page, RunInputs], None]] = [
    _comparison,
    _per_cell,
    _intervals,
    _auto,
    _predictions,
    _differential,
    _training,
    _data_figures,
    _interpretation,
    _overview,
    _config,
]


def _run_page(run: runs.Run, cells, max_points: int, explain_dir) -> Page:
    # read and check every piece first: a damaged file fails before any figure is drawn
    run.results(), run.per_cell(), run.predictions()
    if run.has_differential():
        run.differential()
    folder = Path(explain_dir) if explain_dir is not None else run.explain_dir
    inputs = RunInputs(
        run=run,
        cells=cells,
        max_points=max_points,
        histories={name: read_history(path) for name, path in run.histories().items()},
        summary=run.data_summary() if run.has_data_summary() else None,
        explanation=read_explanation(folder),
        explain_folder=folder,
        intervals=read_intervals(run),
        auto={n: a for n, d in run.model_dirs().items() if (a := read_auto(d))},
    )
    page = Page()
    for section in RUN_SECTIONS:
        section(page, inputs)
    return page


def default_report_path(path) -> Path:
    """``RUN_DIR/report.html`` for a run; ``MODEL_DIR.report.html`` next to a model directory."""
    path = Path(path)
    if runs.is_run_dir(path):
        return path / "report.html"
    return path.with_name(path.name + ".report.html")


def write_report(
    run_dir,
    out=None,
    cells: Sequence[str] | None = None,
    max_points: int = 4000,
    explain_dir=None,
) -> Path:
    """Write one self-contained HTML report of a run directory or a model directory.

    Parameters
    ----------
    run_dir : str or PathLike
        A run directory (``run.json``) or a model directory (``model.json``).
    out : str or PathLike, optional
        Destination; default :func:`default_report_path` (never inside a model directory).
    cells : sequence of str, optional
        Cell types for the per-cell figures; default up to two seen and two unseen.
    max_points : int
        Points per predicted-vs-observed panel (metrics use all of them).
    explain_dir : str or PathLike, optional
        Explanation folder; default ``RUN_DIR/explain`` or ``MODEL_DIR.explain``.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(run_dir)
    cells = list(cells) if cells else None
    if runs.is_run_dir(path):
        run = runs.read_run(path)
        if cells:
            from histexpr.data.validate import check_cells

            check_cells(cells, run.header.cells, "--cells")
        page = _run_page(run, cells, max_points, explain_dir)
    elif (path / HEADER).is_file():
        from histexpr.report.model import model_page

        page = model_page(path, explain_dir)
    else:
        raise HistexprError(
            f"{path}: not a run directory (no {runs.RUN_JSON}) nor a model directory (no {HEADER})"
        )
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    page.body.append(f"<p><small>Generated {stamp} by histexpr.</small></p>")
    out = Path(out) if out is not None else default_report_path(path)
    with atomic_path(out) as tmp:
        tmp.write_text(page.render(f"histexpr report: {path.name}"), encoding="utf-8")
        tmp.chmod(0o644)  # a page to share; mkstemp's private mode would get in the way
    return out
