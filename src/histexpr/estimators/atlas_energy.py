"""How far an atlas model's residual moves each cell type: the guard's energy factor.

:mod:`histexpr.estimators.atlas_guard` scales a new cell type's residual by
``min(1, e_train / e_cell)``, where ``e`` is the residual's mean square over all the
cell's genes in the input: a residual that moves an unseen cell further than it moved
its training cells is extrapolating (another depth, another chromatin state). This
module gathers ``e`` per cell type over rows or blocks, with the plain-mean prior, so
that a streamed input's first pass gathers it alongside the cell states.
"""

from __future__ import annotations

import warnings

import numpy as np

from histexpr.data.atlas import Atlas, AtlasNotice
from histexpr.estimators.atlas_cells import CellState

__all__ = ["ResidualEnergy", "residual_energy", "uniform_states"]


def uniform_states(atlas: Atlas, cells) -> dict[str, CellState]:
    """Each cell's state with equal weights on its reference cells: the residual energy
    is measured with the plain-mean prior, so that it needs no cell state and a first
    pass over a streamed input can gather it alongside the states."""
    return {c: CellState(np.zeros(len(atlas.without([c]).cells)), float("inf"), 0) for c in cells}


class ResidualEnergy:
    """Mean square of the residual per cell type, gathered over rows or blocks.

    How far the residual model moves from the prior on a cell type, against how far
    it moved on its training rows: a larger move on an unseen cell is extrapolation
    (its histone features lie outside what was trained on: another depth, another
    chromatin state), and the extra is not expected to correlate with the truth,
    so the residual is scaled by the ratio (capped at 1).
    """

    def __init__(self):
        self._sum: dict[str, float] = {}
        self._n: dict[str, int] = {}

    def add(self, cells: np.ndarray, residual: np.ndarray) -> None:
        """Rows of one block: their cell types (n,) and residuals (n,)."""
        r = np.asarray(residual, dtype=np.float64)
        for c in np.unique(cells):
            m = cells == c
            # sorted before summing: the same total whatever the order of the rows
            self._sum[c] = self._sum.get(c, 0.0) + float(np.sum(np.sort(r[m] ** 2)))
            self._n[c] = self._n.get(c, 0) + int(m.sum())

    def per_cell(self) -> dict[str, float]:
        return {c: self._sum[c] / self._n[c] for c in self._sum if self._n[c]}

    def overall(self) -> float:
        n = sum(self._n.values())
        return sum(self._sum.values()) / n if n else float("nan")


def residual_energy(
    features, data, genes, P, histone, predict_residual, training, energy=None
) -> ResidualEnergy:
    """Add the residual's squares per cell of ``data`` to ``energy`` (a new one if none).

    Parameters
    ----------
    features : AtlasFeatures
    data : HistoneDataset
    genes : np.ndarray, shape (n,), canonical gene ids of ``data``
    P : np.ndarray, shape (n, n_marks * pool_bins), pooled log1p profile
    histone : np.ndarray, shape (n, d) or None, the histone block of the features
    predict_residual : callable, ``(F, order) -> residual (m,)``: the residual of the
        rows ``order`` of ``data`` from their features ``F`` (m, d')
    training : bool, ``data`` is the training data (leave-one-cell-out features)
    """
    energy = ResidualEnergy() if energy is None else energy
    states = uniform_states(features.atlas, data.cells)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AtlasNotice)
        F, order, _, _ = features.features(data, genes, training, P, histone, None, states)
    if len(order):
        energy.add(data.cell[order], predict_residual(F, order))
    return energy
