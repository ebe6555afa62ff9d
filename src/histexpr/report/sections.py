"""Report sections shared by the run page and the model page.

Each section checks explicitly for its optional inputs (a note when absent) and raises a
one-line :class:`~histexpr.errors.HistexprError` when an input is there but malformed.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from histexpr import plot, runs
from histexpr.data.dataset import MARKS
from histexpr.errors import HistexprError
from histexpr.estimators.bundle import read_header
from histexpr.explain import (
    CellAttributions,
    GeneAttributions,
    load_attributions,
    load_gene_attributions,
)
from histexpr.report.page import Page


def read_history(path: Path) -> pd.DataFrame:
    """A ``history.csv`` with its columns checked (one line when malformed)."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise HistexprError(f"{path}: unreadable training history ({exc})") from None
    missing = {"epoch", "split", "loss"} - set(df.columns)
    if missing:
        raise HistexprError(f"{path}: no column(s) {', '.join(sorted(missing))}")
    return df


def training_section(page: Page, histories: dict[str, pd.DataFrame]) -> None:
    """Loss curves of every model that recorded a history (see :func:`read_history`)."""
    page.section("training", "Training")
    if not histories:
        page.note(f"No {runs.HISTORY}: no loss curves (baselines record none).")
    for name, history in histories.items():
        fig = Figure(figsize=(7, 3.5), layout="constrained")
        plot.plot_loss_curves(history, fig.add_subplot(), title=f"{name}: loss per epoch")
        page.figure(
            fig,
            "loss-curves",
            f"{name}: validation (dashed) should fall with training (solid); "
            "a rising validation loss means overfitting.",
        )


@dataclass
class Explanation:
    """An explanation folder read and checked (see :func:`read_explanation`)."""

    folder: Path
    info: dict
    attributions: list[CellAttributions]
    genes: dict[str, GeneAttributions]
    attention: dict[str, np.ndarray] | None
    atlas_prior: pd.DataFrame | None = None


def read_explanation(folder, model_dir=None) -> Explanation | None:
    """Every file of an explanation folder, checked; None when there is no explanation.

    With ``model_dir``, an explanation of a different model is refused (one line).
    """
    folder = Path(folder)
    if not runs.has_explanation(folder):
        return None
    info = runs.read_explain_info(folder)
    owner = info.get("model_dir")
    if model_dir is not None and owner is not None and Path(owner) != Path(model_dir).resolve():
        raise HistexprError(f"{folder}: explains another model ({owner}), not {model_dir}")
    methods = info.get("methods")
    if methods is None:  # explanations written before explain.json listed its methods
        prefix = runs.attribution_file("")[: -len(".npz")]
        methods = [p.stem[len(prefix) :] for p in sorted(folder.glob(f"{prefix}*.npz"))]
    attributions, genes = [], {}
    for method in methods:
        path = folder / runs.attribution_file(method)
        if not path.is_file():
            raise HistexprError(f"{path}: listed in {runs.EXPLAIN_JSON} but missing")
        attributions.append(load_attributions(path))
        path = folder / runs.gene_attribution_file(method)
        if path.is_file():
            genes[method] = load_gene_attributions(path)
    attention = None
    path = folder / runs.ATTENTION
    if info.get("attention", path.is_file()):
        try:
            with np.load(path, allow_pickle=False) as z:
                attention = {k: z[k] for k in z.files if not k.endswith("_marks")}
        except (OSError, ValueError) as exc:
            raise HistexprError(f"{path}: unreadable attention maps ({exc})") from None
    atlas = runs.read_atlas_prior(folder)
    return Explanation(folder, info, attributions, genes, attention, atlas)


def interpretation_section(
    page: Page, explanation: Explanation | None, labels, missing_note: str
) -> None:
    """Attribution and attention figures of an explanation; ``missing_note`` when there is none."""
    page.section("interpretation", "Interpretation")
    if explanation is None:
        page.note(missing_note)
        return
    info = explanation.info
    page.text(
        f"Model {info.get('model')}; baseline {info.get('baseline')}; "
        f"at most {info.get('max_per_cell')} genes per cell type."
    )
    for a in explanation.attributions:
        names = {c: labels(c) for c in a.cells}
        fig = plot.attribution_figure(
            a.cells, a.signed, a.abs, a.marks, a.method, names, title=f"Mean {a.method} maps"
        )
        page.figure(
            fig,
            "attribution",
            f"Mean {a.method} per cell type: red bins raise the prediction, blue lower it; "
            "look for the marks and positions that matter most.",
        )
        ga = explanation.genes.get(a.method)
        if ga is not None:
            name = runs.gene_attribution_file(a.method)
            page.text(f"Per-gene {a.method} maps of {len(ga.values)} genes: {name}.")
    if explanation.atlas_prior is not None:
        atlas_prior_section(page, explanation.atlas_prior)
    if explanation.attention is not None:
        maps = explanation.attention
        fig, axes = plot.figure_grid(len(maps), 2)
        for ax, (cell, m) in zip(axes, maps.items(), strict=True):
            plot.heatmap(
                m,
                info.get("marks") or MARKS,
                ax,
                title=f"{labels(cell)}: attention",
                cbar_label="attention weight (fraction)",
            )
        fig.suptitle("Mean bin-level attention", fontsize=11)
        page.figure(
            fig,
            "attention",
            "Bright bins are where the model looks; compare them with the attribution maps.",
        )


def atlas_prior_section(page: Page, table: pd.DataFrame) -> None:
    """An atlas model's two sources: prior and final prediction against the observed values."""
    has_prior = table["prior"].notna()
    page.text(
        f"Atlas model: {int(has_prior.sum())} of {len(table)} examples have an atlas prior "
        f"({runs.ATLAS_PRIOR}); the histone part is the prediction minus the prior."
    )
    observed = table["observed"].notna()
    if observed.any():
        parts = {
            "prior": (
                table["observed"][observed & has_prior],
                table["prior"][observed & has_prior],
            ),
            "prediction": (table["observed"][observed], table["prediction"][observed]),
        }
        parts = {k: v for k, v in parts.items() if len(v[0])}
        fig = plot.pred_vs_obs_figure(parts, None, title="Atlas prior and final prediction")
        page.figure(
            fig,
            "atlas-prior",
            "The histone part helps where the right panel hugs the diagonal more than the left.",
        )
    head = table.head(20).round(3)
    page.table(head, details=f"Prior, prediction and observed value of the first {len(head)} rows")


def model_configs(page: Page, model_dirs: dict[str, Path]) -> None:
    """One collapsible block per model with its saved configuration."""
    for name, d in model_dirs.items():
        header = read_header(d)
        page.body.append(
            f"<details><summary>model {html.escape(name)} ({html.escape(header.kind)})</summary>"
        )
        page.pre(json.dumps(header.config, indent=2, sort_keys=True))
        page.body.append("</details>")


def versions_table(page: Page) -> None:
    from histexpr._runtime import dependency_versions, histexpr_version

    versions = {"histexpr (report)": histexpr_version()} | dependency_versions()
    page.table(pd.DataFrame(sorted(versions.items()), columns=["package", "version"]))
