"""A cell type's relation to the reference cells, estimated from all its genes (:class:`CellState`).

The atlas prior of a gene in a (possibly new) cell type weights the reference
cells by how much the cell resembles each of them
(:func:`histexpr.estimators.atlas_prior.similarity_correlations`) with a softmax of some
temperature. Neither is known for a cell type that was not trained on; both are
estimated here from the cell's histone-only scores over *all* its genes that the
atlas knows, never from the genes of one call or one streamed block, so that a
gene's prediction does not depend on which other genes of other cell types are
predicted with it, nor on the memory budget (issue #24). When streaming, the
workflow makes a first pass over the file (:meth:`CellScores.add` per block).

The temperature of a cell is chosen without its targets (which a new cell type
does not have): the one whose prior agrees best with the cell's own histone-only
scores, cross-fitted over two fixed halves of the genes (the similarity of one
half is estimated on the other), so that a sharp softmax is not rewarded for
fitting the very scores it was estimated from. A temperature learned on the
training cells does not carry over to an unlike cell type: an ES line has close
neighbours among the reference cells, a leukaemia line has none (issue #22).

Below :data:`MIN_CELL_GENES` genes the similarity is not estimated: the prior is
the plain mean of the reference cells (with one :class:`FewGenesNotice` line).
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from histexpr.estimators.atlas_prior import (
    TEMPERATURES,
    similarity_correlations,
    softmax_weights,
    weighted_prior,
)

__all__ = [
    "MIN_CELL_GENES",
    "CellScores",
    "CellState",
    "FewGenesNotice",
    "cell_state",
    "warn_few_genes",
]

#: Fewest atlas-known genes of a cell type from which its similarity to the
#: reference cells is estimated. With 55 reference cells, correlations over fewer
#: genes are noisy enough that a sharp softmax picks a near-random reference cell
#: (the 6.3 log2-unit differences of issue #24 came from 300-kB blocks).
MIN_CELL_GENES = 200


class FewGenesNotice(UserWarning):
    """A cell type has too few atlas-known genes to estimate its similarity."""


@dataclass(frozen=True)
class CellState:
    """The similarity of one cell type to the reference cells and its softmax temperature.

    Attributes
    ----------
    corr : np.ndarray, shape (n_ref,)
        Correlations with the reference cells (the atlas without the cell's own
        column), all zero when not estimated.
    temperature : float
        Softmax temperature of its prior (``inf``: plain mean).
    n_genes : int
        Atlas-known genes of the cell it was estimated from.
    """

    corr: np.ndarray
    temperature: float
    n_genes: int

    @property
    def estimated(self) -> bool:
        return self.n_genes >= MIN_CELL_GENES


def _halves(genes: np.ndarray) -> np.ndarray:
    """A fixed half (0 or 1) per gene id: a hash, so that it never depends on the input order."""
    return np.array([zlib.crc32(str(g).encode()) & 1 for g in genes], dtype=np.int8)


def _agreement(score: np.ndarray, prior: np.ndarray) -> float:
    """Covariance of the scores with ``prior`` over its sd: the correlation up to a
    factor shared by every candidate prior of one cell (so the same argmax)."""
    m = np.isfinite(prior)
    if m.sum() < 3:
        return -np.inf
    a, b = score[m] - score[m].mean(), prior[m] - prior[m].mean()
    sd = np.sqrt(b @ b)
    return float(a @ b / sd) if sd > 0 else -np.inf


def choose_cell_temperature(genes, score, ref, temperatures=TEMPERATURES) -> float:
    """The temperature whose cross-fitted prior agrees best with the cell's histone scores.

    Parameters
    ----------
    genes : np.ndarray, shape (n,), str
    score : np.ndarray, shape (n,), the cell's histone-only scores
    ref : np.ndarray, shape (n, n_ref), the reference cells' expression of the genes
    """
    half = _halves(genes)
    priors = {t: np.full(len(score), np.nan) for t in temperatures}
    for k in (0, 1):
        fit, held = half != k, half == k
        if not held.any():
            continue
        corr = similarity_correlations(score[fit], ref[fit])
        for t in temperatures:
            priors[t][held] = weighted_prior(ref[held], softmax_weights(corr, t))
    scores = [_agreement(score, priors[t]) for t in temperatures]
    # ties go to the smoother prior (later in the list)
    best = max(range(len(temperatures)), key=lambda i: (scores[i], i))
    return float(temperatures[best])


def cell_state(genes, score, ref, temperature: float = 0.0) -> CellState:
    """:class:`CellState` of one cell from all its atlas-known genes.

    Parameters
    ----------
    genes : np.ndarray, shape (n,), str, canonical ids (any order)
    score : np.ndarray, shape (n,), histone-only scores
    ref : np.ndarray, shape (n, n_ref), the atlas (without the cell's column) on ``genes``
    temperature : float
        A fixed temperature, or 0: chosen per cell (:func:`choose_cell_temperature`).
    """
    genes = np.asarray(genes).astype(str)
    order = np.argsort(genes, kind="stable")  # the same sums whatever the input order
    genes, score = genes[order], np.asarray(score, np.float64)[order]
    ref = np.asarray(ref)[order]
    n = len(genes)
    if n < MIN_CELL_GENES:
        return CellState(np.zeros(ref.shape[1]), float("inf"), n)
    corr = similarity_correlations(score, ref)
    if temperature <= 0:
        temperature = choose_cell_temperature(genes, score, ref)
    return CellState(corr, float(temperature), n)


def warn_few_genes(states: dict[str, CellState], stacklevel: int = 3) -> None:
    """One line naming the cell types whose similarity could not be estimated."""
    few = [f"{c} ({s.n_genes})" for c, s in states.items() if not s.estimated]
    if few:
        shown = ", ".join(few[:5]) + (f" and {len(few) - 5} more" if len(few) > 5 else "")
        warnings.warn(
            f"too few genes in the atlas to estimate the similarity to the reference cells of "
            f"{shown} (fewer than {MIN_CELL_GENES}): their prior is the plain reference mean",
            FewGenesNotice,
            stacklevel=stacklevel,
        )


class CellScores:
    """First pass over a streamed input: each cell's atlas-known genes and histone scores."""

    def __init__(self):
        self._genes: dict[str, list[np.ndarray]] = {}
        self._scores: dict[str, list[np.ndarray]] = {}

    def add(self, cell: str, genes: np.ndarray, score: np.ndarray) -> None:
        self._genes.setdefault(cell, []).append(np.asarray(genes).astype(str))
        self._scores.setdefault(cell, []).append(np.asarray(score, np.float64))

    def cells(self) -> list[str]:
        return list(self._genes)

    def get(self, cell: str) -> tuple[np.ndarray, np.ndarray]:
        """All genes and scores of ``cell`` seen so far."""
        return np.concatenate(self._genes[cell]), np.concatenate(self._scores[cell])
