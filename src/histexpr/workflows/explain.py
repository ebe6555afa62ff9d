"""``histexpr explain``: attribute a run's neural model and write ``RUN_DIR/explain/``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from torch import nn

from histexpr import estimators
from histexpr.atomic import atomic_path
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import HistexprError
from histexpr.estimators import NEURAL_KINDS
from histexpr.estimators.bundle import check_input, read_header
from histexpr.explain import (
    METHODS,
    AttentionMaps,
    ExplainResult,
    attention_maps,
    has_attention,
    mean_attribution_by_cell,
    sample_rows,
    save_attributions,
)
from histexpr.plot import attribution_figure, figure_grid, heatmap, save_figure


def _read_run_json(run_dir) -> dict:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def cell_labels(run_dir, cells: Sequence[str]) -> dict[str, str]:
    """``"E003 (seen)"`` / ``"E071 (unseen)"`` from ``run.json``; plain ids when unknown."""
    data = _read_run_json(run_dir).get("data", {})
    unseen, train = set(data.get("unseen_cells") or ()), set(data.get("train_cells") or ())
    out = {}
    for c in cells:
        out[c] = f"{c} (unseen)" if c in unseen else f"{c} (seen)" if c in train else c
    return out


def choose_model(run_dir, model_kind: str | None = None) -> tuple[str, list[str]]:
    """The model directory to explain, and notes on the ones skipped.

    Without ``model_kind`` the first neural model in :data:`~histexpr.estimators.NEURAL_KINDS`
    order is taken; baselines have no gradients and are skipped.
    """
    models = Path(run_dir) / "models"
    found = {}
    if models.is_dir():
        for d in sorted(models.iterdir()):
            if (d / "model.json").is_file():
                found[d.name] = read_header(d).kind
    if not found:
        raise HistexprError(f"{models}: no saved models in this run directory")
    if model_kind is not None:
        if model_kind not in found:
            raise HistexprError(f"{models}: no model {model_kind!r}; found {', '.join(found)}")
        if found[model_kind] not in NEURAL_KINDS:
            raise HistexprError(
                f"{models / model_kind}: a {found[model_kind]} baseline has no gradients to "
                f"explain; choose a neural model ({', '.join(NEURAL_KINDS)})"
            )
        return model_kind, []
    neural = [name for name, kind in found.items() if kind in NEURAL_KINDS]
    if not neural:
        raise HistexprError(
            f"{models}: only baselines ({', '.join(found)}); explain needs a neural model"
        )
    neural.sort(key=lambda name: NEURAL_KINDS.index(found[name]))
    skipped = [name for name in found if name != neural[0]]
    notes = [f"explained {neural[0]}; not explained: {', '.join(skipped)}"] if skipped else []
    return neural[0], notes


def explain_run(
    run_dir,
    data: HistoneDataset,
    cells: Sequence[str],
    methods: Sequence[str] = METHODS,
    model_kind: str | None = None,
    max_per_cell: int | None = 2000,
    batch_size: int = 256,
    n_steps: int = 50,
    seed: int = 0,
) -> ExplainResult:
    """Attribute a run's neural model on ``cells`` and write ``RUN_DIR/explain/``.

    Writes ``attributions_<method>.npz`` (see :func:`save_attributions`),
    ``attributions_<method>.png``, for attention models ``attention.npz``
    (``"<cell>"`` -> mean bin attention ``(n_marks, n_bins)``, ``"<cell>_marks"`` -> mean
    mark attention ``(n_marks,)``) and ``attention.png``, and ``explain.json``.

    Parameters
    ----------
    data : HistoneDataset
        Must hold ``cells``; marks and bins must match the model's.
    max_per_cell : int, optional
        Genes averaged per cell type (random subset); None for all.
    """
    from histexpr._runtime import histexpr_version

    __version__ = histexpr_version()

    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise HistexprError(
            f"unknown attribution method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}"
        )
    run_dir = Path(run_dir)
    name, notes = choose_model(run_dir, model_kind)
    model_dir = run_dir / "models" / name
    check_input(read_header(model_dir), data.marks, data.n_bins, source="data")
    est = estimators.load_estimator(model_dir)
    # NeuralEstimator keeps its fitted Predictor (raw counts in) as ``model_``.
    module = getattr(est, "module", None) or getattr(est, "model_", None)
    if not isinstance(module, nn.Module):
        raise HistexprError(f"{model_dir}: the loaded model exposes no torch module to explain")
    cells = [str(c) for c in cells]
    part = data.select_cells(cells)
    labels = cell_labels(run_dir, cells)
    out_dir = run_dir / "explain"
    result = ExplainResult(name, out_dir, {}, notes=notes)
    for method in methods:
        attrs = mean_attribution_by_cell(
            module, part, method, cells, max_per_cell, seed, batch_size=batch_size, n_steps=n_steps
        )
        result.attributions[method] = attrs
        path = out_dir / f"attributions_{method}.npz"
        save_attributions(path, attrs)
        fig = attribution_figure(cells, attrs.signed, attrs.abs, data.marks, method, labels)
        result.files += [path, save_figure(fig, path.with_suffix(".png"))]
    if has_attention(module):
        rng = np.random.default_rng(seed)
        bins, marks, arrays = [], [], {}
        for cell in cells:
            rows = sample_rows(np.flatnonzero(part.cell == cell), max_per_cell, rng)
            att = attention_maps(module, part.X[rows], batch_size)
            bins.append(att.bins.mean(axis=0))
            marks.append(att.marks.mean(axis=0))
            arrays[cell], arrays[f"{cell}_marks"] = bins[-1], marks[-1]
        result.attention = AttentionMaps(np.stack(bins), np.stack(marks))
        with atomic_path(out_dir / "attention.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        fig, axes = figure_grid(len(cells), 2)
        for ax, cell, b in zip(axes, cells, bins, strict=True):
            heatmap(b, data.marks, ax, title=f"{labels[cell]}: bin attention", cbar_label="weight")
        result.files += [out_dir / "attention.npz", save_figure(fig, out_dir / "attention.png")]
    else:
        result.notes.append(f"{name} has no attention weights to export")
    summary = {
        "model": name,
        "model_kind": read_header(model_dir).kind,
        "methods": list(methods),
        "cells": cells,
        "marks": list(data.marks),
        "n_per_cell": {m: a.n.tolist() for m, a in result.attributions.items()},
        "max_per_cell": max_per_cell,
        "n_steps": n_steps,
        "baseline": "zeros (no reads)",
        "attention": result.attention is not None,
        "notes": result.notes,
        "histexpr_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with atomic_path(out_dir / "explain.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    result.files.append(out_dir / "explain.json")
    return result
