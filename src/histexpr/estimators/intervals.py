"""Prediction intervals: Mondrian split-conformal calibration of any model kind.

A model's absolute residuals ``|y - prediction|`` on examples it was not fitted on
are kept, sorted, per *category* of difficulty, the evaluation groups of
:data:`histexpr.evaluate.GROUPS`:

``seen/new``
    training cell types x genes held out of training: the final model's residuals
    on the validation genes of ``histexpr train`` (``--valid-fraction``), or, with
    no validation genes, those of a copy of the model fitted on the other genes.
``unseen/known``, ``unseen/new``
    cell types left out of training: with 3 or more training cell types, the
    cell types are cut into folds (:func:`histexpr.data.splits.cell_folds`, as the
    ensemble does) and a copy of the model is fitted per fold without that fold's
    cell types, then scored on them (training genes: known; validation genes: new).
    With fewer than 3 training cell types these categories stay empty.
``seen/new@CELL``
    the ``seen/new`` residuals of one training cell type (of one pair for the
    differential kinds), used where it has :data:`MIN_PER_CELL` of them.

The interval of level ``L`` is ``prediction -/+ q``, ``q`` the
``ceil((n + 1) L)``-th smallest of the category's ``n`` residuals (split conformal:
coverage >= L when the new example is exchangeable with the category's
calibration examples). A category with fewer than :data:`MIN_RESIDUALS` residuals
(or too few for ``L``) falls back to all residuals pooled; this includes
``seen/train`` (training genes of training cell types, never held out) and the
unseen categories of a model with fewer than 3 training cell types, whose
intervals may then be too narrow. Written by hand rather than with MAPIE or
crepes: neither fits estimators that are refitted per cell-type fold and predict
cell-type pairs, and split conformal is a sorted array and one index.

The final model is the one ``histexpr train`` fits without ``--intervals``; the
calibration copies are discarded. Caveats and measured coverage: docs/intervals.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import combinations

import numpy as np

from histexpr.errors import HistexprError
from histexpr.evaluate import TRAINING_GROUP

#: Residuals a category needs before it stands on its own (else: pooled).
MIN_RESIDUALS = 30
#: Residuals a training cell type (or pair) needs for its own ``seen/new@CELL`` category.
MIN_PER_CELL = 100
#: Cell-type folds of the unseen-cell calibration (fewer when there are fewer cells).
CELL_FOLDS = 3
#: Share of genes held out for calibration when training holds out none.
CALIBRATION_FRACTION = 0.2
#: Pairs scored per fold for the differential kinds.
MAX_FOLD_PAIRS = 12
POOLED = "pooled"


def check_level(level: float) -> float:
    """``level`` as a float in (0, 1), else a one-line error."""
    level = float(level)
    if not 0 < level < 1:
        raise HistexprError(f"--interval must be a coverage level in (0, 1), e.g. 0.9; got {level}")
    return level


def no_calibration(model_dir) -> HistexprError:
    """The one-line error of an interval asked of a model without calibration."""
    return HistexprError(
        f"{model_dir}: the model has no interval calibration; retrain it with "
        "`histexpr train ... --intervals`"
    )


@dataclass
class Calibration:
    """Sorted absolute residuals per category (see the module docstring).

    Attributes
    ----------
    residuals : dict of str to np.ndarray, shape (n_category,), float64, sorted
    notes : list of str
        How the calibration was made (shown by ``evaluate`` and the report).
    """

    residuals: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)

    @cached_property
    def pooled(self) -> np.ndarray:
        """Every residual, sorted (per-cell categories are already in their group)."""
        parts = [r for k, r in self.residuals.items() if "@" not in k]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.residuals.items()}

    def quantile(self, key: str, level: float) -> float | None:
        """The conformal half-width of category ``key`` at ``level`` (None: too few)."""
        r = self.pooled if key == POOLED else self.residuals.get(key, np.zeros(0))
        k = math.ceil((len(r) + 1) * level)
        least = 1 if key == POOLED else MIN_PER_CELL if "@" in key else MIN_RESIDUALS
        if len(r) < least or k > len(r):
            return None
        return float(r[k - 1])

    def half_widths(
        self, level: float, group: np.ndarray, label: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Half-width and calibrating category of every example.

        Parameters
        ----------
        level : float in (0, 1)
        group : np.ndarray, shape (n,), str
            Evaluation group (:func:`histexpr.evaluate.assign_groups`) per example.
        label : np.ndarray, shape (n,), str, optional
            Cell type (or ``"A:B"`` pair) per example, for the per-cell categories.

        Returns
        -------
        half : np.ndarray, shape (n,), float64
        used : np.ndarray, shape (n,), str
            The category whose residuals gave each half-width.
        """
        level = check_level(level)
        group = np.asarray(group).astype(str)
        keys = group.astype(object)
        if label is not None:
            label = np.asarray(label).astype(str)
            own = np.char.add(np.char.add(group, "@"), label).astype(object)
            keys = np.where(group == "seen/new", own, keys)
        half = np.empty(len(group))
        used = np.empty(len(group), dtype=object)
        pooled = self.quantile(POOLED, level)
        if pooled is None:
            raise HistexprError(
                f"interval level {level} needs at least {math.ceil(1 / (1 - level)) - 1} "
                f"calibration residuals; the model has {len(self.pooled)}"
            )
        for key in np.unique(keys):
            rows = keys == key
            chain = [key, key.split("@")[0], POOLED]
            for k in chain:
                q = self.quantile(k, level)
                if q is not None:
                    half[rows], used[rows] = q, k
                    break
        return half, used.astype(str)

    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON header, npz arrays) of the calibration, for the model directory."""
        keys = sorted(self.residuals)
        meta = {
            "method": "mondrian split conformal, absolute residuals",
            "categories": {f"r{i}": k for i, k in enumerate(keys)},
            "counts": self.counts(),
            "notes": list(self.notes),
        }
        return meta, {f"r{i}": self.residuals[k] for i, k in enumerate(keys)}

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict) -> Calibration:
        cats = meta.get("categories") or {}
        res = {k: np.sort(np.asarray(arrays[a], dtype=np.float64)) for a, k in cats.items()}
        return cls(res, [str(n) for n in meta.get("notes", [])])

    def summary(self, levels: Sequence[float] = (0.8, 0.9)) -> list[dict]:
        """One row per category: n residuals and the half-width at each level."""
        rows = []
        for key in [*sorted(self.residuals), POOLED]:
            n = len(self.pooled) if key == POOLED else len(self.residuals[key])
            row = {"category": key, "n": n}
            for lv in levels:
                q = self.quantile(key, lv)
                row[f"half_width_{lv:g}"] = float("nan") if q is None else q
            rows.append(row)
        return rows


def mondrian_groups(seen: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The category group of each example from its cell (pair) seen and gene known flags.

    Parameters
    ----------
    seen, known : np.ndarray, shape (n,), bool

    Returns
    -------
    np.ndarray, shape (n,), str
        Names of :data:`histexpr.evaluate.GROUPS`.
    """
    seen, known = np.asarray(seen, dtype=bool), np.asarray(known, dtype=bool)
    out = np.where(seen, np.where(known, TRAINING_GROUP, "seen/new"), "unseen/new")
    return np.where(~seen & known, "unseen/known", out)


def _add(pool: dict, resid: np.ndarray, groups: np.ndarray, labels: np.ndarray) -> None:
    """Append residuals (n,) to their group's and, for seen/new, their label's category."""
    for g in np.unique(groups):
        rows = groups == g
        pool.setdefault(str(g), []).append(resid[rows])
        if g == "seen/new":
            for c in np.unique(labels[rows]):
                pool.setdefault(f"seen/new@{c}", []).append(resid[rows & (labels == c)])


def _residuals(est, data, train_cells, train_genes, pairs=None):
    """(abs residual, group, label) of ``est`` on ``data`` (pairs: differential kinds)."""
    known_genes = np.asarray(list(train_genes)).astype(str)
    if pairs is None:
        pred = np.asarray(est.predict(data), dtype=np.float64)
        seen = np.isin(data.cell, list(train_cells))
        known = np.isin(data.gene, known_genes)
        return (
            np.abs(data.y - pred),
            mondrian_groups(seen, known),
            np.asarray(data.cell).astype(str),
        )
    parts = []
    for a, b in pairs:
        p = est.predict_pair(data, a, b)
        seen = np.full(len(p.gene), a in train_cells and b in train_cells)
        known = np.isin(p.gene, known_genes)
        label = np.full(len(p.gene), pair_label(a, b))
        parts.append((np.abs(p.observed - p.predicted), mondrian_groups(seen, known), label))
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


def pair_label(a: str, b: str) -> str:
    """The per-pair category label: ``A:B`` and ``B:A`` share one (|residual| is symmetric)."""
    return ":".join(sorted((str(a), str(b))))


def calibrate(
    kind: str,
    overrides,
    est,
    train,
    valid=None,
    *,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Calibration:
    """Calibrate the fitted ``est`` of ``kind`` trained on ``train`` (see the module docstring).

    Parameters
    ----------
    kind, overrides
        What :func:`histexpr.estimators.make_estimator` built ``est`` from; the
        calibration copies are built the same way.
    est : fitted estimator
    train, valid : HistoneDataset
        The training examples and the held-out validation genes (None or empty:
        a calibration split of :data:`CALIBRATION_FRACTION` of the genes is made).
    """
    from histexpr.data.splits import cell_folds, hold_out_genes
    from histexpr.estimators import kind_of, make_estimator

    diff = kind_of(kind).pairs
    cells = list(train.cells)
    notes = []
    if valid is None or not len(valid) or not valid.has_target:
        train, valid = hold_out_genes(train, CALIBRATION_FRACTION, seed)
        log(f"intervals: fitting a calibration copy on {1 - CALIBRATION_FRACTION:.0%} of the genes")
        est = make_estimator(kind, overrides).fit(train, valid)
        notes.append(f"seen/new: a copy fitted without {CALIBRATION_FRACTION:.0%} of the genes")
    valid = valid.select_cells([c for c in valid.cells if c in cells])
    genes = np.unique(train.gene)
    pool: dict[str, list] = {}
    pairs = list(est.pairs_) if diff else None
    _add(pool, *_residuals(est, valid, cells, genes, pairs))
    why = f"only {len(cells)} training cell type(s)"
    if len(cells) >= 3:
        folds = cell_folds(cells, min(CELL_FOLDS, len(cells)), seed)
        try:
            unseen = _unseen_folds(kind, overrides, pairs, train, valid, folds, seed, log)
        except HistexprError as exc:  # e.g. a kind that needs more cell types than a fold keeps
            why = f"a model without a fold's cell types cannot be fitted ({exc})"
        else:
            for r, g, lab in unseen:
                _add(pool, r, g, lab)
            why = ""
            notes.append(f"unseen cell types: {len(folds)} cell-type folds of {len(cells)}")
    if why:
        notes.append(
            f"{why}: unseen cell types are not calibrated (their intervals use the pooled "
            "residuals and may be too narrow)"
        )
    residuals = {k: np.sort(np.concatenate(v).astype(np.float64)) for k, v in pool.items()}
    residuals.pop(TRAINING_GROUP, None)
    return Calibration(residuals, notes)


def _unseen_folds(kind, overrides, pairs, train, valid, folds, seed, log) -> list[tuple]:
    """(residual, group, label) of copies of the model fitted without each fold's cells."""
    from histexpr.estimators import kind_of, make_estimator

    out = []
    for i, fold in enumerate(folds, 1):
        rest = [c for c in train.cells if c not in fold]
        log(f"intervals: cell-type fold {i}/{len(folds)} (leaving out {', '.join(fold)})")
        fold_pairs, fold_over = None, overrides
        if kind_of(kind).pairs:
            fold_pairs = _fold_pairs(fold, rest, seed + i)
            fold_over = _with_pairs(overrides, [p for p in pairs if set(p) <= set(rest)], rest)
        copy = make_estimator(kind, fold_over)
        copy.fit(train.select_cells(rest), valid.select_cells(rest))
        # differential pairs need both cell types' rows; single-cell: the fold's rows
        diff = fold_pairs is not None
        held = (train, valid) if diff else (train.select_cells(fold), valid.select_cells(fold))
        out += [_residuals(copy, part, rest, train.gene, fold_pairs) for part in held]
    return out


def _fold_pairs(fold, rest, seed: int) -> list[tuple[str, str]]:
    """Pairs with a held-out cell type (at most :data:`MAX_FOLD_PAIRS`, seeded)."""
    every = [(a, b) for a, b in combinations(sorted([*fold, *rest]), 2) if a in fold or b in fold]
    if len(every) > MAX_FOLD_PAIRS:
        pick = np.random.default_rng(seed).choice(len(every), MAX_FOLD_PAIRS, replace=False)
        every = [every[i] for i in sorted(pick)]
    return every


def _with_pairs(overrides, kept, rest):
    """The differential overrides with ``pairs`` limited to the fold's training cell types."""
    kept = kept or list(combinations(sorted(rest), 2))
    text = ",".join(f"{a}:{b}" for a, b in kept)
    if isinstance(overrides, dict):
        return {**overrides, "pairs": text}
    return [*(overrides or []), f"pairs={text}"]


def save_calibration(directory, calibration: Calibration) -> None:
    """Store ``calibration`` in a saved model directory (through :mod:`.bundle`)."""
    from histexpr.estimators.bundle import write_calibration

    write_calibration(directory, *calibration.to_arrays())


#: Interval level scored by ``evaluate`` when the model is calibrated and none is asked.
DEFAULT_LEVEL = 0.9


def model_calibration(directory, interval: float | None, default: float | None = None):
    """(calibration, level) of a saved model, checked before any prediction.

    With ``interval``: the level checked and the calibration required (a one-line
    error without one). Without: the stored calibration at level ``default`` when
    both exist, else ``(None, None)``.
    """
    from histexpr.estimators.bundle import read_calibration

    if interval is not None:
        level = check_level(interval)
        return load_calibration(directory), level
    stored = read_calibration(directory) if default is not None else None
    return (None, None) if stored is None else (Calibration.from_arrays(*stored), default)


def load_calibration(directory) -> Calibration:
    """The calibration of a saved model; a one-line error saying how to get one if none."""
    from histexpr.estimators.bundle import read_calibration

    stored = read_calibration(directory)
    if stored is None:
        raise no_calibration(directory)
    return Calibration.from_arrays(*stored)


def bounds(
    calibration: Calibration, level: float, pred, group, label=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interval ``pred -/+ half-width`` of every example at ``level``.

    Parameters
    ----------
    pred : array-like of float, shape (n,)
    group, label : array-like of str, shape (n,)
        See :meth:`Calibration.half_widths`.

    Returns
    -------
    lower, upper : np.ndarray, shape (n,), float64
    used : np.ndarray, shape (n,), str
        The category that calibrated each example.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    half, used = calibration.half_widths(level, group, label)
    return pred - half, pred + half, used


def describe_use(used: np.ndarray) -> str:
    """One line: how many intervals each category calibrated."""
    names, counts = np.unique(np.asarray(used).astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return "intervals: " + ", ".join(f"{counts[i]} from {names[i]}" for i in order)
