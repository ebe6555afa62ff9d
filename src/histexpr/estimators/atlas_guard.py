"""Atlas models never worse than their prior: a per-cell shrinkage of the residual (issue #22).

The atlas kinds predict ``prior + g(features)``. The residual model ``g`` learns
from the training cells how far to move from the prior, and that depends on how
good the prior was *there*: trained on a leukaemia line (no close reference
cell, a poor prior) it learns to move far, and applied to an ES line (many
near-identical reference cells, a prior with R2 0.95) it moves too far and ends
below the prior alone (simulator, E123 -> E003: 0.881 against the prior's 0.943).

If the histone information the residual adds is weak next to the prior (it is:
histone-only R2 0.15-0.5 against the prior's 0.6-0.95), the best weight on it is
proportional to the prior's error variance (inverse-variance weighting:
``v / (v + s2)`` ~ ``v / s2``). So a residual fitted where the prior's mean squared
error was ``v_train`` is scaled, for a cell whose prior error is ``v_cell``, by

    scale = min(1, v_cell / v_train)

never above 1 (the model is never pushed further than it learned), and 0 only
where the prior is perfect. On the simulator with the true errors this rule stays
within 2x of the best scale in every direction measured, and any scale in
``[0, 2 x best]`` scores at least the prior (the risk is quadratic in the scale).

Neither error may use a target of the predicted cell, so both are estimated the
same way, from the atlas alone, twice: the cell's softmax weights over the reference
cells (its :class:`~histexpr.estimators.atlas_cells.CellState`, estimated from all
its genes in the input) applied (1) to predict each weighted reference cell from the
others (:func:`prior_error`, a weighted jackknife) and (2) as the weighted spread of
the reference cells around the prior they make (:func:`prior_spread`), over every
gene of the atlas (so neither depends on the genes or blocks of one call). A cell with
close, mutually consistent neighbours gets a small error; one whose neighbours
disagree, a large one. Each ratio cancels a common bias of its estimate, and the
smaller of the two ratios is used, raised to the power 1.5 as a margin for the
estimates' errors (:meth:`PriorGuard.scale` says why).

A second factor, ``min(1, e_train / e_cell)``, covers the other way a residual
fails on an unseen cell: extrapolation. ``e`` is the residual's mean square
(:class:`~histexpr.estimators.atlas_energy.ResidualEnergy`; measured with the
plain-mean prior, so that it needs no cell state and a streamed input's first pass
gathers it with the states): if the residual model moves a new cell's genes further from the prior than it moved its
training genes, its histone features lie outside what it learned from (another
depth, another chromatin state), and the extra movement is treated as noise.

Limits (measured, docs/benchmarks.md): the estimates are only roughly right on the
real Roadmap matrix (log correlation 0.67-0.74 and 0.59-0.72 with the true error over
the 56 cell types, for histone scores of R2 0.3-0.7), so the guard removes most but
not all of a loss against the prior.

atlas-convnet calls it the same way with the prior-error factor only: its network
adds the prior inside ``forward``, so its correction is the prediction minus the
prior (:func:`shrink_to_prior`), and a second forward pass per prediction for the
energy factor was not worth its cost.

``v_train`` and ``e_train`` are means over the training examples. Saved as
``guard.npz`` in the model directory; a directory without it (saved before the
guard) predicts exactly as before.

Two other parts of "never worse than the prior" live where they are decided
(:mod:`~histexpr.estimators.atlas_residual`): a residual that does not lower the
prior's error on training genes it was not fitted on is dropped, and genes no
training cell type has (their histone departure is unknown) get a residual model
fitted without the departure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from histexpr.data.atlas import Atlas
from histexpr.estimators.atlas_cells import CellState
from histexpr.estimators.atlas_prior import softmax_weights

__all__ = [
    "GUARD_FILE",
    "POWER",
    "PriorGuard",
    "prior_error",
    "prior_spread",
    "shrink_to_prior",
]

GUARD_FILE = "guard.npz"


#: The prior-error ratio is raised to this power: a margin for the errors of its
#: estimates (see :meth:`PriorGuard.scale`). Guards saved before it keep 1.
POWER = 1.5

#: Reference cells whose weight is below this are left out of the jackknife: together
#: they weigh little, and the estimate costs one product over the atlas per cell kept.
MIN_WEIGHT = 1e-4


def _usable(ref, weights):
    """Complete genes of ``ref`` (float64) and the weights summing to 1; ``(None,
    None)`` when no estimate is possible (fewer than 2 reference cells, no complete
    gene, weights not finite or not positive)."""
    ref = np.asarray(ref, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    ref = ref[np.isfinite(ref).all(axis=1)]
    if ref.shape[1] < 2 or len(ref) == 0 or not np.isfinite(w).all() or w.sum() <= 0:
        return None, None
    return ref, w / w.sum()


def prior_error(ref: np.ndarray, weights: np.ndarray) -> float:
    """Target-free estimate of the mean squared error of a cell's prior.

    Each reference cell ``r`` is predicted by the prior of the same weights without
    ``r`` (renormalised), and its mean squared error over the genes is averaged with
    the cell's weights: the cell is treated as one more member of its weighted
    neighbourhood, predicted by the others. (Averaging with the squared weights, which
    favours the nearest references, tracked the true error less well on the real
    Roadmap matrix: 393 against 351 unsafe pairs of 3,080, docs/benchmarks.md.)

    Parameters
    ----------
    ref : np.ndarray, shape (n_genes, n_ref)
        Reference cells' expression (rows with a missing value are ignored).
    weights : np.ndarray, shape (n_ref,)
        The cell's weights over the reference cells (sum 1).

    Returns
    -------
    float
        ``nan`` when it cannot be estimated (fewer than 2 reference cells or no
        complete gene).
    """
    ref, w = _usable(ref, weights)
    if ref is None:
        return float("nan")
    importance = w
    keep = np.flatnonzero(importance >= MIN_WEIGHT)
    total = 0.0
    for r in keep:
        rest = w.copy()
        rest[r] = 0.0
        if rest.sum() <= 0:  # all weight on r: predict it from the others alike
            rest = np.ones_like(w)
            rest[r] = 0.0
        rest /= rest.sum()
        total += importance[r] * float(np.mean((ref @ rest - ref[:, r]) ** 2))
    return total / float(importance[keep].sum())


def prior_spread(ref: np.ndarray, weights: np.ndarray) -> float:
    """Second target-free estimate of the mean squared error of a cell's prior.

    The weighted spread of the reference cells around the prior itself:
    ``sum_r w_r * mean_g (ref[g, r] - prior[g]) ** 2`` with ``prior = ref @ w``. If
    the cell were one more member of its weighted neighbourhood this would be its
    error, lowered by the members' own weight in the prior; the lowering is
    strongest where the weight sits on one or two references, i.e. for a cell type
    with a close reference (an ES line), so the guard errs towards the prior where
    the prior is best, which is where :func:`prior_error` (a jackknife that removes
    the one close reference) over-estimates most.

    Parameters and result as :func:`prior_error`.
    """
    ref, w = _usable(ref, weights)
    if ref is None:
        return float("nan")
    prior = ref @ w
    return float(w @ np.mean((ref - prior[:, None]) ** 2, axis=0))


def shrink_to_prior(prior: np.ndarray, prediction: np.ndarray, scale) -> np.ndarray:
    """``prior + scale * (prediction - prior)``: the guarded prediction.

    For a model whose prediction is not written as ``prior + residual`` in its own
    code (atlas-convnet adds the prior to its network's output): call it on the
    network's prediction, the ``prior_`` of the same call and the rows' scales of
    :meth:`PriorGuard.row_scales`.

    Parameters
    ----------
    prior : np.ndarray, shape (n,), NaN where the atlas is not used
    prediction : np.ndarray, shape (n,), the model's ``prior + residual``
    scale : float or np.ndarray, shape (n,), in [0, 1] (:meth:`PriorGuard.scale`)

    Returns
    -------
    np.ndarray, shape (n,), float32; ``prediction`` itself where ``prior`` is NaN.
    """
    prior = np.asarray(prior, dtype=np.float32)
    prediction = np.asarray(prediction, dtype=np.float32)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float32), prediction.shape)
    out = prediction.copy()
    use = np.isfinite(prior) & (scale != 1)  # scale 1: exactly the model, bit for bit
    out[use] = prior[use] + scale[use] * (prediction[use] - prior[use])
    return out


@dataclass
class PriorGuard:
    """The training cells' prior error and the per-cell scale of the residual.

    Attributes
    ----------
    train_error : float
        Mean over the training examples of their cell's estimated prior error
        (:func:`prior_error`); ``nan`` disables the guard (scale 1).
    cells : dict
        Training cell -> its estimated prior error (for ``metrics.json``).
    train_energy : float
        The residual's mean square on the training rows (``nan``: no energy factor).
    train_spread : float
        As ``train_error`` with :func:`prior_spread` (``nan``: a guard saved before
        it, which keeps its one estimate).
    spreads : dict
        Training cell -> its spread.
    power : float
        The power of the scale (:data:`POWER`; 1 for a guard saved before it).
    """

    train_error: float
    cells: dict
    train_energy: float = float("nan")
    train_spread: float = float("nan")
    spreads: dict = field(default_factory=dict)
    power: float = 1.0

    @staticmethod
    def cell_errors(atlas: Atlas, cell: str, state: CellState) -> tuple[float, float]:
        """Both estimates of ``cell``'s prior error (:func:`prior_error`,
        :func:`prior_spread`) from the atlas without its column."""
        ref = atlas.without([cell]).values
        w = softmax_weights(state.corr, state.temperature)
        return prior_error(ref, w), prior_spread(ref, w)

    @classmethod
    def fit(cls, atlas: Atlas, cases, train_energy: float = float("nan")) -> PriorGuard:
        """From the training cases of :meth:`AtlasFeatures.cases` (cell, rows, found,
        reference values, state, scores): each cell weighs by its atlas-known rows.
        ``train_energy``: the residual's mean square on the training rows
        (:class:`ResidualEnergy`)."""
        errors, spreads, counts = {}, {}, {}
        for cell, _idx, found, _ref, state, _score in cases:
            if found.any():
                errors[cell], spreads[cell] = cls.cell_errors(atlas, cell, state)
                counts[cell] = int(found.sum())

        def mean(values: dict) -> float:
            ok = [c for c in values if np.isfinite(values[c])]
            # Like with like only: with the atlas built from the training cells, each
            # was predicted from one reference fewer than a new cell will be, which
            # biases the ratio towards shrinking (a planted 4-cell set: 0.272 vs
            # ridge's 0.297 MSE, where it had been below 0.9 x). Decided here, not per
            # predicted cell, so that a cell's own atlas column never changes its
            # prediction.
            if not ok or atlas.source == "train":
                return float("nan")
            n = np.array([counts[c] for c in ok], dtype=np.float64)
            return float(np.sum(n * np.array([values[c] for c in ok])) / n.sum())

        return cls(mean(errors), errors, float(train_energy), mean(spreads), spreads, POWER)

    def scale(self, atlas: Atlas, cell: str, state: CellState, energy=None) -> float:
        """``min(1, v_cell / v_train, s_cell / s_train) ** power * min(1, e_train / e_cell)``
        (``v``: :func:`prior_error`, ``s``: :func:`prior_spread`); a factor is 1 where
        its parts cannot be estimated (``energy``: the cell's residual mean square).

        Of the two estimates of the prior's error the smaller ratio is taken: a
        smaller scale is never further below the prior (the risk is ``s^2 A - 2 s B``,
        negative on ``(0, 2 s*)`` and smallest at 0 when the residual does not help),
        so the guard fails only where both estimates fail. The power (1.5) is a margin
        for the estimates' errors, which are multiplicative (the estimated prior error
        was 0.3-6 x the true one on the real Roadmap matrix): a ratio of 1 stays 1, and
        the smaller the ratio (the better the new cell's prior against the training
        cells'), the more it shrinks, where an over-estimate costs the most. On the real
        Roadmap matrix (3,080 ordered pairs, stand-in score R2 0.3 / 0.5 / 0.7) the power
        left 62 / 35 / 48 pairs above twice the ideal scale against 118 / 53 / 96 with
        the plain ratio, keeping 0.83-0.86 of the attainable gain against 0.86-0.91
        (docs/benchmarks.md).
        """
        ratio = 1.0
        usable = [np.isfinite(t) and t > 0 for t in (self.train_error, self.train_spread)]
        if any(usable):  # no usable training figure (atlas=train): the atlas is not read
            mine = self.cell_errors(atlas, cell, state)
            for ok, train, own in zip(
                usable, (self.train_error, self.train_spread), mine, strict=True
            ):
                if ok and np.isfinite(own):
                    ratio = min(ratio, own / train)
        ratio = ratio**self.power
        if energy is not None and np.isfinite(self.train_energy) and energy > 0:
            ratio *= min(1.0, self.train_energy / energy)
        return float(ratio)

    def row_scales(self, atlas: Atlas, cases, n: int, energies=None) -> tuple[np.ndarray, dict]:
        """Per row of the data of ``cases`` its cell's scale (1 where the atlas is not
        used), and the scale of each cell; ``energies``: cell -> residual mean square.

        Returns
        -------
        scales : np.ndarray, shape (n,), float32
        per_cell : dict, cell -> float
        """
        scales = np.ones(n, dtype=np.float32)
        per_cell = {}
        energies = energies or {}
        for cell, idx, found, _ref, state, _score in cases:
            if found.any():
                # like the similarity, the energy only from enough genes: below, the
                # prediction of a gene must not depend on the others predicted with it
                energy = energies.get(cell) if state.estimated else None
                per_cell[cell] = self.scale(atlas, cell, state, energy)
                scales[idx[found]] = per_cell[cell]
        return scales, per_cell

    def metrics(self) -> dict:
        """The training errors for ``metrics.json`` (JSON has no NaN: ``None``)."""
        show = lambda v: round(v, 6) if np.isfinite(v) else None  # noqa: E731
        return {
            "guard_train_error": show(self.train_error),
            "guard_train_spread": show(self.train_spread),
            "guard_train_energy": show(self.train_energy),
            "guard_cell_errors": {c: show(v) for c, v in self.cells.items()},
            "guard_cell_spreads": {c: show(v) for c, v in self.spreads.items()},
        }

    # -- saving ----------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        cells = list(self.cells)
        np.savez(
            Path(directory) / GUARD_FILE,
            train_error=np.float64(self.train_error),
            train_energy=np.float64(self.train_energy),
            train_spread=np.float64(self.train_spread),
            cells=np.array(cells, dtype="U"),
            errors=np.array([self.cells[c] for c in cells], dtype=np.float64),
            spreads=np.array([self.spreads.get(c, np.nan) for c in cells], dtype=np.float64),
            power=np.float64(self.power),
        )

    @classmethod
    def load(cls, directory: Path) -> PriorGuard | None:
        """The guard saved in ``directory``; ``None`` for a directory saved before it
        (a guard saved before the spread keeps its one estimate, one saved before the
        power keeps 1)."""
        path = Path(directory) / GUARD_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:
            names = z["cells"].astype(str).tolist()
            cells = dict(zip(names, z["errors"].tolist(), strict=True))
            energy = float(z["train_energy"]) if "train_energy" in z else float("nan")
            spread = float(z["train_spread"]) if "train_spread" in z else float("nan")
            spreads = dict(zip(names, z["spreads"].tolist(), strict=True)) if "spreads" in z else {}
            power = float(z["power"]) if "power" in z else 1.0
            return cls(float(z["train_error"]), cells, energy, spread, spreads, power)
