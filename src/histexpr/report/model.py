"""The report page of a model directory (from ``histexpr train``).

Sections: the model and its input contract (``model.json``), the metrics recorded at
training (``metrics.json``: fit metrics and, with a gene hold-out, the held-out genes), prediction
intervals (``metrics.json`` ``intervals``) and the automatic model choice (``model.json`` key
``auto``) when recorded,
the loss curves (``history.csv``; baselines record none), the explanation when one exists
(``MODEL_DIR.explain/`` or the folder given), the prediction-interval calibration
when the model has one (``train --intervals``) and the configuration. Baselines get every
section except loss curves and interpretation, each replaced by a note.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd

from histexpr import runs
from histexpr.errors import HistexprError
from histexpr.estimators.bundle import read_auto, read_header
from histexpr.report.page import Page
from histexpr.report.scores import auto_section, intervals_section
from histexpr.report.sections import (
    interpretation_section,
    model_configs,
    read_explanation,
    read_history,
    training_section,
    versions_table,
)

METRICS = "metrics.json"


def _scalar(value) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def read_model_metrics(model_dir: Path) -> dict | None:
    """``metrics.json`` of a model directory, or None when training recorded none."""
    path = model_dir / METRICS
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HistexprError(f"{path}: unreadable metrics ({exc})") from None
    if not isinstance(metrics, dict):
        raise HistexprError(f"{path}: metrics are not a JSON object")
    return metrics


def _metrics(page: Page, model_dir: Path, metrics: dict | None) -> None:
    page.section("metrics", "Metrics")
    if not metrics:
        page.note(f"No {METRICS}: training recorded no metrics for this model.")
        return
    held = metrics.get("heldout_genes")
    if held is not None:
        if not isinstance(held, dict):
            raise HistexprError(f"{model_dir / METRICS}: heldout_genes is not an object")
        page.text("Metrics on the genes held out of training (histexpr train --valid-fraction).")
        page.table(pd.DataFrame([held]))
    rows = [(k, v) for k, v in sorted(metrics.items()) if _scalar(v)]
    if rows:
        page.table(
            pd.DataFrame(rows, columns=["metric", "value"]),
            details="Recorded at training (fit metrics on training and validation data)",
        )
    members = metrics.get("members")
    if isinstance(members, list) and members and all(isinstance(m, dict) for m in members):
        page.table(pd.DataFrame(members), details=f"Ensemble members ({len(members)})")


def _calibration(page: Page, model_dir: Path, kind: str) -> None:
    """The calibration of ``train --intervals``: residuals and half-widths per category."""
    from histexpr.estimators.bundle import read_calibration
    from histexpr.estimators.intervals import MIN_RESIDUALS, Calibration
    from histexpr.evaluate import split_half_coverage

    stored = read_calibration(model_dir)
    if stored is None:
        return
    cal = Calibration.from_arrays(*stored)
    page.section("calibration", "Prediction intervals: calibration")
    page.text(
        "Split-conformal calibration per category (cell types seen / unseen x genes "
        "known / new; seen/new@CELL per training cell type): prediction -/+ half-width. "
        "`histexpr evaluate` reports the coverage and mean width on new data."
    )
    rows = pd.DataFrame(cal.summary())
    page.table(rows[~rows.category.str.contains("@")])
    per_cell = rows[rows.category.str.contains("@")]
    if len(per_cell):
        page.table(per_cell, details=f"Per training cell type ({len(per_cell)})")
    for note in cal.notes:
        page.note(note)
    # the coverage new examples get, estimated from the residuals alone: one half of
    # each category calibrates, the other is scored (evaluate measures it on new data)
    rows = [
        {"group": key, "model": kind, "level": lv, "coverage": cov, "width": width, "n": len(r)}
        for key, r in sorted(cal.residuals.items())
        if "@" not in key and len(r) >= 2 * MIN_RESIDUALS
        for lv in (0.8, 0.9)
        for cov, width in [split_half_coverage(r, lv)]
    ]
    if rows:
        page.text(
            "Prediction intervals (next section): the coverage and width that new examples "
            "of each category get, estimated from these residuals (one random half "
            "calibrates, the other is scored, both ways); `histexpr evaluate --interval` "
            "measures them on new data."
        )
    intervals_section(page, rows, f"{model_dir}: calibration")


def model_page(model_dir, explain_dir=None) -> Page:
    """The report page of one model directory (every piece is checked before drawing)."""
    from histexpr.estimators import KIND_TABLE

    model_dir = Path(model_dir)
    header = read_header(model_dir)
    metrics = read_model_metrics(model_dir)
    path = model_dir / runs.HISTORY
    histories = {model_dir.name: read_history(path)} if path.is_file() else {}
    folder = Path(explain_dir) if explain_dir is not None else runs.model_explain_dir(model_dir)
    # an explainable kind may have an explanation folder (attributions, attention, prior)
    known = header.kind in KIND_TABLE
    explained = known and KIND_TABLE[header.kind].explainable
    explanation = read_explanation(folder, model_dir) if explained else None
    page = Page()
    page.section("overview", "Model")
    rows = [
        ("model directory", str(model_dir)),
        ("kind", header.kind),
        ("created", header.created),
        ("histexpr version (model)", header.histexpr_version),
        ("model format version", header.format_version),
        ("input marks", ", ".join(header.marks)),
        ("input bins", header.n_bins),
    ]
    rows = [(k, "–" if v in (None, "") else str(v)) for k, v in rows]
    page.table(pd.DataFrame(rows, columns=["field", "value"]))
    _metrics(page, model_dir, metrics)
    intervals_section(page, (metrics or {}).get("intervals"), f"{model_dir / METRICS}: intervals")
    auto = read_auto(model_dir)
    auto_section(page, {model_dir.name: auto} if auto else {})
    _calibration(page, model_dir, header.kind)
    training_section(page, histories)
    if explained:
        words = ["histexpr", "explain", str(model_dir)]
        pair = " --pair A:B" if KIND_TABLE[header.kind].pairs else ""
        hint = "run `" + " ".join(map(shlex.quote, words)) + f" --data DATA_FILE{pair}` to add one."
        interpretation_section(page, explanation, str, f"No explanation in {folder}: {hint}")
    else:
        page.section("interpretation", "Interpretation")
        page.note(f"A {header.kind} baseline has no gradients: nothing to explain.")
    page.section("config", "Configuration and versions")
    model_configs(page, {model_dir.name: model_dir})
    if header.versions:
        trained = pd.DataFrame(sorted(header.versions.items()), columns=["package", "version"])
        page.table(trained, details="Package versions at training")
    versions_table(page)
    return page
