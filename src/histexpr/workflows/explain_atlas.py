"""``histexpr explain`` of the atlas kinds: the atlas prior beside the prediction.

An atlas model has two sources per gene, the atlas prior and the histone signal.
:func:`atlas_prior_table` lays out, per example, the prior, the final prediction and
the observed value (``atlas_prior.csv``); for ``atlas-ridge`` and ``atlas-lightgbm``
(no gradients) :func:`explain_atlas_prior` writes that table alone, for
``atlas-convnet`` :func:`histexpr.workflows.explain.explain_run` writes it beside the
gradient attributions of the histone part (atlas features held fixed).
"""

from __future__ import annotations

import json
import shlex
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr import runs
from histexpr._runtime import histexpr_version
from histexpr.atomic import atomic_dir
from histexpr.data.dataset import HistoneDataset
from histexpr.explain import ExplainResult

__all__ = ["atlas_prior_table", "explain_atlas_prior", "prior_note", "summary_head"]


def atlas_prior_table(est, part: HistoneDataset) -> pd.DataFrame:
    """Per example: cell, gene, the atlas prior (NaN where the atlas is not used), the
    final prediction and the observed value (NaN without targets); columns
    :data:`histexpr.runs.ATLAS_PRIOR_COLUMNS`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # per-cell "atlas column excluded" notices
        prediction = np.asarray(est.predict(part), dtype=np.float64)
    prior = getattr(est, "prior_", None)
    prior = np.full(len(part), np.nan) if prior is None else np.asarray(prior, np.float64)
    observed = part.y if part.has_target else np.full(len(part), np.nan)
    return pd.DataFrame(
        {
            "cell": part.cell.astype(str),
            "gene": part.gene.astype(str),
            "prior": prior,
            "prediction": prediction,
            "observed": np.asarray(observed, np.float64),
        }
    )


def summary_head(target) -> dict:
    """The first fields of every ``explain.json``: format, model and where it came from."""
    return {
        "format": runs.EXPLAIN_FORMAT,
        "format_version": runs.EXPLAIN_FORMAT_VERSION,
        "model": target.name,
        "model_kind": target.kind,
        "model_dir": str(target.model_dir.resolve()),
        "source": "run" if target.run is not None else "model",
    }


def prior_note(name: str, table: pd.DataFrame) -> str:
    used = int(table["prior"].notna().sum())
    return f"{name}: {used} of {len(table)} examples use the atlas prior ({runs.ATLAS_PRIOR})"


def explain_atlas_prior(target, est, part: HistoneDataset, out_dir: Path, notes) -> ExplainResult:
    """An atlas model without gradients: ``atlas_prior.csv`` and ``explain.json``.

    ``target`` is the :class:`histexpr.workflows.explain.ExplainTarget` of the model.
    The histone part of the prediction is ``prediction - prior``.
    """
    table = atlas_prior_table(est, part)
    notes = [
        *notes,
        f"{target.name} is an atlas model without gradients: wrote its prior and prediction "
        "per gene",
        prior_note(target.name, table),
    ]
    result = ExplainResult(target.name, out_dir, {}, notes=notes)
    with atomic_dir(out_dir) as tmp:
        table.to_csv(tmp / runs.ATLAS_PRIOR, index=False, float_format="%.6g")
        summary = {
            **summary_head(target),
            "methods": [],
            "cells": [str(c) for c in part.cells],
            "marks": list(part.marks),
            "baseline": "atlas prior (no gradients)",
            "attention": False,
            "atlas_prior": runs.ATLAS_PRIOR,
            "notes": notes,
            "histexpr_version": histexpr_version(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (tmp / runs.EXPLAIN_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    result.files = [out_dir / runs.ATLAS_PRIOR, out_dir / runs.EXPLAIN_JSON]
    result.hints.append(report_hint(target, out_dir))
    return result


def report_hint(target, out_dir: Path) -> str:
    """The ``histexpr report`` command that shows the explanation in ``out_dir``, as
    printed (with ``--force`` when the report it writes exists: it works as printed)."""
    from histexpr.report import default_report_path

    report = ["histexpr", "report", target.path]
    if out_dir != target.default_out:
        report += ["--explain", out_dir]
    if default_report_path(target.path).exists():
        report.append("--force")
    return " ".join(shlex.quote(str(w)) for w in report)
