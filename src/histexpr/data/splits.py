"""Train/valid/test splits by gene and by cell type.

A gene split keeps every example of a gene (in all cell types) on one side, so
that a model is never tested on a gene it saw in another cell type. A cell-type
split holds out whole cell types, the setting of the course's 6 unseen cells.

Gene split methods
------------------
``"random"``
    A seeded permutation of the sorted distinct gene ids.
``"deepchrome"``
    DeepChrome's contiguous split of its gene list (6601 / 6601 / 6600 genes).
``"chromosome"``
    Whole chromosomes held out (GENCODE v10 TSS table), which also rules out
    leakage between neighbouring genes that share regulatory regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from histexpr.data.dataset import HistoneDataset
from histexpr.errors import DataError

GENE_SPLITS: tuple[str, ...] = ("train", "valid", "test")
DEFAULT_VALID_CHROMS: tuple[str, ...] = ("chr8", "chr9")
DEFAULT_TEST_CHROMS: tuple[str, ...] = ("chr1",)


@dataclass(frozen=True, eq=False)
class GeneSplit:
    """Disjoint gene ids per part.

    Attributes
    ----------
    train, valid, test : np.ndarray, shape (n_part,), str
        Gene ids, sorted.
    method : str
        How the split was made.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    method: str = "random"

    def parts(self) -> dict[str, np.ndarray]:
        """``{"train": ..., "valid": ..., "test": ...}``."""
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def part_of(self, genes) -> np.ndarray:
        """Part name of every gene (``""`` for genes outside the split).

        Parameters
        ----------
        genes : array-like of str, shape (n,)

        Returns
        -------
        np.ndarray, shape (n,), str
        """
        genes = np.asarray(genes).astype(str)
        out = np.full(genes.shape, "", dtype="<U5")
        for name, ids in self.parts().items():
            out[np.isin(genes, ids)] = name
        return out


@dataclass(frozen=True)
class CellSplit:
    """Training cell types and held-out cell types."""

    train_cells: tuple[str, ...]
    test_cells: tuple[str, ...]


def _to_ensg(genes: np.ndarray) -> np.ndarray:
    """Course-style integer ids ("3") become ENSG ids; ENSG ids are kept."""
    digits = np.char.isdigit(genes)
    out = genes.astype(object)
    out[digits] = ["ENSG" + g.zfill(11) for g in genes[digits]]
    return out.astype(str)


def _unknown(genes: np.ndarray, known, what: str) -> None:
    lost = genes[~np.isin(genes, np.asarray(list(known)))]
    if len(lost):
        raise DataError(f"{len(lost)} gene(s) not in {what} (first {lost[0]})", key="gene")


def split_genes(
    genes: Sequence[str],
    method: str = "random",
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    valid_chroms: Sequence[str] = DEFAULT_VALID_CHROMS,
    test_chroms: Sequence[str] = DEFAULT_TEST_CHROMS,
) -> GeneSplit:
    """Split distinct gene ids into train / valid / test.

    Parameters
    ----------
    genes : sequence of str
        Gene ids (repeats, e.g. one per cell type, are collapsed).
    method : {"random", "deepchrome", "chromosome"}
        See the module docstring.
    valid_fraction, test_fraction : float
        Part sizes for ``"random"`` (rounded to whole genes).
    seed : int
        Seed for ``"random"``.
    valid_chroms, test_chroms : sequence of str
        Held-out chromosomes for ``"chromosome"``.

    Returns
    -------
    GeneSplit
    """
    uniq = np.unique(np.asarray(genes).astype(str))
    if method == "random":
        if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1) or (
            valid_fraction + test_fraction >= 1
        ):
            raise DataError(
                f"fractions valid={valid_fraction}, test={test_fraction} must be >= 0 "
                "and sum to less than 1",
                key="split",
            )
        perm = uniq[np.random.default_rng(seed).permutation(len(uniq))]
        n_test = round(test_fraction * len(uniq))
        n_valid = round(valid_fraction * len(uniq))
        test, valid, train = (
            perm[:n_test],
            perm[n_test : n_test + n_valid],
            perm[n_test + n_valid :],
        )
    elif method == "deepchrome":
        from histexpr.data.reference import deepchrome_genes, deepchrome_split

        order = np.asarray(deepchrome_genes())
        ensg = _to_ensg(uniq)
        _unknown(ensg, order, "DeepChrome's gene list")
        # The 7 repeated genes sit on adjacent rows of one part, so any row decides.
        part = {}
        for name, rows in deepchrome_split().items():
            part.update(dict.fromkeys(order[rows].tolist(), name))
        label = np.array([part[g] for g in ensg])
        train, valid, test = (uniq[label == p] for p in GENE_SPLITS)
    elif method == "chromosome":
        from histexpr.data.reference import load_tss

        valid_chroms, test_chroms = list(valid_chroms), list(test_chroms)
        both = set(valid_chroms) & set(test_chroms)
        if both:
            raise DataError(f"chromosome(s) {sorted(both)} both valid and test", key="split")
        tss = load_tss().drop_duplicates("gene_id").set_index("gene_id")["chrom"]
        ensg = _to_ensg(uniq)
        _unknown(ensg, tss.index, "the GENCODE v10 TSS table")
        chrom = tss.reindex(ensg).to_numpy().astype(str)
        is_valid = np.isin(chrom, valid_chroms)
        is_test = np.isin(chrom, test_chroms)
        train, valid, test = uniq[~is_valid & ~is_test], uniq[is_valid], uniq[is_test]
    else:
        raise DataError(
            f"unknown split method {method!r} (random, deepchrome, chromosome)", key="split"
        )
    return GeneSplit(np.sort(train), np.sort(valid), np.sort(test), method=method)


#: The draws of :func:`holdout_mask`. Each is kept because models trained with it
#: must train the same after this code moved here (bit-identical non-neural
#: predictions, neural ones within float tolerance); a new caller takes the default.
HOLDOUT_DRAWS: tuple[str, ...] = ("first", "folds", "choice")


def holdout_mask(
    gene,
    fraction: float,
    seed: int | np.random.Generator = 0,
    *,
    draw: str = "first",
    min_held: float = 0,
) -> np.ndarray:
    """The one gene hold-out: which examples belong to a random ``fraction`` of the genes.

    Every example of a gene (in all cell types) lands on the same side, and the draw
    depends only on the distinct gene ids and ``seed``, not on their order.

    Parameters
    ----------
    gene : array-like of str, shape (n,)
        The gene of every example (repeats, e.g. one per cell type, share a side).
    fraction : float
        Share of the distinct genes held out, in [0, 1).
    seed : int or np.random.Generator
        Seeds the draw; a Generator is drawn from (and advanced), so a caller that
        goes on drawing from it keeps one stream.
    draw : {"first", "folds", "choice"}
        ``"first"``: the first ``round(fraction * n_genes)`` genes of a seeded
        permutation of the sorted ids (:func:`split_genes`' ``"random"`` valid part);
        ``"folds"``: fold 0 of ``round(1 / fraction)`` gene folds (:func:`gene_fold_of`),
        the early-stopping genes of the LightGBM kinds; ``"choice"``:
        ``min(n_genes - 1, max(1, round(fraction * n_genes)))`` genes drawn by
        ``Generator.choice`` (the neural kinds' early-stopping genes), so at least
        one gene is held out and one kept.
    min_held : float
        Hold out nothing when ``fraction * n_genes`` is below this (too few genes for
        the held-out score to mean anything).

    Returns
    -------
    np.ndarray, shape (n,), bool
        True for the examples of the held-out genes.
    """
    gene = np.asarray(gene).astype(str)
    if not 0 <= fraction < 1:
        raise DataError(f"hold-out fraction {fraction} must be in [0, 1)", key="split")
    if draw not in HOLDOUT_DRAWS:
        raise ValueError(f"draw {draw!r} not in {HOLDOUT_DRAWS}")
    uniq = np.unique(gene)
    if fraction == 0 or len(uniq) * fraction < min_held:
        return np.zeros(len(gene), dtype=bool)
    if draw == "folds":
        return gene_fold_of(gene, round(1 / fraction), seed=seed) == 0
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if draw == "first":
        held = uniq[rng.permutation(len(uniq))[: round(fraction * len(uniq))]]
    else:
        n_held = min(len(uniq) - 1, max(1, round(fraction * len(uniq)))) if len(uniq) > 1 else 0
        held = rng.choice(uniq, n_held, replace=False)
    return np.isin(gene, held)


def hold_out_genes(
    data: HistoneDataset, fraction: float, seed: int = 0
) -> tuple[HistoneDataset, HistoneDataset]:
    """Split ``data`` by gene into (train, valid): a random ``fraction`` of the genes is valid.

    The ``"first"`` draw of :func:`holdout_mask` (the valid part of :func:`split_genes`
    with ``method="random"`` and no test genes).
    """
    held = holdout_mask(data.gene, fraction, seed)
    return data.subset(np.flatnonzero(~held)), data.subset(np.flatnonzero(held))


def holdout_cells(cells: Sequence[str], holdout: Sequence[str] | None = None) -> CellSplit:
    """Hold out some cell types.

    Parameters
    ----------
    cells : sequence of str
        All cell types.
    holdout : sequence of str, optional
        Cell types to hold out (default: the course's 6 unseen cells).
    """
    if holdout is None:
        from histexpr.data.reference import UNSEEN_CELLS

        holdout = UNSEEN_CELLS
    cells = list(dict.fromkeys(str(c) for c in cells))
    holdout = [str(c) for c in holdout]
    missing = [c for c in holdout if c not in cells]
    if missing:
        raise DataError(f"held-out cell type(s) not in data: {', '.join(missing)}", key="cells")
    train = tuple(c for c in cells if c not in holdout)
    if not train:
        raise DataError("no cell type left for training", key="cells")
    return CellSplit(train, tuple(c for c in cells if c in holdout))


def cell_folds(cells: Sequence[str], k: int = 3, seed: int = 0) -> list[tuple[str, ...]]:
    """Partition cell types into ``k`` folds of balanced size.

    Fold sizes differ by at most one; each fold is sorted; the assignment is
    fixed by ``seed`` and independent of the order of ``cells``.

    Returns
    -------
    list of tuple of str, length k
    """
    uniq = np.unique(np.asarray(list(cells)).astype(str))
    if k < 2 or k > len(uniq):
        raise DataError(f"k={k} folds need 2 <= k <= {len(uniq)} cell types", key="k")
    perm = uniq[np.random.default_rng(seed).permutation(len(uniq))]
    return [tuple(sorted(perm[i::k].tolist())) for i in range(k)]


def gene_folds(genes: Sequence[str], k: int, seed: int = 0) -> list[np.ndarray]:
    """Partition distinct gene ids into ``k`` folds of balanced size (cross-validation by gene).

    Every example of a gene (in all cell types) lands in one fold; fold sizes differ by
    at most one; the assignment is a seeded permutation of the sorted ids, so it does not
    depend on the order of ``genes``.

    Returns
    -------
    list of np.ndarray of str, length k
        The sorted gene ids of each fold.
    """
    uniq = np.unique(np.asarray(genes).astype(str))
    if k < 2 or k > len(uniq):
        raise DataError(f"k={k} gene folds need 2 <= k <= {len(uniq)} genes", key="k")
    fold = gene_fold_of(uniq, k, seed)
    return [uniq[fold == i] for i in range(k)]


def gene_fold_of(gene, k: int, seed: int = 0) -> np.ndarray:
    """Fold number (0..k-1) of every example; all examples of a gene share a fold.

    The one assignment of genes to folds (:func:`gene_folds` lists it by fold): the
    ``j``-th gene of a seeded permutation of the sorted ids goes to fold ``j % k``.

    Parameters
    ----------
    gene : np.ndarray, shape (n,), str
    k : int
    seed : int

    Returns
    -------
    np.ndarray, shape (n,), int64
    """
    genes, inverse = np.unique(np.asarray(gene).astype(str), return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(genes))
    fold_of_gene = np.empty(len(genes), dtype=np.int64)
    fold_of_gene[order] = np.arange(len(genes)) % k
    return fold_of_gene[inverse]


def apply_split(ds: HistoneDataset, split: GeneSplit | CellSplit) -> dict[str, HistoneDataset]:
    """Split a dataset.

    Returns
    -------
    dict
        ``{"train", "valid", "test"}`` for a :class:`GeneSplit`;
        ``{"train", "test"}`` for a :class:`CellSplit`.
    """
    if isinstance(split, GeneSplit):
        part = split.part_of(ds.gene)
        return {name: ds.subset(np.flatnonzero(part == name)) for name in GENE_SPLITS}
    if isinstance(split, CellSplit):
        return {
            "train": ds.subset(np.flatnonzero(np.isin(ds.cell, split.train_cells))),
            "test": ds.subset(np.flatnonzero(np.isin(ds.cell, split.test_cells))),
        }
    raise TypeError(f"not a split: {type(split).__name__}")
