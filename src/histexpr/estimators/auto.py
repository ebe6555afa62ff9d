"""Automatic model choice (``--model auto``, ``--model diff-auto``): grouped cross-validation
over the kinds that fit the data, within a time budget.

The selector scores every candidate kind by k-fold cross-validation grouped by what the
model must predict (``goal``):

``new-genes`` (default)
    Folds of genes: a gene's examples in every cell type sit in one fold, so a model is
    never scored on a gene it saw (the held-out genes of every histexpr table).
``unseen-cells``
    Folds of cell types, scored on all their genes: new cell types on genes known from the
    training cell types (the course's 6 unseen cell types; where the atlas kinds and
    per-gene knowledge win).
``unseen-cells-new-genes``
    Both: fold ``i`` scores the genes of gene fold ``i`` in the cell types of cell fold
    ``i``, trained on neither.
The score is the mean squared error over the held-out examples of each fold (of the log
fold changes for the differential kinds); ``spread`` is its standard deviation over the
folds.

Choice rule: the lowest mean score wins, except that a simpler kind (earlier in
:data:`ORDER`) within one standard error of the best (``spread / sqrt(folds)`` of the
best) is preferred: a difference smaller than the fold-to-fold noise is no reason for a
slower, less interpretable model.

Candidates (:func:`candidates`): ridge, LightGBM and random forest always; DeepChrome
and the ConvNet from :data:`MIN_NETWORK_EXAMPLES` training examples; the fold ensemble
with at least 3 cell types as well; the atlas kinds when an atlas is given. Pairs:
diff-ridge, diff-lightgbm and, from the same size, diff-convnet. Folds
(:func:`fold_count`): 5, or 3 from :data:`LARGE_EXAMPLES` examples (each fold costs a
fit), never more than a tenth of the genes (at least 2).

Time budget: candidates run simplest first; after a candidate's first fold the time of
all its folds plus the refit is projected, and a candidate that would pass the budget is
stopped there (recorded with its reason, never chosen). Networks train with an equal
share of what is left (``optim.max_minutes``) unless the user set one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from histexpr.config import check_choice, check_range
from histexpr.data.dataset import HistoneDataset
from histexpr.data.splits import cell_folds, gene_folds
from histexpr.errors import HistexprError
from histexpr.estimators.kinds import kind_of
from histexpr.evaluate import fit_metrics

AUTO_KINDS = ("auto", "diff-auto")
GOALS = ("new-genes", "unseen-cells", "unseen-cells-new-genes")
#: How the summary line names the folds of each goal.
FOLD_UNITS = {
    "new-genes": "gene folds",
    "unseen-cells": "cell-type folds",
    "unseen-cells-new-genes": "gene x cell-type folds",
}
#: Simplest first; the tie rule keeps the earliest within one standard error of the best.
ORDER = (
    "ridge",
    "atlas-ridge",
    "lightgbm",
    "atlas-lightgbm",
    "random-forest",
    "deepchrome",
    "convnet",
    "atlas-convnet",
    "ensemble",
)
DIFF_ORDER = ("diff-ridge", "diff-lightgbm", "diff-convnet")
#: Networks are candidates from this many training examples on (below, they do not beat
#: ridge and trees and cost minutes per fold).
MIN_NETWORK_EXAMPLES = 2000
#: From this many training examples on, 3 folds instead of 5.
LARGE_EXAMPLES = 200_000
#: Settings of the selector itself (``--set folds=3`` etc.); ``max_minutes`` is the budget.
AUTO_SETTINGS = ("folds", "goal", "candidates", "max_minutes", "optim.max_minutes")


@dataclass(frozen=True)
class AutoConfig:
    """Settings of the automatic choice (``--set NAME=VALUE`` with ``--model auto``).

    Attributes
    ----------
    folds : int
        Cross-validation folds (0: from the data size, see fold_count).
    goal : str
        What the folds imitate: new-genes, unseen-cells or unseen-cells-new-genes.
    candidates : tuple of str
        Kinds to compare (empty: those that fit the data); naming them lifts the size rule.
    max_minutes : float
        Time budget of the whole comparison, also --max-minutes (0: none).
    seed : int
        Seed of the folds (the split seed, --seed).
    """

    folds: int = 0
    goal: str = "new-genes"
    candidates: tuple[str, ...] = ()
    max_minutes: float = 0.0
    seed: int = 0

    def __post_init__(self):
        check_range("folds", self.folds, 0)
        check_choice("goal", self.goal, GOALS)
        check_range("max_minutes", self.max_minutes, 0)


@dataclass
class CandidateRow:
    """One candidate of the comparison (a row of ``model.json``'s ``auto``)."""

    candidate: str
    score: float | None = None  # mean MSE over the folds run
    spread: float | None = None  # standard deviation of the fold MSEs (None under 2 folds)
    fit_seconds: float | None = None  # mean fit time of one fold
    folds: int = 0  # folds scored
    chosen: bool = False
    skipped_reason: str = ""


@dataclass
class AutoResult:
    """Outcome of :func:`select`: the comparison and the chosen kind with its settings."""

    rows: list[CandidateRow]
    chosen: str
    overrides: dict
    n_folds: int
    goal: str
    why: str

    def table(self) -> list[dict]:
        """The rows as plain JSON values (for :func:`histexpr.estimators.bundle.record_auto`)."""
        return [asdict(r) for r in self.rows]

    def summary(self) -> str:
        """One line: what was chosen and why."""
        best = next(r for r in self.rows if r.chosen)
        unit = FOLD_UNITS[self.goal]
        others = ", ".join(
            f"{r.candidate} {r.score:.3g}"
            for r in self.rows
            if r.folds == self.n_folds and not r.chosen
        )
        skipped = sum(bool(r.skipped_reason) for r in self.rows)
        line = (
            f"auto: chose {self.chosen} (MSE {best.score:.3g} ± {best.spread:.2g} sd over "
            f"{self.n_folds} {unit}{'; ' + others if others else ''}){self.why}"
        )
        return line + (f"; {skipped} kind(s) not compared (histexpr info MODEL)" if skipped else "")


def fold_count(n_genes: int, n_examples: int) -> int:
    """Folds from the data size: 5 (3 on large data), at most a tenth of the genes, >= 2."""
    k = 3 if n_examples >= LARGE_EXAMPLES else 5
    return max(2, min(k, n_genes // 10))


def candidates(
    data: HistoneDataset, diff: bool = False, atlas: bool = False
) -> list[tuple[str, str]]:
    """Every kind auto knows, with ``""`` when it fits the data, else why not.

    Returns
    -------
    list of (kind, reason)
        In :data:`ORDER` (:data:`DIFF_ORDER` for pairs).
    """
    n, n_cells = len(data), len(data.cells)
    small = f"{n} examples, networks from {MIN_NETWORK_EXAMPLES}"
    if diff:
        return [
            (k, small if k == "diff-convnet" and n < MIN_NETWORK_EXAMPLES else "")
            for k in DIFF_ORDER
        ]
    out = []
    for kind in ORDER:
        reason = ""
        if kind_of(kind).needs_atlas and not atlas:
            reason = "no atlas given (--atlas)"
        elif (
            kind in ("deepchrome", "convnet", "ensemble", "atlas-convnet")
            and n < MIN_NETWORK_EXAMPLES
        ):
            reason = small
        elif kind == "ensemble" and n_cells < 3:
            reason = f"{n_cells} cell type(s), the ensemble needs 3"
        out.append((kind, reason))
    return out


def cv_folds(
    data: HistoneDataset, k: int, goal: str = "new-genes", seed: int = 0
) -> list[tuple[HistoneDataset, HistoneDataset]]:
    """``k`` (train, test) pairs grouped by gene, by cell type or by both (see ``goal``)."""
    by_cell = goal in ("unseen-cells", "unseen-cells-new-genes")
    if by_cell and len(data.cells) < k:
        raise HistexprError(
            f"goal {goal} with {k} folds needs {k} cell types, the data has "
            f"{len(data.cells)} (--set folds=N)"
        )
    cfolds = cell_folds(data.cells, k, seed) if by_cell else None
    gfolds = gene_folds(data.gene, k, seed) if goal != "unseen-cells" else None
    out = []
    for i in range(k):
        new = np.ones(len(data), bool)
        seen = np.ones(len(data), bool)
        if cfolds is not None:
            new_cell = np.isin(data.cell, cfolds[i])
            new &= new_cell
            seen &= ~new_cell
        if gfolds is not None:
            new_gene = np.isin(data.gene, gfolds[i])
            new &= new_gene
            seen &= ~new_gene
        out.append((data.subset(seen), data.subset(new)))
    return out


def mse_score(est, test: HistoneDataset) -> float:
    """MSE of ``est``'s predictions of ``test`` (of the log fold changes of its training
    pairs, for a differential kind)."""
    if kind_of(est.kind).pairs:
        preds = [est.predict_pair(test, a, b) for a, b in est.pairs_]
        y = np.concatenate([p.observed for p in preds])
        pred = np.concatenate([p.predicted for p in preds])
    else:
        y, pred = test.y, est.predict(test)
    return fit_metrics(y, pred, "regression", "cv")["cv_mse"]


def _choose(rows: list[CandidateRow], order: tuple[str, ...]) -> tuple[CandidateRow, str]:
    done = [r for r in rows if r.folds > 0 and not r.skipped_reason]
    if not done:
        raise HistexprError("auto: no candidate finished its folds (raise --max-minutes)")
    best = min(done, key=lambda r: r.score)
    se = best.spread / math.sqrt(best.folds)
    near = [r for r in done if r.score <= best.score + se]
    pick = min(near, key=lambda r: order.index(r.candidate))
    why = ", the lowest mean MSE"
    if pick is not best:
        why = (
            f", the simplest within one standard error ({se:.2g}) of the best, "
            f"{best.candidate} {best.score:.3g}"
        )
    pick.chosen = True
    return pick, why


def select(
    data: HistoneDataset,
    config: AutoConfig = AutoConfig(),
    overrides: Mapping[str, dict] | None = None,
    diff: bool = False,
    atlas: bool = False,
    log: Callable[[str], None] = print,
) -> AutoResult:
    """Compare the candidate kinds on ``data`` by grouped CV; return the comparison.

    Parameters
    ----------
    data : HistoneDataset
        Training data (with targets); ``X`` of shape (n, n_marks, n_bins).
    config : AutoConfig
    overrides : mapping kind -> dict, optional
        ``--set`` values of each candidate (e.g. tiny networks in tests).
    diff : bool
        Compare the differential kinds (pairs of the data's cell types).
    atlas : bool
        An atlas is given: the atlas kinds are candidates.

    Returns
    -------
    AutoResult
        The chosen kind is not refitted here: the caller fits it on all the data with
        ``result.overrides`` (the same path as training that kind directly).
    """
    from histexpr.estimators import KINDS, make_estimator

    overrides = dict(overrides or {})
    if diff and config.goal != "new-genes":
        raise HistexprError("diff-auto scores pairs of training cell types: goal new-genes only")
    order = DIFF_ORDER if diff else ORDER
    listed = candidates(data, diff=diff, atlas=atlas)
    if config.candidates:
        unknown = [k for k in config.candidates if k not in order]
        if unknown:
            raise HistexprError(
                f"auto: unknown candidate(s) {', '.join(unknown)}; from {', '.join(order)}"
            )
        # named by the user: the size rule does not apply (the atlas and cell-type rules do)
        listed = [
            (k, "" if r.startswith(f"{len(data)} examples") else r)
            for k, r in listed
            if k in config.candidates
        ]
    n_genes = len(np.unique(data.gene))
    k = config.folds or fold_count(n_genes, len(data))
    if not config.folds and config.goal != "new-genes":
        k = max(2, min(k, len(data.cells)))
    folds = cv_folds(data, k, config.goal, config.seed)
    budget = config.max_minutes * 60 or math.inf
    start = time.perf_counter()
    rows = [CandidateRow(kind, skipped_reason=reason) for kind, reason in listed]
    runnable = [r for r in rows if not r.skipped_reason and r.candidate in KINDS]
    for idx, row in enumerate(runnable):
        over = dict(overrides.get(row.candidate, {}))
        left = budget - (time.perf_counter() - start)
        if left <= 0:
            row.skipped_reason = "time budget spent"
            continue
        nets_left = sum(kind_of(r.candidate).network for r in runnable[idx:])
        own = {"optim.max_minutes", "max_minutes"} & set(over)  # KIND:max_minutes=...
        if kind_of(row.candidate).network and budget < math.inf and not own:
            over["optim.max_minutes"] = left / 60 / max(nets_left, 1) / (k + 1)
        scores, seconds = [], []
        for i, (train, test) in enumerate(folds):
            t0 = time.perf_counter()
            est = make_estimator(row.candidate, over or None).fit(train)
            seconds.append(time.perf_counter() - t0)
            scores.append(mse_score(est, test))
            projected = seconds[0] * (k + 1 - len(seconds))
            if i == 0 and time.perf_counter() - start + projected > budget:
                row.skipped_reason = (
                    f"time budget: one fold took {seconds[0]:.1f}s, all {k} and the refit "
                    f"would pass {config.max_minutes:g} min"
                )
                break
        row.score = float(np.mean(scores))
        row.spread = float(np.std(scores, ddof=1)) if len(scores) > 1 else None
        row.fit_seconds = float(np.mean(seconds))
        row.folds = len(scores)
        overrides[row.candidate] = over
        log(
            f"auto: {row.candidate} MSE {row.score:.4g} ± {row.spread or 0:.2g} "
            f"({row.folds} folds, {row.fit_seconds:.1f}s per fit){' ' + row.skipped_reason if row.skipped_reason else ''}"
        )
    pick, why = _choose(rows, order)
    return AutoResult(rows, pick.candidate, overrides[pick.candidate], k, config.goal, why)


def auto_settings() -> list:
    """The selector's own ``--set`` settings with default and meaning (``--show-settings``)."""
    from histexpr.config import describe

    return [s for s in describe(AutoConfig()) if s.name != "seed"]


def route_overrides(
    overrides: Mapping[str, object], kinds, seed: int = 0
) -> tuple[AutoConfig, dict[str, dict]]:
    """Split ``--set`` values between the selector and the candidates.

    ``KIND:name=value`` goes to that candidate only; :data:`AUTO_SETTINGS` configure
    the selector (``max_minutes``, also from ``--max-minutes``, is the budget of the whole
    choice); any other name goes to every candidate that has it (one line when none).
    ``seed`` is the fold seed (the data's split seed).
    """
    from histexpr.config import override
    from histexpr.estimators import defines

    mine: dict = {"seed": seed}
    per: dict[str, dict] = {k: {} for k in kinds}
    for name, value in overrides.items():
        if ":" in name:
            kind, key = name.split(":", 1)
            if kind not in per:
                raise HistexprError(f"auto: {name!r} names no candidate ({', '.join(kinds)})")
            per[kind][key] = value
        elif name in AUTO_SETTINGS:
            mine[name.rsplit(".", 1)[-1]] = value
        else:
            takers = [k for k in kinds if defines(k, name)]
            if not takers:
                raise HistexprError(f"auto: no candidate has the setting {name!r}")
            for k in takers:
                per[k][name] = value
    return override(AutoConfig(), mine), per


def choose(
    data: HistoneDataset,
    overrides: Mapping[str, object] | None = None,
    seed: int = 0,
    diff: bool = False,
    log: Callable[[str], None] = print,
) -> AutoResult:
    """:func:`select` with ``--set`` values routed by :func:`route_overrides`; an
    ``atlas`` value (``--atlas``) makes the atlas kinds candidates."""
    overrides = dict(overrides or {})
    config, per = route_overrides(overrides, DIFF_ORDER if diff else ORDER, seed)
    atlas = "atlas" in overrides or any("atlas" in v for v in per.values())
    return select(data, config, per, diff=diff, atlas=atlas, log=log)
