"""``histexpr explain``: attribute the neural model of a run or a model directory.

The input is either a run directory (``RUN_DIR/models/<name>/``; the explanation goes to
``RUN_DIR/explain/``, which belongs to the run) or a model directory from ``histexpr train``
(the explanation goes next to it, ``MODEL_DIR.explain/``, never into it). ``out`` overrides
either. An existing explanation folder of a *different* model is refused, and so is any
non-empty folder that is not an explanation; the folder is replaced atomically.

The folder receives (names from :mod:`histexpr.runs`) ``attributions_<method>.npz`` and
``.png`` (per-cell-type means), ``genes_<method>.npz`` (per-gene maps), ``attention.npz`` and
``.png`` for attention models, and ``explain.json``. An atlas model gets ``atlas_prior.csv``
(per gene its atlas prior, final prediction and observed value,
:mod:`histexpr.workflows.explain_atlas`): instead of attributions for atlas-ridge and
atlas-lightgbm (no gradients), beside them for atlas-convnet, whose attributions are those
of its histone part (the atlas features held fixed). With ``--pair A:B`` a model of any
explainable kind explains the predicted change of each gene instead (:func:`explain_pair`).
Which model and folder: :mod:`histexpr.workflows.explain_target`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from torch import nn

from histexpr import estimators, runs
from histexpr._runtime import histexpr_version, progress
from histexpr.atomic import atomic_dir
from histexpr.data.dataset import HistoneDataset, canonical_gene_ids, conform_marks
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import kind_of
from histexpr.estimators.bundle import check_input, model_task, read_header
from histexpr.explain import (
    METHODS,
    AttentionMaps,
    ExplainResult,
    GeneAttributions,
    attention_maps,
    attribute,
    check_steps,
    has_attention,
    mean_attribution_by_cell,
    sample_rows,
    save_attributions,
    save_gene_attributions,
)
from histexpr.plot import attribution_figure, figure_grid, heatmap, save_figure
from histexpr.workflows.explain_atlas import (
    atlas_prior_table,
    explain_atlas_prior,
    prior_note,
    report_hint,
    summary_head,
)
from histexpr.workflows.explain_target import (
    check_out_dir,
    default_cells,
    resolve_target,
)
from histexpr.workflows.pairs import (
    check_pair_given,
    load_pair_data,
    one_pair,
    pair_attribution,
    write_pair_explanation,
)

__all__ = [
    "DEFAULT_GENES_PER_CELL",
    "check_request",
    "explain_pair",
    "explain_path",
    "explain_run",
    "resolve_target",
]

#: Per-gene attributions written by default: the first genes of each cell type.
DEFAULT_GENES_PER_CELL = 10


def _gene_rows(part: HistoneDataset, cells, genes, n_genes: int) -> np.ndarray:
    if genes:
        genes = [str(g) for g in canonical_gene_ids(list(genes))]  # `938` names ENSG00000000938
        missing = sorted(set(genes) - set(np.unique(part.gene).astype(str)))
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise HistexprError(f"gene(s) not in the data of the chosen cell types: {shown}")
        wanted = np.isin(part.gene.astype(str), list(genes))
        return np.flatnonzero(wanted & np.isin(part.cell, cells))
    rows = [np.flatnonzero(part.cell == c)[:n_genes] for c in cells]
    return np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


def check_request(methods, n_steps: int, max_per_cell: int | None, n_genes: int) -> None:
    """Refuse bad methods and counts before any work (one line each)."""
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ConfigError(
            f"unknown attribution method(s) {', '.join(bad) or '(none given)'}; "
            f"choose from {', '.join(METHODS)}"
        )
    check_steps(n_steps)
    if max_per_cell is not None and max_per_cell < 1:
        raise ConfigError(f"max_per_cell (genes per cell type) must be >= 1, not {max_per_cell}")
    if n_genes < 0:
        raise ConfigError(f"n_genes (per-gene maps per cell type) must be >= 0, not {n_genes}")


def explain_run(
    path,
    data: HistoneDataset,
    cells: Sequence[str] | None = None,
    methods: Sequence[str] = METHODS,
    model_kind: str | None = None,
    max_per_cell: int | None = 2000,
    batch_size: int = 256,
    n_steps: int = 50,
    seed: int = 0,
    out=None,
    genes: Sequence[str] | None = None,
    n_genes: int = DEFAULT_GENES_PER_CELL,
    show_progress: bool = True,
) -> ExplainResult:
    """Attribute the neural model of a run or model directory on ``cells``.

    Writes ``attributions_<method>.npz`` (see :func:`~histexpr.explain.save_attributions`) and
    ``.png``, ``genes_<method>.npz`` (see :func:`~histexpr.explain.save_gene_attributions`),
    for attention models ``attention.npz`` (``"<cell>"`` -> mean bin attention
    ``(n_marks, n_bins)``, ``"<cell>_marks"`` -> mean mark attention ``(n_marks,)``) and
    ``attention.png``, and ``explain.json``.

    Parameters
    ----------
    path : path
        A run directory or a model directory.
    data : HistoneDataset
        Must hold ``cells``; marks and bins must match the model's.
    cells : sequence of str, optional
        Default: see :func:`default_cells`.
    max_per_cell : int, optional
        Genes averaged per cell type (random subset); None for all.
    out : path, optional
        Explanation folder; default ``RUN_DIR/explain`` or ``MODEL_DIR.explain``.
    genes : sequence of str, optional
        Genes whose individual maps are written; default the first ``n_genes`` per cell type
        (0: none).
    """
    check_request(methods, n_steps, max_per_cell, n_genes)
    target = resolve_target(path, model_kind)
    check_pair_given(target.kind, None)  # a differential model explains pairs only
    out_dir = Path(out) if out is not None else target.default_out
    check_out_dir(out_dir, target.model_dir)
    header = read_header(target.model_dir)
    check_input(header, data, source="data")
    data = conform_marks(data, header.marks, source="data")  # by name: reorder, drop extras
    notes = list(target.notes)
    if cells:
        from histexpr.data.validate import check_cells

        cells = check_cells(cells, data.cells, "--cells")
    else:
        cells, more = default_cells(target, data)
        notes += more
    est = estimators.load_estimator(target.model_dir)
    part = data.select_cells(cells)
    side = prior_table = None
    explains = kind_of(target.kind).explain
    if "prior" in explains:
        if "attributions" not in explains:  # atlas-ridge, atlas-lightgbm: no gradients
            return explain_atlas_prior(target, est, part, out_dir, notes)
        # atlas-convnet: its prior per gene, and the gradients of its histone part with
        # the atlas features held fixed
        prior_table = atlas_prior_table(est, part)
        side = est.side_inputs(part)
        notes.append(prior_note(target.name, prior_table))
    if kind_of(target.kind).family == "network":
        # what the network reads: the counts rescaled per cell type (depth_norm="cell")
        part = dataclasses.replace(part, X=est.model_input(part))
    # NeuralEstimator keeps its fitted Predictor (raw counts in) as ``model_``.
    module = getattr(est, "module", None) or getattr(est, "model_", None)
    if not isinstance(module, nn.Module):
        raise HistexprError(f"{target.model_dir}: the loaded model exposes no torch module")
    labels = target.run.labels(cells) if target.run is not None else {c: c for c in cells}
    gene_rows = _gene_rows(part, cells, list(genes or ()), n_genes)
    result = ExplainResult(target.name, out_dir, {}, notes=notes)
    names: list[str] = []
    total = len(methods) * (len(cells) + (1 if gene_rows.size else 0))
    with atomic_dir(out_dir) as tmp, progress(total, "explain", "step", show_progress) as bar:
        for method in methods:
            attrs = mean_attribution_by_cell(
                module,
                part,
                method,
                cells,
                max_per_cell,
                seed,
                on_cell=lambda n: bar.update(1),
                side=side,
                batch_size=batch_size,
                n_steps=n_steps,
            )
            result.attributions[method] = attrs
            name = runs.attribution_file(method)
            save_attributions(tmp / name, attrs)
            bin_size = int(data.meta.get("bin_size", 100))  # the x axis in kb from the TSS
            fig = attribution_figure(
                cells, attrs.signed, attrs.abs, data.marks, method, labels, bin_size
            )
            save_figure(fig, (tmp / name).with_suffix(".png"))
            names += [name, str(Path(name).with_suffix(".png"))]
            if gene_rows.size:
                values = attribute(
                    module,
                    part.X[gene_rows],
                    method,
                    batch_size=batch_size,
                    n_steps=n_steps,
                    side=None if side is None else side[gene_rows],
                )
                ga = GeneAttributions(
                    method, tuple(data.marks), part.cell[gene_rows], part.gene[gene_rows], values
                )
                result.genes[method] = ga
                save_gene_attributions(tmp / runs.gene_attribution_file(method), ga)
                names.append(runs.gene_attribution_file(method))
                bar.update(1)
        if prior_table is not None:
            prior_table.to_csv(tmp / runs.ATLAS_PRIOR, index=False, float_format="%.6g")
            names.append(runs.ATLAS_PRIOR)
        if has_attention(module):
            result.attention = _attention(
                module, part, cells, labels, max_per_cell, seed, batch_size, tmp
            )
            names += [runs.ATTENTION, str(Path(runs.ATTENTION).with_suffix(".png"))]
        else:
            result.notes.append(f"{target.name} has no attention weights to export")
        summary = {
            **summary_head(target),
            "methods": list(methods),
            "cells": cells,
            "marks": list(data.marks),
            "n_per_cell": {m: a.n.tolist() for m, a in result.attributions.items()},
            "max_per_cell": max_per_cell,
            "n_steps": n_steps,
            "genes": sorted({str(g) for g in part.gene[gene_rows]}),
            "baseline": "zeros (no reads)",
            "attention": result.attention is not None,
            **({"atlas_prior": runs.ATLAS_PRIOR} if prior_table is not None else {}),
            "notes": result.notes,
            "histexpr_version": histexpr_version(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (tmp / runs.EXPLAIN_JSON).write_text(json.dumps(summary, indent=2) + "\n")
        names.append(runs.EXPLAIN_JSON)
    result.files = [out_dir / n for n in names]
    result.hints.append(report_hint(target, out_dir))
    return result


def _attention(
    module, part, cells, labels, max_per_cell, seed, batch_size, folder: Path
) -> AttentionMaps:
    rng = np.random.default_rng(seed)
    bins, marks, arrays = [], [], {}
    for cell in cells:
        rows = sample_rows(np.flatnonzero(part.cell == cell), max_per_cell, rng)
        att = attention_maps(module, part.X[rows], batch_size)
        bins.append(att.bins.mean(axis=0))
        marks.append(att.marks.mean(axis=0))
        arrays[cell], arrays[f"{cell}_marks"] = bins[-1], marks[-1]
    with open(folder / runs.ATTENTION, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    fig, axes = figure_grid(len(cells), 2)
    for ax, cell, b in zip(axes, cells, bins, strict=True):
        heatmap(b, part.marks, ax, title=f"{labels[cell]}: bin attention", cbar_label="weight")
    save_figure(fig, (folder / runs.ATTENTION).with_suffix(".png"))
    return AttentionMaps(np.stack(bins), np.stack(marks))


def explain_path(
    path,
    data_path=None,
    cells: Sequence[str] | None = None,
    pair: str | None = None,
    names: str | None = None,
    **kwargs,
) -> ExplainResult:
    """:func:`explain_run` from paths: the data file defaults to the one a run recorded.

    ``pair`` (``"A:B"``): explain the predicted change instead (:func:`explain_pair`);
    ``names``: DeepDiff cell ids of file names (with ``pair``).
    """
    from histexpr.data.convert import load_dataset

    if pair:
        return explain_pair(path, data_path, pair, names=names, **kwargs)
    if names:
        raise HistexprError("--names applies with --pair")
    check_request(
        kwargs.get("methods", METHODS),
        kwargs.get("n_steps", 50),
        kwargs.get("max_per_cell", 2000),
        kwargs.get("n_genes", DEFAULT_GENES_PER_CELL),
    )
    path = Path(path)
    check_pair_given(resolve_target(path, kwargs.get("model_kind")).kind, pair)
    if data_path is None:
        recorded = runs.read_header(path).data_path if runs.is_run_dir(path) else None
        if recorded is None or not Path(recorded).is_file():
            where = "a model directory" if not runs.is_run_dir(path) else "this run"
            raise HistexprError(
                f"{path}: {where} records no readable data file; give one with --data"
            )
        data_path = recorded
    data = load_dataset(data_path, cells=list(cells) if cells else None)
    return explain_run(path, data, cells, **kwargs)


def explain_pair(
    path, data_path, pair, names=None, out=None, model_kind=None, n_steps=50, **_
) -> ExplainResult:
    """Per-gene attributions of a pair's predicted change, by a model of any explainable kind.

    Writes ``attributions_A_vs_B.npz`` and ``attribution_A_vs_B.png``
    (:func:`~histexpr.workflows.pairs.write_pair_explanation`) into ``out`` (default: the
    model's explanation folder). ``_``: the other options of :func:`explain_run` (unused).
    """
    a, b = one_pair(pair)
    if data_path is None:
        raise HistexprError("explain --pair needs --data")
    target = resolve_target(path, model_kind)
    header = read_header(target.model_dir)
    if not kind_of(target.kind).pairs and model_task(header) == "classification":
        raise HistexprError(f"{path}: a classifier's difference is no log fold change to explain")
    data = load_pair_data(data_path, names, None, target="auto")
    check_input(header, data, source=str(data_path))  # the one contract check
    data = conform_marks(data, header.marks, source="data")
    est = estimators.load_estimator(target.model_dir)
    att = pair_attribution(est, data, a, b, n_steps=n_steps)
    out_dir = Path(out) if out is not None else target.default_out
    bin_size = int(data.meta.get("bin_size", 100))
    files = write_pair_explanation(att, header.marks, out_dir, bin_size)
    return ExplainResult(target.name, out_dir, {}, files=files)
