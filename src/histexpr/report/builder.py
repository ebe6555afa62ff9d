"""``histexpr report``: one self-contained HTML page that gathers a run directory.

The page embeds its figures as base64 PNG data URIs and its style inline, so it
opens offline and can be mailed as one file. It reads the run directory layout::

    run.json, results.csv, per_cell.csv, predictions.csv, data_summary.json,
    models/<name>/{model.json, history.csv}, explain/{explain.json, *.npz}

and degrades gracefully: a missing or unreadable piece skips its section with a
note instead of failing the report. An inline script records, after load, how
many images decoded (``<body data-images-decoded="ok/total">``) for browser tests.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from histexpr import plot
from histexpr.atomic import atomic_path
from histexpr.data.dataset import BIN_SIZE, MARKS, HistoneDataset
from histexpr.errors import HistexprError
from histexpr.explain import load_attributions
from histexpr.report.page import Page

SUMMARY_FILE = "data_summary.json"
_SKIPPABLE = (OSError, ValueError, KeyError, TypeError, IndexError, HistexprError)
_META_COLUMNS = {"cell", "gene", "y", "seen"}


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
    path = Path(run_dir) / SUMMARY_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summarize_data(data, cells)) + "\n")
    return path


class _Run:
    """Lazy, cached access to the files of a run directory."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self._cache: dict[str, object] = {}
        self.info = self.json("run.json") if (run_dir / "run.json").is_file() else {}

    def json(self, name: str) -> dict:
        if name not in self._cache:
            path = self.dir / name
            try:
                self._cache[name] = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON ({exc})") from None
        return self._cache[name]

    def csv(self, name: str) -> pd.DataFrame:
        if name not in self._cache:
            path = self.dir / name
            if not path.is_file():
                raise FileNotFoundError(f"no {name} in the run directory")
            self._cache[name] = pd.read_csv(path)
        return self._cache[name]

    @property
    def data(self) -> dict:
        return self.info.get("data") or {}

    def unseen(self) -> set[str]:
        return {str(c) for c in self.data.get("unseen_cells") or ()}

    def label(self, cell: str) -> str:
        if cell in self.unseen():
            return f"{cell} (unseen)"
        return f"{cell} (seen)" if cell in set(self.data.get("train_cells") or ()) else cell


def _choose_cells(run: _Run, available: Sequence[str], requested, limit: int = 4) -> list[str]:
    available = [str(c) for c in available]
    if requested:
        return [c for c in requested if c in available]
    unseen = [c for c in available if c in run.unseen()]
    seen = [c for c in available if c not in run.unseen()]
    chosen = seen[: limit // 2] + unseen[: limit // 2]
    return chosen + [c for c in available if c not in chosen][: limit - len(chosen)]


def _overview(page: Page, run: _Run, cells) -> None:
    page.section("overview", "Run")
    if not run.info:
        page.note("run.json is missing: command, data and configuration are unknown.")
        return
    rows = [
        ("command", run.info.get("command")),
        ("created", run.info.get("created")),
        ("histexpr version (run)", run.info.get("histexpr_version")),
        ("data file", run.data.get("path")),
        ("examples", run.data.get("n_examples")),
        ("cell types", len(run.data.get("cells") or ())),
        ("training cell types", len(run.data.get("train_cells") or ())),
        ("unseen cell types", ", ".join(run.data.get("unseen_cells") or ()) or "none"),
        ("target", run.data.get("target")),
    ]
    rows = [(k, "–" if v is None else str(v)) for k, v in rows]
    page.table(pd.DataFrame(rows, columns=["field", "value"]))


def _metrics(page: Page, run: _Run, cells) -> None:
    page.section("metrics", "Metrics")
    results = run.csv("results.csv")
    missing = {"model", "group"} - set(results.columns)
    if missing:
        raise ValueError(f"results.csv lacks column(s) {', '.join(sorted(missing))}")
    page.text("Test-set metrics per model on seen and unseen cell types.")
    page.table(results.sort_values(["group", "model"], kind="stable"))
    try:
        per_cell = run.csv("per_cell.csv")
    except FileNotFoundError:
        page.note("per_cell.csv is missing: no per-cell-type metrics.")
        return
    wide = per_cell.pivot_table(index="cell", columns="model", values="pearson").reset_index()
    page.table(wide, details=f"Pearson r per cell type ({len(wide)} cell types)")


def _model_metrics(run: _Run, model: str) -> dict[str, dict]:
    try:
        results = run.csv("results.csv")
    except _SKIPPABLE:
        return {}
    if not {"model", "group"} <= set(results.columns):
        return {}
    rows = results[results["model"] == model]
    return {str(r["group"]): r.drop(["model", "group"]).to_dict() for _, r in rows.iterrows()}


def _predictions(page: Page, run: _Run, cells, max_points: int = 4000) -> None:
    page.section("predictions", "Predicted vs observed")
    preds = run.csv("predictions.csv")
    # The simulator's oracle (when present) goes last: it is the reference, not a contender.
    models = sorted(
        (c for c in preds.columns if c not in _META_COLUMNS), key=lambda c: c == "oracle"
    )
    if "y" not in preds or not models:
        page.note("predictions.csv has no observed values (y) or no model columns.")
        return
    unseen = preds["cell"].astype(str).isin(run.unseen()).to_numpy()
    groups = {"seen": ~unseen, "unseen": unseen} if unseen.any() else {"all": ~unseen}
    for model in models:
        parts = {g: (preds["y"][m], preds[model][m]) for g, m in groups.items() if m.any()}
        fig = plot.pred_vs_obs_figure(parts, _model_metrics(run, model), model, max_points)
        page.figure(fig, "pred-vs-obs", f"{model}: predicted vs observed expression per group")


def _training(page: Page, run: _Run, cells) -> None:
    page.section("training", "Training")
    histories = sorted((run.dir / "models").glob("*/history.csv"))
    if not histories:
        page.note("No models/<name>/history.csv: no loss curves (baselines record none).")
    for path in histories:
        fig = Figure(figsize=(7, 3.5), layout="constrained")
        plot.plot_loss_curves(pd.read_csv(path), fig.add_subplot())
        page.figure(fig, "loss-curves", f"{path.parent.name}: loss per epoch and member")


def _summary_or_data(run: _Run) -> dict:
    if (run.dir / SUMMARY_FILE).is_file():
        return run.json(SUMMARY_FILE)
    from histexpr.data.hdf5 import is_h5, read_h5

    path = run.data.get("path")
    if not path or not Path(path).is_file() or not is_h5(path):
        raise FileNotFoundError(f"no {SUMMARY_FILE} and the run's data file is not readable")
    cells = _choose_cells(run, run.data.get("cells") or [], None)
    return summarize_data(read_h5(path, cells=cells), cells)


def _data(page: Page, run: _Run, cells) -> None:
    page.section("data", "Data")
    summary = _summary_or_data(run)
    per_cell = summary["cells"]
    chosen = _choose_cells(run, list(per_cell), cells)
    page.text(
        f"{summary['n_examples']} examples, {summary['n_genes']} genes, {len(per_cell)} cell types "
        f"summarised; marks {', '.join(summary['marks'])}; target {summary.get('target')}."
    )
    rows = [
        {"cell": run.label(c), "n": e["n"], "y mean": e.get("y_mean"), "y sd": e.get("y_std")}
        | {m: float(np.mean(s)) for m, s in zip(summary["marks"], e["mean_signal"], strict=True)}
        for c, e in per_cell.items()
    ]
    page.table(
        pd.DataFrame(rows), details="Per cell type: examples, target and mean reads per mark"
    )
    means = {run.label(c): np.asarray(per_cell[c]["mean_signal"]) for c in chosen}
    fig = plot.input_heatmaps_figure(means, summary["marks"], summary.get("bin_size", BIN_SIZE))
    page.figure(fig, "input-heatmap", "Mean reads per mark and bin around the TSS")
    hists = {
        run.label(c): plot.Histogram(
            np.asarray(per_cell[c]["y_hist"]["counts"]), np.asarray(per_cell[c]["y_hist"]["edges"])
        )
        for c in chosen
        if "y_hist" in per_cell[c]
    }
    if hists:
        ax = plot.plot_expression_histogram(hists, title="Expression per cell type")
        page.figure(ax.figure, "expression-histogram", "Distribution of the expression target")


def _expression_from_predictions(page: Page, run: _Run, cells) -> None:
    # Without a data summary the test-set targets still show the expression distribution.
    preds = run.csv("predictions.csv")
    chosen = _choose_cells(run, pd.unique(preds["cell"].astype(str)), cells)
    values = {
        run.label(c): preds.loc[preds["cell"].astype(str) == c, "y"].to_numpy() for c in chosen
    }
    ax = plot.plot_expression_histogram(values, title="Expression per cell type (test genes)")
    page.figure(ax.figure, "expression-histogram", "Distribution of the expression target")


def _interpretation(page: Page, run: _Run, cells) -> None:
    page.section("interpretation", "Interpretation")
    files = sorted((run.dir / "explain").glob("attributions_*.npz"))
    if not files:
        page.note("No explain/attributions_*.npz: run `histexpr explain RUN_DIR` to add them.")
        return
    info = run.json("explain/explain.json") if (run.dir / "explain/explain.json").is_file() else {}
    if info:
        page.text(
            f"Model {info.get('model')}; baseline {info.get('baseline')}; "
            f"at most {info.get('max_per_cell')} genes per cell type."
        )
    for path in files:
        a = load_attributions(path)
        labels = {c: run.label(c) for c in a.cells}
        fig = plot.attribution_figure(a.cells, a.signed, a.abs, a.marks, a.method, labels)
        page.figure(fig, "attribution", f"Mean {a.method} per cell type: signed and absolute")
    path = run.dir / "explain" / "attention.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            maps = {k: z[k] for k in z.files if not k.endswith("_marks")}
        fig, axes = plot.figure_grid(len(maps), 2)
        for ax, (cell, m) in zip(axes, maps.items(), strict=True):
            plot.heatmap(m, info.get("marks") or MARKS, ax, title=f"{run.label(cell)}: attention")
        page.figure(fig, "attention", "Mean bin-level attention per cell type")


def _config(page: Page, run: _Run, cells) -> None:
    from histexpr._runtime import dependency_versions, histexpr_version

    __version__ = histexpr_version()

    page.section("config", "Configuration and versions")
    if run.info.get("config") is not None:
        page.pre(json.dumps(run.info["config"], indent=2, sort_keys=True))
    else:
        page.note("No configuration recorded in run.json.")
    for header in sorted((run.dir / "models").glob("*/model.json")):
        model = json.loads(header.read_text())
        page.body.append(
            f"<details><summary>model {html.escape(header.parent.name)} "
            f"({html.escape(str(model.get('kind')))})</summary>"
        )
        page.pre(json.dumps(model.get("config"), indent=2, sort_keys=True))
        page.body.append("</details>")
    versions = {"histexpr (report)": __version__} | dependency_versions()
    page.table(pd.DataFrame(sorted(versions.items()), columns=["package", "version"]))


def _guarded(page: Page, name: str, fn: Callable, *args) -> bool:
    try:
        fn(page, *args)
        return True
    except _SKIPPABLE as exc:
        page.note(f"{name} skipped: {exc}")
        return False


def write_report(
    run_dir, out=None, cells: Sequence[str] | None = None, max_points: int = 4000
) -> Path:
    """Write one self-contained HTML report of a run directory.

    Parameters
    ----------
    run_dir : str or PathLike
    out : str or PathLike, optional
        Destination; default ``RUN_DIR/report.html``.
    cells : sequence of str, optional
        Cell types for the per-cell figures; default up to two seen and two unseen.
    max_points : int
        Points per predicted-vs-observed panel (metrics use all of them).

    Returns
    -------
    Path
        The written file.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HistexprError(f"{run_dir}: not a run directory")
    run, page = _Run(run_dir), Page()
    cells = list(cells) if cells else None
    _overview(page, run, cells)
    _guarded(page, "Metrics", _metrics, run, cells)
    _guarded(
        page, "Predicted vs observed", lambda p, *a: _predictions(p, *a, max_points), run, cells
    )
    _guarded(page, "Training", _training, run, cells)
    _guarded(page, "Data summary", _data, run, cells)
    if "expression-histogram" not in page.figure_kinds:
        _guarded(page, "Expression histogram", _expression_from_predictions, run, cells)
    _guarded(page, "Interpretation", _interpretation, run, cells)
    _guarded(page, "Configuration", _config, run, cells)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    page.body.append(f"<p><small>Generated {stamp} by histexpr.</small></p>")
    out = Path(out) if out is not None else run_dir / "report.html"
    with atomic_path(out) as tmp:
        tmp.write_text(page.render(f"histexpr report: {run_dir.name}"), encoding="utf-8")
        tmp.chmod(0o644)  # a page to share; mkstemp's private mode would get in the way
    return out
