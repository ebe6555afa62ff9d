"""Report sections of scores: the model comparison, prediction intervals, automatic choice.

The comparison opens a run's page: per evaluation group one figure of every model's
score (MSE over the oracle, or R2 when the run has no oracle) and Pearson r with the best
highlighted, then one table ordered by group and score with the best per group in bold.
The interval and automatic-choice sections render the tables other steps record and are
left out (no heading) when there is nothing to show.

Constant predictors are recognised from their predictions
(:func:`constant_predictions`), never from a model's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from histexpr import plot, runs
from histexpr.errors import HistexprError
from histexpr.evaluate import CELL_GROUPS, GROUP_ORDER, GROUPS, TRAINING_GROUP
from histexpr.report.page import Page

#: The simulator's exact Bayes prediction: a reference line, never "best".
ORACLE = "oracle"
#: Score of a group -> (axis label, lower is better).
SCORES = {
    "mse_over_oracle": ("MSE / oracle MSE (ratio; 1 = oracle)", True),
    "r2": ("R² (fraction of variance explained)", False),
}
PEARSON_LABEL = "Pearson r (unitless)"
GROUP_LABELS = {"all": "every held-out example"} | GROUPS | CELL_GROUPS
#: Columns first in the comparison table, after group, model and the score.
_FIRST = ("group", "model", "pearson", "spearman", "r2", "auc", "mse", "mse_over_oracle", "n")


def group_label(group: str, sep: str = ": ") -> str:
    """``"seen/new: cell types trained on x genes held out of training"``."""
    meaning = GROUP_LABELS.get(group)
    return f"{group}{sep}{meaning}" if meaning else group


def ordered_groups(groups) -> list[str]:
    """Groups in table order: "all", :data:`~histexpr.evaluate.GROUP_ORDER`, others, flagged."""
    groups = list(dict.fromkeys(str(g) for g in groups))
    known = [g for g in ("all", *GROUP_ORDER) if g in groups]
    rest = [g for g in groups if g not in known and g != TRAINING_GROUP]
    return known + rest + ([TRAINING_GROUP] if TRAINING_GROUP in groups else [])


def constant_predictions(yhat, cell=None, rtol: float = 1e-6) -> bool:
    """Whether predictions carry no information within a cell type.

    True when the finite predictions are all equal (global-mean, or gene-mean on genes
    it never saw), or, with ``cell``, all equal within every cell type: a scatter of
    such predictions against the observed values is a flat line and shows nothing.

    Parameters
    ----------
    yhat : array-like, shape (n,)
    cell : array-like, shape (n,), optional
    rtol : float
        Spread (max - min) tolerated, relative to the largest magnitude (at least 1).
    """
    yhat = np.asarray(yhat, dtype=np.float64)
    cell = np.zeros(yhat.shape, dtype=int) if cell is None else np.asarray(cell).astype(str)
    ok = np.isfinite(yhat)
    yhat, cell = yhat[ok], cell[ok]
    if not yhat.size:
        return True
    tol = rtol * max(1.0, float(np.abs(yhat).max()))
    frame = pd.DataFrame({"cell": cell, "yhat": yhat}).groupby("cell")["yhat"]
    return bool(((frame.max() - frame.min()) <= tol).all())


def score_of(rows: pd.DataFrame) -> str:
    """The score of one group: MSE over the oracle when known for a model, else R2."""
    if "mse_over_oracle" in rows.columns:
        ratio = pd.to_numeric(rows.loc[rows["model"] != ORACLE, "mse_over_oracle"], "coerce")
        if np.isfinite(ratio.to_numpy(dtype=np.float64)).any():
            return "mse_over_oracle"
    return "r2"


def rank_results(results: pd.DataFrame) -> tuple[pd.DataFrame, list[bool], dict[str, str]]:
    """``results.csv`` ordered by group and score; the best model per group flagged.

    Within a group the models are sorted by :func:`score_of` (ties by Pearson r), models
    without a score after them and the oracle last (a reference, never the best).

    Returns
    -------
    table : pd.DataFrame
        Columns group, model, the scores and any other column of ``results``.
    best : list of bool
        Per row of ``table``: the best model of its group.
    scores : dict of str to str
        Group -> score column.
    """
    parts, best, scores = [], [], {}
    for group in ordered_groups(results["group"]):
        rows = results[results["group"].astype(str) == group].copy()
        score = scores[group] = score_of(rows)
        lower = SCORES[score][1]
        key = _column(rows, score) * (1 if lower else -1)
        pearson = -_column(rows, "pearson")
        rows = rows.assign(
            _oracle=rows["model"] == ORACLE, _key=key, _r=pearson, _none=key.isna()
        ).sort_values(["_oracle", "_none", "_key", "_r"], kind="stable")
        flag = [False] * len(rows)
        if len(rows) and not rows["_oracle"].iloc[0] and not rows["_none"].iloc[0]:
            flag[0] = True
        parts.append(rows.drop(columns=["_oracle", "_key", "_r", "_none"]))
        best += flag
    table = pd.concat(parts, ignore_index=True) if parts else results.iloc[:0]
    lead = [next(iter(scores.values()))] if scores else []  # the score after the model
    first = [c for c in ("group", "model", *lead, *_FIRST) if c in table.columns]
    first = list(dict.fromkeys(first))
    return table[first + [c for c in table.columns if c not in first]], best, scores


def _column(rows: pd.DataFrame, name: str) -> pd.Series:
    """A numeric column, NaN where missing or not a number (an older results.csv)."""
    if name not in rows.columns:
        return pd.Series(np.nan, index=rows.index)
    return pd.to_numeric(rows[name], "coerce").astype(np.float64)


def comparison_section(page: Page, results: pd.DataFrame) -> None:
    """Per group one figure comparing every model, then the ranked table (the page's lead).

    Parameters
    ----------
    results : pd.DataFrame
        ``results.csv``: one row per model and group with the metrics of
        :mod:`histexpr.evaluate` (``mse_over_oracle`` NaN without an oracle).
    """
    page.section("comparison", "Model comparison")
    table, best, scores = rank_results(results)
    models = [m for m in pd.unique(table["model"]) if m != ORACLE]
    oracle = (
        " and the oracle (the best any model could do)"
        if len(models) < table["model"].nunique()
        else ""
    )
    page.text(
        f"{len(models)} models{oracle} scored on held-out examples, one figure per evaluation "
        "group; the best model of each group is highlighted and in bold in the table."
    )
    for group in scores:
        if group == TRAINING_GROUP:
            continue
        _group_figure(page, table[table["group"] == group], group, scores[group])
    if TRAINING_GROUP in scores:
        page.note(
            f"{TRAINING_GROUP} scores examples the models were fitted on (optimistic): "
            "in the table only, never a fair comparison."
        )
    page.table(table, bold=best)
    page.text("Groups: " + "; ".join(group_label(g) for g in scores) + ".")


def _group_figure(page: Page, rows: pd.DataFrame, group: str, score: str) -> None:
    label, lower = SCORES[score]
    oracle = rows[rows["model"] == ORACLE]
    rows = rows[rows["model"] != ORACLE]
    if rows.empty:
        return
    values = dict(zip(rows["model"], _column(rows, score), strict=True))
    pearson = dict(zip(rows["model"], _column(rows, "pearson"), strict=True))
    if not np.isfinite([*values.values(), *pearson.values()]).any():
        return  # nothing to compare (a results.csv without these metrics)
    ref_score = 1.0 if score == "mse_over_oracle" and len(oracle) else None
    ref_r = float(_column(oracle, "pearson").iloc[0]) if len(oracle) else None
    best_score = _best(values, lower)
    panels = [
        (values, label, best_score, ref_score),
        (pearson, PEARSON_LABEL, _best(pearson, False), ref_r),
    ]
    title = "Models on " + group_label(group, "\n")
    fig = plot.model_comparison_figure(panels, title=title)
    aim = "lowest MSE over the oracle (1 = the oracle's)" if lower else "highest R²"
    ref = "; dashed line: the oracle" if len(oracle) else ""
    page.figure(
        fig, "model-comparison", f"{group}: best highlighted, {aim} and highest Pearson r{ref}."
    )


def _best(values: Mapping[str, float], lower: bool) -> str | None:
    finite = {k: v for k, v in values.items() if np.isfinite(v)}
    if not finite:
        return None
    return (min if lower else max)(finite, key=finite.get)


def predictions_section(page: Page, run: runs.Run, max_points: int) -> None:
    """Predicted against observed per model and group; constant predictions left out.

    Models come in the order of the comparison's first group (best first, the oracle last).
    A panel whose predictions are constant within each cell type
    (:func:`constant_predictions`) is dropped, and a model with no panel left gets no
    figure; a note names what was left out.
    """
    page.section("predictions", "Predicted vs observed")
    preds, models = run.predictions(), run.prediction_columns()
    if not models:
        page.note(f"{runs.PREDICTIONS} has no model columns.")
        return
    ranked = list(pd.unique(rank_results(run.results())[0]["model"]))  # best of the first group
    order = {m: i for i, m in enumerate(ranked)}
    models = sorted(models, key=lambda m: (m == ORACLE, order.get(m, len(order))))
    unit = run.header.target or "log2(RPKM+1)"
    if "group" in preds.columns:  # runs that record the evaluation group of each example
        group = preds["group"].astype(str).to_numpy()
        groups = {g: group == g for g in GROUP_ORDER}
    else:  # older runs: seen / unseen cell types only
        unseen = preds["cell"].isin(run.unseen_cells).to_numpy()
        groups = {"seen": ~unseen, "unseen": unseen} if unseen.any() else {"all": ~unseen}
    cell, flat = preds["cell"].to_numpy(), {}
    for model in models:
        parts = {
            g: (preds["y"][m], preds[model][m])
            for g, m in groups.items()
            if m.any() and not constant_predictions(preds[model][m], cell[m])
        }
        left = [g for g, m in groups.items() if m.any() and g not in parts]
        if left:
            flat[model] = left
        if not parts:
            continue
        fig = plot.pred_vs_obs_figure(parts, run.model_metrics(model), model, max_points, unit=unit)
        page.figure(
            fig,
            "pred-vs-obs",
            f"{model}: predicted vs observed; points near the dashed diagonal are accurate, "
            "a flat cloud means the model barely tells genes apart.",
        )
    if flat:
        page.note(
            "Left out, predictions constant within each cell type: "
            + "; ".join(f"{m} ({', '.join(g)})" for m, g in flat.items())
            + "."
        )


def _frame(rows, required: Sequence[str], what: str) -> pd.DataFrame:
    if isinstance(rows, Mapping) and "candidates" in rows:
        rows = rows["candidates"]
    try:
        df = pd.DataFrame(rows)
    except (TypeError, ValueError) as exc:
        raise HistexprError(f"{what}: not a table of rows ({exc})") from None
    missing = [c for c in required if c not in df.columns]
    if missing and len(df):
        raise HistexprError(f"{what}: no column(s) {', '.join(missing)}")
    return df


INTERVAL_COLUMNS = ("group", "model", "level", "coverage", "width")
#: Optional interval table of a run directory (see :func:`read_intervals`).
INTERVALS = "intervals.csv"


def read_intervals(run: runs.Run) -> pd.DataFrame | None:
    """Interval rows of a run (see :func:`~histexpr.report.scores.intervals_section`).

    From ``RUN_DIR/intervals.csv`` when there is one, else from the rows of
    ``results.csv`` that have ``level``, ``coverage`` and ``width``; None when neither.
    """
    path = run.dir / INTERVALS
    if path.is_file():
        try:
            return pd.read_csv(path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise HistexprError(f"{path}: unreadable intervals ({exc})") from None
    results = run.results()
    if not {"level", "coverage", "width"} <= set(results.columns):
        return None
    return results[pd.to_numeric(results["coverage"], "coerce").notna()]


def intervals_section(page: Page, intervals, source: str = "intervals") -> None:
    """Coverage and width of prediction intervals per group; nothing when there are none.

    Parameters
    ----------
    intervals : pd.DataFrame, sequence of dict, or None
        One row per (group, model, level) with columns ``group`` (an evaluation group,
        e.g. "all", "seen/new"), ``model``, ``level`` (nominal coverage as a fraction,
        e.g. 0.9), ``coverage`` (fraction of observed values inside the interval) and
        ``width`` (mean interval width in units of the target, log2(RPKM+1)); an
        optional ``n``. None or no rows: the section is left out.
    source : str
        Where the rows came from (named in errors).
    """
    if intervals is None:
        return
    df = _frame(intervals, INTERVAL_COLUMNS, source)
    if df.empty:
        return
    page.section("intervals", "Prediction intervals")
    page.text(
        "Coverage is the fraction of observed values inside a model's interval; it should "
        "reach the nominal level. Among models that reach it, narrower intervals are better."
    )
    df = df.assign(group=df["group"].astype(str))
    order = {g: i for i, g in enumerate(ordered_groups(df["group"]))}
    df = df.assign(_g=df["group"].map(order)).sort_values(["_g", "level", "width"], kind="stable")
    df = df.drop(columns="_g")
    several = df["level"].nunique() > 1
    for (group, level), rows in df.groupby(["group", "level"], sort=False):
        names = [str(m) for m in rows["model"]]
        cover = dict(zip(names, rows["coverage"].astype(float), strict=True))
        width = dict(zip(names, rows["width"].astype(float), strict=True))
        reached = [n for n in names if cover[n] >= float(level) - 1e-9]
        # the best reaches the nominal level with the narrowest interval; if none does,
        # the best coverage and the narrowest width are highlighted apart
        best_width = _best({n: width[n] for n in reached or names}, True)
        best_cover = best_width if reached else _best(cover, False)
        panels = [
            (cover, "coverage (fraction of observed inside)", best_cover, float(level)),
            (width, "mean width (log2(RPKM+1))", best_width, None),
        ]
        at = f" at {float(level):.0%}" if several else ""
        title = f"Intervals{at} on " + group_label(group, "\n")
        fig = plot.model_comparison_figure(panels, title, reference_label="nominal level")
        page.figure(
            fig,
            "intervals",
            f"{group}: coverage should reach the nominal {float(level):.0%} (dashed line); "
            "the highlighted model reaches it with the narrowest interval.",
        )
    page.table(df[[c for c in (*INTERVAL_COLUMNS, "n") if c in df.columns]])


AUTO_COLUMNS = ("candidate", "score", "spread", "fit_seconds", "chosen")


def auto_section(page: Page, choices: Mapping[str, object]) -> None:
    """The automatic model choice of every model that made one; nothing when none did.

    Parameters
    ----------
    choices : mapping of str to rows
        Model name -> its comparison of candidates, as recorded in the model's metadata
        (``model.json`` key ``auto``): a list of dicts (or ``{"candidates": [...]}``)
        with ``candidate`` (a model kind or setting), ``score`` (its validation score),
        ``spread`` (the score's spread over folds), ``fit_seconds`` and ``chosen`` (True
        for the one kept). Models without a choice are left out of the mapping.
    """
    tables = {name: _frame(rows, AUTO_COLUMNS, f"{name}: auto") for name, rows in choices.items()}
    tables = {name: df for name, df in tables.items() if not df.empty}
    if not tables:
        return
    page.section("auto", "Automatic model choice")
    for name, df in tables.items():
        chosen = df["chosen"].astype(bool).tolist()
        picked = ", ".join(str(c) for c, k in zip(df["candidate"], chosen, strict=True) if k)
        page.text(f"{name}: {len(df)} candidates compared; chosen: {picked or 'none'}.")
        first = [c for c in AUTO_COLUMNS if c in df.columns]
        page.table(df[first + [c for c in df.columns if c not in first]], bold=chosen)
