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
of its histone part (the atlas features held fixed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from torch import nn

from histexpr import estimators, runs
from histexpr._runtime import histexpr_version, progress
from histexpr.atomic import atomic_dir
from histexpr.data.dataset import HistoneDataset, canonical_gene_ids, conform_marks
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import NEURAL_KINDS
from histexpr.estimators.bundle import HEADER, check_input, read_header
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

#: Per-gene attributions written by default: the first genes of each cell type.
DEFAULT_GENES_PER_CELL = 10
#: Cell types explained by default for a model directory (the first of the data).
DEFAULT_CELLS = 4


@dataclass(frozen=True)
class ExplainTarget:
    """What :func:`resolve_target` found: the model to explain and where its explanation goes."""

    path: Path
    model_dir: Path
    name: str
    kind: str
    default_out: Path
    run: runs.Run | None
    notes: tuple[str, ...] = ()


def is_atlas_kind(kind: str) -> bool:
    """Atlas kinds (``atlas-ridge``, ``atlas-lightgbm``): explained by their prior, not gradients."""
    return str(kind).startswith("atlas-")


def _no_gradients(where, kind: str) -> HistexprError:
    return HistexprError(
        f"{where}: a {kind} baseline has no gradients to explain; "
        f"explain needs a neural model ({', '.join(NEURAL_KINDS)})"
    )


def choose_model(run: runs.Run, model_kind: str | None = None) -> tuple[str, list[str]]:
    """The model of a run to explain, and notes on the ones skipped.

    Without ``model_kind`` the first neural model in :data:`~histexpr.estimators.NEURAL_KINDS`
    order is taken; baselines have no gradients and are skipped.
    """
    dirs = run.model_dirs()
    if not dirs:
        raise HistexprError(f"{run.dir / runs.MODELS}: no saved models in this run directory")
    found = {name: read_header(d).kind for name, d in dirs.items()}
    if model_kind is not None:
        if model_kind not in found:
            raise HistexprError(
                f"{run.dir / runs.MODELS}: no model {model_kind!r}; found {', '.join(found)}"
            )
        if found[model_kind] not in NEURAL_KINDS and not is_atlas_kind(found[model_kind]):
            raise _no_gradients(dirs[model_kind], found[model_kind])
        return model_kind, []
    neural = [name for name, kind in found.items() if kind in NEURAL_KINDS]
    if not neural:
        raise HistexprError(
            f"{run.dir / runs.MODELS}: only baselines ({', '.join(found)}); "
            "explain needs a neural model"
        )
    neural.sort(key=lambda name: NEURAL_KINDS.index(found[name]))
    skipped = [name for name in found if name != neural[0]]
    notes = [f"explained {neural[0]}; not explained: {', '.join(skipped)}"] if skipped else []
    return neural[0], notes


def resolve_target(path, model_kind: str | None = None) -> ExplainTarget:
    """A run directory or a model directory -> the model to explain and its default folder."""
    path = Path(path)
    if runs.is_run_dir(path):
        run = runs.read_run(path)
        name, notes = choose_model(run, model_kind)
        model_dir = run.model_dirs()[name]
        kind = read_header(model_dir).kind
        return ExplainTarget(path, model_dir, name, kind, run.explain_dir, run, tuple(notes))
    if (path / HEADER).is_file():
        kind = read_header(path).kind
        if model_kind is not None and model_kind not in (kind, path.name):
            raise HistexprError(f"{path}: holds a {kind} model, not {model_kind!r}")
        if kind not in NEURAL_KINDS and not is_atlas_kind(kind):
            raise _no_gradients(path, kind)
        return ExplainTarget(path, path, path.name, kind, runs.model_explain_dir(path), None)
    raise HistexprError(
        f"{path}: neither a run directory (no {runs.RUN_JSON}) nor a model directory (no {HEADER})"
    )


def check_out_dir(out_dir: Path, model_dir: Path) -> None:
    """Refuse to replace a folder that is not this model's explanation (one line)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise HistexprError(f"{out_dir}: exists and is not a folder; choose another -o")
    if runs.has_explanation(out_dir):
        owner = runs.read_explain_info(out_dir).get("model_dir")
        # folders written before explanations recorded their model belong to their run
        if owner is not None and Path(owner) != model_dir.resolve():
            raise HistexprError(
                f"{out_dir}: holds the explanation of another model ({owner}); choose another -o"
            )
        return
    if any(out_dir.iterdir()):
        raise HistexprError(
            f"{out_dir}: exists and is not an explanation folder; choose another -o"
        )


def default_cells(target: ExplainTarget, data: HistoneDataset) -> tuple[list[str], list[str]]:
    """Cell types to explain when none are asked for, and a note on the choice.

    A run: one seen and one unseen cell type (as the seed's Fig. 4 compares). A model
    directory: the first :data:`DEFAULT_CELLS` cell types of the data.
    """
    available = [str(c) for c in data.cells]
    if target.run is not None:
        seen = [c for c in target.run.train_cells if c in available][:1]
        unseen = [c for c in target.run.unseen_cells if c in available][:1]
        if seen or unseen:
            return seen + unseen, []
    cells = available[:DEFAULT_CELLS]
    notes = []
    if len(available) > len(cells):
        notes.append(
            f"explained {len(cells)} of {len(available)} cell types; choose others with --cells"
        )
    return cells, notes


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
    if is_atlas_kind(target.kind):
        if not hasattr(est, "side_inputs"):  # atlas-ridge, atlas-lightgbm: no gradients
            return explain_atlas_prior(target, est, part, out_dir, notes)
        # atlas-convnet: its prior per gene, and the gradients of its histone part with
        # the atlas features held fixed
        prior_table = atlas_prior_table(est, part)
        side = est.side_inputs(part)
        notes.append(prior_note(target.name, prior_table))
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
    **kwargs,
) -> ExplainResult:
    """:func:`explain_run` from paths: the data file defaults to the one a run recorded."""
    from histexpr.data.convert import load_dataset

    check_request(
        kwargs.get("methods", METHODS),
        kwargs.get("n_steps", 50),
        kwargs.get("max_per_cell", 2000),
        kwargs.get("n_genes", DEFAULT_GENES_PER_CELL),
    )
    path = Path(path)
    resolve_target(path, kwargs.get("model_kind"))
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
