"""The one in-memory dataset type of histexpr.

An example is one gene in one cell type: the binned read counts of the five core
histone marks in a window around the gene's TSS, its expression (when known),
and the identifiers of the gene and the cell type.

Target transform
----------------
``y`` is ``log2(RPKM + 1)`` whenever the raw RPKM is known (packaged Roadmap
matrix, DeepChrome CSVs joined with RPKM, the simulator). Files that already
carry a normalised expression value (the course npz) are passed through
unchanged; ``HistoneDataset.target`` records which transform applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from histexpr.errors import DataError

#: Canonical mark order (DeepChrome's ``names.csv`` and the course npz columns 1-5).
MARKS: tuple[str, ...] = ("H3K27me3", "H3K36me3", "H3K4me1", "H3K4me3", "H3K9me3")
#: Bins per example: 10 kb around the TSS in 100-bp bins.
N_BINS: int = 100
#: Bin width in base pairs.
BIN_SIZE: int = 100

TARGET_LOG2_RPKM = "log2(RPKM+1)"
TARGET_PASSTHROUGH = "as-given"


def log2_rpkm(rpkm: np.ndarray) -> np.ndarray:
    """Default target transform: ``log2(RPKM + 1)`` as float32."""
    return np.log2(np.asarray(rpkm, dtype=np.float64) + 1.0).astype(np.float32)


@dataclass
class HistoneDataset:
    """Binned histone signal with optional expression targets.

    Attributes
    ----------
    X : np.ndarray, shape (n_examples, n_marks, n_bins), float32
        Read counts per mark and bin; bins run upstream -> downstream of the TSS.
    y : np.ndarray, shape (n_examples,), float32, or None
        Expression target (see the module docstring); None for prediction-only data.
    cell : np.ndarray, shape (n_examples,), str
        Cell-type id of each example, e.g. ``"E003"``.
    gene : np.ndarray, shape (n_examples,), str
        Gene id of each example, e.g. ``"ENSG00000000003"``.
    marks : tuple of str
        Mark names in the order of axis 1 of ``X``.
    target : str
        Description of the target transform.
    """

    X: np.ndarray
    y: np.ndarray | None
    cell: np.ndarray
    gene: np.ndarray
    marks: tuple[str, ...] = MARKS
    target: str = TARGET_LOG2_RPKM
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.X = np.asarray(self.X, dtype=np.float32)
        if self.X.ndim != 3:
            raise DataError(f"X must have shape (n, marks, bins), got {self.X.shape}", key="X")
        n = self.X.shape[0]
        self.cell = np.asarray(self.cell).astype(str)
        self.gene = np.asarray(self.gene).astype(str)
        if self.y is not None:
            self.y = np.asarray(self.y, dtype=np.float32).reshape(-1)
        for name, arr in (("y", self.y), ("cell", self.cell), ("gene", self.gene)):
            if arr is not None and arr.shape != (n,):
                raise DataError(f"{name} has shape {arr.shape}, expected ({n},)", key=name)
        self.marks = tuple(self.marks)
        if len(self.marks) != self.X.shape[1]:
            raise DataError(
                f"{len(self.marks)} mark names for {self.X.shape[1]} marks in X", key="marks"
            )

    def __len__(self) -> int:
        return self.X.shape[0]

    def __repr__(self) -> str:
        return (
            f"HistoneDataset(n={len(self)}, marks={len(self.marks)}, bins={self.n_bins}, "
            f"cells={len(self.cells)}, genes={len(np.unique(self.gene))}, "
            f"target={'none' if self.y is None else self.target!r})"
        )

    @property
    def n_bins(self) -> int:
        return self.X.shape[2]

    @property
    def has_target(self) -> bool:
        return self.y is not None

    @property
    def cells(self) -> list[str]:
        """Distinct cell types in order of first appearance."""
        _, first = np.unique(self.cell, return_index=True)
        return [str(c) for c in self.cell[np.sort(first)]]

    def subset(self, index) -> HistoneDataset:
        """Examples selected by an integer index array, boolean mask or slice."""
        return replace(
            self,
            X=self.X[index],
            y=None if self.y is None else self.y[index],
            cell=self.cell[index],
            gene=self.gene[index],
            meta=dict(self.meta),
        )

    def select_cells(self, cells: Sequence[str], exclude: bool = False) -> HistoneDataset:
        """Examples of the given cell types (or of all others with ``exclude=True``)."""
        cells = [str(c) for c in cells]
        missing = set(cells) - set(self.cells)
        if missing and not exclude:
            raise DataError(f"cell type(s) not in data: {', '.join(sorted(missing))}", key="cell")
        mask = np.isin(self.cell, cells)
        return self.subset(~mask if exclude else mask)

    def select_genes(self, genes: Sequence[str], exclude: bool = False) -> HistoneDataset:
        """Examples of the given genes (or of all others with ``exclude=True``)."""
        mask = np.isin(self.gene, np.asarray(genes).astype(str))
        return self.subset(~mask if exclude else mask)

    def without_target(self) -> HistoneDataset:
        """A copy without ``y`` (what a prediction-only file looks like)."""
        return replace(self, y=None, meta=dict(self.meta))

    @staticmethod
    def concat(parts: Sequence[HistoneDataset]) -> HistoneDataset:
        """Concatenate datasets with the same marks, bins and target transform."""
        parts = list(parts)
        if not parts:
            raise DataError("nothing to concatenate")
        first = parts[0]
        for p in parts[1:]:
            if p.marks != first.marks or p.n_bins != first.n_bins:
                raise DataError("cannot concatenate datasets with different marks or bins")
            if (p.y is None) != (first.y is None):
                raise DataError("cannot concatenate datasets with and without targets")
        return HistoneDataset(
            X=np.concatenate([p.X for p in parts]),
            y=None if first.y is None else np.concatenate([p.y for p in parts]),
            cell=np.concatenate([p.cell for p in parts]),
            gene=np.concatenate([p.gene for p in parts]),
            marks=first.marks,
            target=first.target,
            meta=dict(first.meta),
        )
