"""Rich tables of evaluation results (group table, per-cell table)."""

from __future__ import annotations

import numpy as np
from rich import box
from rich.table import Table

_COLUMNS = (
    ("mse", "MSE", "{:.3f}"),
    ("mse_over_oracle", "/oracle", "{:.2f}"),
    ("pearson", "r", "{:.3f}"),
    ("spearman", "rho", "{:.3f}"),
    ("r2", "R2", "{:.3f}"),
    ("auc", "AUC", "{:.3f}"),
    ("train_seconds", "time s", "{:.0f}"),
)


#: Section titles of the group table (see histexpr.evaluate.GROUPS): seen / unseen cell
#: types x genes known (trained on) / new (held out); TRAIN: the flagged training rows.
_GROUP_LABELS = {
    "seen/new": "seen x new genes",
    "unseen/known": "unseen x known genes",
    "unseen/new": "unseen x new genes",
    "seen": "seen cell types",
    "unseen": "unseen cell types",
    "all": "all",
    "seen/train": "seen x TRAIN genes",
}


def _table(title: str) -> Table:
    """An empty table; at least as wide as its title, so that a console wider than the
    title (a log: histexpr.cli._app.LOG_WIDTH) keeps it on one line; a terminal
    narrower than the title wraps it to fit."""
    return Table(
        title=title,
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        show_edge=False,
        min_width=len(title),
    )


def results_table(table, title: str = "results") -> Table:
    """A rich table of an evaluation table (model x group), one section per group.

    Honest groups come first, in :data:`histexpr.evaluate.GROUP_ORDER`; "all" is
    shown only when the data has no other honest group; the flagged ``seen/train``
    group comes last under its own title.
    """
    from histexpr.evaluate import GROUP_ORDER, TRAINING_GROUP

    present = set(table["group"])
    groups = [g for g in GROUP_ORDER if g in present] or [g for g in ("all",) if g in present]
    if TRAINING_GROUP in present:
        groups.append(TRAINING_GROUP)
    cols = [c for c in _COLUMNS if c[0] in table.columns and table[c[0]].notna().any()]
    t = _table(title)
    # wrappable: a narrow terminal wraps a section title rather than cutting numbers
    t.add_column("model")
    t.add_column("n", justify="right")
    for _, header, _ in cols:
        t.add_column(header, justify="right")
    for i, group in enumerate(groups):
        if i:
            t.add_section()
        if len(groups) > 1 or group != "all":
            t.add_row(f"[bold]{_GROUP_LABELS.get(group, group)}[/bold]")
        for _, row in table[table["group"] == group].iterrows():
            values = []
            for key, _, fmt in cols:
                v = row[key]
                values.append("-" if v is None or np.isnan(v) else fmt.format(v))
            t.add_row(str(row["model"]), str(int(row["n"])), *values)
    return t


def per_cell_table(per_cell, title: str = "per cell type") -> Table:
    """A rich table of an evaluation's per-cell table (one row per model, cell, group)."""
    cols = [c for c in _COLUMNS if c[0] in per_cell.columns and per_cell[c[0]].notna().any()]
    t = _table(title)
    for name in ("model", "cell", "group", "n"):
        t.add_column(name, no_wrap=True, justify="right" if name == "n" else "left")
    for _, header, _ in cols:
        t.add_column(header, justify="right")
    for _, row in per_cell.iterrows():
        values = [
            "-" if row[key] is None or np.isnan(row[key]) else fmt.format(row[key])
            for key, _, fmt in cols
        ]
        group = str(row.get("group", "seen" if row.get("seen", True) else "unseen"))
        t.add_row(str(row["model"]), str(row["cell"]), group, str(int(row["n"])), *values)
    return t
