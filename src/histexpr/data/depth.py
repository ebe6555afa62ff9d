"""Per-cell sequencing depth of the input: each cell type's counts on one scale.

Read counts scale with each experiment's sequencing depth and ChIP enrichment,
which differ between cell types (up to 2x per mark in the Roadmap data,
``../shared/notes/real-data-checks.md``; the simulator draws them per cell and
mark). A network reading one gene's window at a time sees that scale only
through the window itself. With ``depth_norm="cell"`` (``TrainConfig.optim``) a
neural model sees every cell type's counts rescaled per mark to a common depth:

    X[i, m, :] * reference[m] / depth[cell_i, m]

where ``depth[c, m]`` is the mean count per bin of mark ``m`` over all of cell
type ``c``'s genes in the data and ``reference`` the mean of the training cell
types' depths. A training cell keeps the depth measured on its training genes; a
new cell type gets its depth from all its genes in the input (a first pass over a
streamed input, like the atlas kinds' cell states), or the reference depth (no
rescaling, with a notice) when the input holds fewer than :data:`MIN_DEPTH_GENES`
of its genes: a handful of genes says little about a depth. With one training
cell type the rescaling of that cell is the identity.

On the simulator (20 training + 2 unseen cell types x 4,000 genes, the ensemble,
8 epochs) it took the MSE over the Bayes oracle from 1.203 to 1.117 on held-out
genes of the training cell types and from 1.217 to 1.091 on the unseen ones
(docs/benchmarks.md, section 4).
"""

from __future__ import annotations

import numpy as np

from histexpr._runtime import Notice, notice

__all__ = [
    "MIN_DEPTH_GENES",
    "CellDepths",
    "DepthNotice",
    "depth_factors",
    "rescale",
]

#: Fewer genes of a new cell type than this in the input: its depth is not estimated.
MIN_DEPTH_GENES = 200


class DepthNotice(Notice):
    """A new cell type's depth could not be estimated (too few of its genes)."""


class CellDepths:
    """Mean count per bin and mark of each cell type, gathered over rows or blocks.

    Sums are float64 and per cell type, so the result does not depend on how the
    rows are cut into blocks (up to float rounding of the additions).
    """

    def __init__(self):
        self._sum: dict[str, np.ndarray] = {}
        self._n: dict[str, int] = {}

    def add(self, X: np.ndarray, cell: np.ndarray, chunk: int = 65536) -> CellDepths:
        """Rows ``X`` (n, n_marks, n_bins) of cell types ``cell`` (n,); returns self."""
        cell = np.asarray(cell).astype(str)
        for c in np.unique(cell):
            rows = np.flatnonzero(cell == c)
            total = self._sum.get(c, 0.0)
            for start in range(0, len(rows), chunk):
                part = np.asarray(X[rows[start : start + chunk]], dtype=np.float64)
                total = total + np.nansum(np.maximum(part, 0.0), axis=(0, 2))
            self._sum[c] = total
            self._n[c] = self._n.get(c, 0) + len(rows) * X.shape[2]
        return self

    def genes(self, cell: str, n_bins: int) -> int:
        """Rows (genes) of ``cell`` seen."""
        return self._n.get(cell, 0) // max(n_bins, 1)

    def per_cell(self) -> dict[str, np.ndarray]:
        """Cell type -> mean count per bin of each mark, shape (n_marks,), float64."""
        return {c: self._sum[c] / self._n[c] for c in self._sum if self._n[c]}


def depth_factors(
    cells,
    known: dict[str, np.ndarray],
    reference: np.ndarray,
    measured: dict[str, np.ndarray] | None = None,
    genes: dict[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Per cell type the factor per mark that brings its counts to ``reference``.

    Parameters
    ----------
    cells : iterable of str
        The cell types to rescale.
    known : dict
        Depths kept with the model (its training cell types), used as they are.
    reference : np.ndarray, shape (n_marks,)
    measured : dict, optional
        Depths measured on the input (:meth:`CellDepths.per_cell`) for the others.
    genes : dict, optional
        Genes of each cell type behind ``measured``; below :data:`MIN_DEPTH_GENES`
        the factor is 1 (one :class:`DepthNotice` names those cell types).

    Returns
    -------
    dict, cell -> np.ndarray, shape (n_marks,), float32
    """
    reference = np.asarray(reference, dtype=np.float64)
    measured, genes = measured or {}, genes or {}
    out, few = {}, []
    for c in cells:
        depth = known.get(c)
        if depth is None and genes.get(c, 0) >= MIN_DEPTH_GENES:
            depth = measured.get(c)
        if depth is None:
            few.append(f"{c} ({genes.get(c, 0)})")
            out[c] = np.ones(len(reference), dtype=np.float32)
            continue
        depth = np.asarray(depth, dtype=np.float64)
        # a mark without a read in the cell keeps its counts (zeros stay zeros)
        ratio = np.divide(reference, depth, out=np.ones_like(reference), where=depth > 0)
        out[c] = ratio.astype(np.float32)
    if few:
        shown = ", ".join(few[:5]) + (f" and {len(few) - 5} more" if len(few) > 5 else "")
        notice(
            f"too few genes to estimate the sequencing depth of {shown} (fewer than "
            f"{MIN_DEPTH_GENES}): their counts are read at the training depth",
            DepthNotice,
            stacklevel=3,
        )
    return out


def rescale(X: np.ndarray, cell: np.ndarray, factors: dict[str, np.ndarray]) -> np.ndarray:
    """``X`` with each row's marks multiplied by its cell type's factors (a new array).

    Parameters
    ----------
    X : np.ndarray, shape (n, n_marks, n_bins)
    cell : np.ndarray, shape (n,)
    factors : dict, cell -> np.ndarray, shape (n_marks,)

    Returns
    -------
    np.ndarray, shape (n, n_marks, n_bins), float32
    """
    out = np.array(X, dtype=np.float32, copy=True)
    cell = np.asarray(cell).astype(str)
    for c in np.unique(cell):
        f = factors.get(c)
        if f is not None and not np.all(f == 1):
            out[cell == c] *= np.asarray(f, dtype=np.float32)[None, :, None]
    return out
