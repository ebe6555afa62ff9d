"""The one in-memory dataset type of histexpr.

An example is one gene in one cell type: the binned read counts of named marks
(by default the five core histone marks, :data:`MARKS`; any names matching
:data:`MARK_PATTERN`, e.g. ``H3K27ac``, ``DNase``, ``ATAC``, ``CTCF``) in a window of
``n_bins`` bins of ``meta["bin_size"]`` bp (default 100) around the gene's TSS, its
expression (when known), and the identifiers of the gene and the cell type.

Target transform
----------------
``y`` is ``log2(RPKM + 1)`` whenever the raw RPKM is known (packaged Roadmap
matrix, DeepChrome CSVs joined with RPKM, the simulator). Files that already
carry a normalised expression value (the course npz) are passed through
unchanged; ``HistoneDataset.target`` records which transform applies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from histexpr._runtime import notice
from histexpr.errors import DataError

#: Canonical mark order (DeepChrome's ``names.csv`` and the course npz columns 1-5): the
#: five core marks, the default of every dataset and the fixed order of those two formats.
MARKS: tuple[str, ...] = ("H3K27me3", "H3K36me3", "H3K4me1", "H3K4me3", "H3K9me3")
CORE_MARKS = MARKS
#: Marks with a known Roadmap name, in the order ``featurize``/``download`` list them; any
#: other name matching :data:`MARK_PATTERN` (e.g. ``CTCF``) is accepted too.
KNOWN_MARKS: tuple[str, ...] = (*MARKS, "H3K27ac", "H3K9ac", "DNase", "ATAC")
#: A mark name: a letter, then up to 39 letters, digits, ``.``, ``_`` or ``-``.
MARK_PATTERN = r"[A-Za-z][A-Za-z0-9._-]{0,39}"
#: Bins per example: 10 kb around the TSS in 100-bp bins.
N_BINS: int = 100
#: Bin width in base pairs.
BIN_SIZE: int = 100

TARGET_LOG2_RPKM = "log2(RPKM+1)"
TARGET_PASSTHROUGH = "as-given"


#: Other histone marks of the Roadmap Epigenomics tracks: recognised by
#: :func:`mark_name` (spelling fixed, near misses refused) but not in the house order.
OTHER_MARKS: tuple[str, ...] = (
    "H2A.Z", "H2AK5ac", "H2AK9ac", "H2BK120ac", "H2BK12ac", "H2BK15ac", "H2BK20ac",
    "H2BK5ac", "H3K14ac", "H3K18ac", "H3K23ac", "H3K23me2", "H3K27me1", "H3K4ac",
    "H3K4me2", "H3K56ac", "H3K79me1", "H3K79me2", "H3K9me1", "H3T11ph", "H4K20me1",
    "H4K5ac", "H4K8ac", "H4K91ac", "H3K9me2", "H3K36me2", "H3K27me2", "H4K20me3",
    "CTCF", "Input",
)  # fmt: skip
#: How close (difflib ratio) an unknown name must be to a known one to be refused as a typo.
_TYPO_CUTOFF = 0.8


def mark_name(name: str, path=None) -> str:
    """The one spelling of a mark name: every entry point that takes mark names uses it.

    A name equal to a known mark (:data:`KNOWN_MARKS`, :data:`OTHER_MARKS`) up to
    case gets that mark's spelling (``H3k4me3`` -> ``H3K4me3``, ``dnase`` ->
    ``DNase``); a name that is not known but close to a known one (``H3K4m3``) is
    refused with "did you mean"; any other name matching :data:`MARK_PATTERN`
    (a custom track, e.g. ``MYB``) is kept as it is.

    Raises
    ------
    DataError
        One line naming the bad name (and the known mark it resembles).
    """
    import difflib

    name = str(name).strip()
    if not re.fullmatch(MARK_PATTERN, name):
        raise DataError(
            f"bad mark name {name!r} (a letter, then letters, digits, '.', '_' or '-')",
            path,
            "marks",
        )
    known = (*KNOWN_MARKS, *OTHER_MARKS)
    by_fold = {m.casefold(): m for m in known}
    if name.casefold() in by_fold:
        return by_fold[name.casefold()]
    close = difflib.get_close_matches(name.casefold(), list(by_fold), n=1, cutoff=_TYPO_CUTOFF)
    if close:
        raise DataError(
            f"unknown mark {name!r}; did you mean {by_fold[close[0]]}? "
            f"(known: {', '.join(KNOWN_MARKS)}, ...)",
            path,
            "marks",
        )
    return name


def check_mark_names(marks: Sequence[str], path=None) -> tuple[str, ...]:
    """Mark names in their one spelling (:func:`mark_name`), unique, at least one.

    Raises
    ------
    DataError
        One line naming the first bad or duplicated name.
    """
    marks = tuple(mark_name(m, path) for m in marks)
    if not marks:
        raise DataError("no mark names", path, "marks")
    dup = sorted({m for m in marks if marks.count(m) > 1})
    if dup:
        raise DataError(f"duplicated mark name(s) {', '.join(dup)}", path, "marks")
    return marks


#: Digits of a canonical human Ensembl gene id (``ENSG`` + 11 digits).
GENE_ID_DIGITS = 11
_ENSEMBL_VERSION = re.compile(r"^(ENS[A-Z]*G\d+)\.\d+$")
_NUMERIC_OR_ENSG = re.compile(r"^(?:ENSG)?0*(\d{1,11})$")


def canonical_gene_ids(genes) -> np.ndarray:
    """Gene ids in the one canonical form used everywhere in histexpr.

    - a human Ensembl id or a bare integer becomes ``ENSG`` + 11 digits:
      ``"938"``, ``"000938"``, ``"ENSG938"`` and ``"ENSG00000000938"`` all give
      ``"ENSG00000000938"`` (the course npz stores the integer, HDF5/DeepChrome
      the full id: both name the same gene);
    - an Ensembl version suffix is dropped: ``"ENSG00000000938.12"`` ->
      ``"ENSG00000000938"`` (also for other species, ``ENSMUSG...``);
    - every other id (a gene symbol, ``"RP11-34P13.7"``) is kept verbatim,
      surrounding whitespace removed.

    Parameters
    ----------
    genes : array-like of str, shape (n,)

    Returns
    -------
    np.ndarray, shape (n,), str
    """
    g = np.asarray(genes).astype(str)
    if g.size == 0:
        return g
    n = GENE_ID_DIGITS + 4
    # Fast path: already canonical (the common case, re-checked on every subset).
    if (
        g.dtype.itemsize // 4 == n
        and np.all(np.char.str_len(g) == n)
        and np.all(np.char.startswith(g, "ENSG"))
        and np.all(np.char.find(g, ".") < 0)
    ):
        return g
    uniq, inverse = np.unique(g, return_inverse=True)
    out = []
    for gid in uniq:
        gid = gid.strip()
        m = _ENSEMBL_VERSION.match(gid)
        gid = m.group(1) if m else gid
        m = _NUMERIC_OR_ENSG.match(gid)
        out.append(f"ENSG{int(m.group(1)):0{GENE_ID_DIGITS}d}" if m else gid)
    return np.asarray(out, dtype=str)[inverse.reshape(-1)]


def course_gene_ids(genes) -> np.ndarray:
    """The course's integer form of canonical ids (``"ENSG00000000938"`` -> ``"938"``).

    Used where the course format needs it (npz column 0, submission ids); other
    ids are returned unchanged.
    """
    g = canonical_gene_ids(genes)
    if g.size == 0:
        return g
    uniq, inverse = np.unique(g, return_inverse=True)
    n = GENE_ID_DIGITS + 4
    short = [
        str(int(x[4:])) if len(x) == n and x.startswith("ENSG") and x[4:].isdigit() else x
        for x in uniq
    ]
    return np.asarray(short, dtype=str)[inverse.reshape(-1)]


def order_marks(names: Sequence[str]) -> tuple[str, ...]:
    """Distinct mark names in the house order: :data:`KNOWN_MARKS` first, then the rest.

    Names not in :data:`KNOWN_MARKS` keep their order of first appearance; every name
    is checked with :func:`check_mark_names`.
    """
    distinct = check_mark_names(list(dict.fromkeys(str(m) for m in names)))
    known = [m for m in KNOWN_MARKS if m in distinct]
    return tuple(known + [m for m in distinct if m not in KNOWN_MARKS])


def conform_marks(
    data: HistoneDataset, marks: Sequence[str], allow_missing: bool = False, source: str = "input"
) -> HistoneDataset:
    """``data`` in a model's marks and order, selected by name (the model contract).

    Extra marks are dropped with a warning naming them; a missing mark is a
    :class:`~histexpr.errors.DataError` naming it, unless ``allow_missing`` (a model
    trained with mark dropout): then it is filled with zeros, listed in
    ``meta["missing_marks"]`` and named in a warning.
    """

    marks = tuple(marks)
    if tuple(data.marks) == marks:
        return data
    missing = [m for m in marks if m not in data.marks]
    if missing and not allow_missing:
        raise DataError(
            f"{source}: missing mark(s) {', '.join(missing)} the model was trained on "
            f"(data has {', '.join(data.marks)}; train with --set mark_dropout=p to allow it)"
        )
    out = data.select_marks(marks, allow_missing=True)
    if out.meta["dropped_marks"]:
        notice(
            f"{source}: mark(s) {', '.join(out.meta['dropped_marks'])} not used by the model; "
            "dropped",
            stacklevel=2,
        )
    if missing:
        notice(
            f"{source}: mark(s) {', '.join(missing)} missing; predicted without them "
            "(mark-dropout model)",
            stacklevel=2,
        )
    return out


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
        Gene id of each example in the canonical form of :func:`canonical_gene_ids`
        (applied on construction, so every reader agrees): ``"ENSG00000000003"``
        whether the file said ``3``, ``ENSG3`` or ``ENSG00000000003.5``.
    marks : tuple of str
        Mark names in the order of axis 1 of ``X``.
    target : str
        Description of the target transform.
    split : np.ndarray, shape (n_examples,), str, or None
        The published split of each example (e.g. ``"train"``, ``"valid"``, ``"test"``:
        the DeepChrome file it came from), None when the data has none; see
        :meth:`select_split`.
    """

    X: np.ndarray
    y: np.ndarray | None
    cell: np.ndarray
    gene: np.ndarray
    marks: tuple[str, ...] = MARKS
    target: str = TARGET_LOG2_RPKM
    meta: dict = field(default_factory=dict)
    split: np.ndarray | None = None

    def __post_init__(self):
        self.X = np.asarray(self.X, dtype=np.float32)
        if self.X.ndim != 3:
            raise DataError(f"X must have shape (n, marks, bins), got {self.X.shape}", key="X")
        n = self.X.shape[0]
        self.cell = np.asarray(self.cell).astype(str)
        self.gene = canonical_gene_ids(self.gene)
        if self.y is not None:
            self.y = np.asarray(self.y, dtype=np.float32).reshape(-1)
        if self.split is not None:
            self.split = np.asarray(self.split).astype(str).reshape(-1)
        for name, arr in (
            ("y", self.y),
            ("cell", self.cell),
            ("gene", self.gene),
            ("split", self.split),
        ):
            if arr is not None and arr.shape != (n,):
                raise DataError(f"{name} has shape {arr.shape}, expected ({n},)", key=name)
        self.marks = check_mark_names(self.marks)
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
            split=None if self.split is None else self.split[index],
        )

    @property
    def splits(self) -> dict[str, int]:
        """Examples per split name, in order of first appearance ({} without splits)."""
        if self.split is None:
            return {}
        names, first, counts = np.unique(self.split, return_index=True, return_counts=True)
        order = np.argsort(first)
        return {str(names[i]): int(counts[i]) for i in order}

    def select_split(self, names: str | Sequence[str]) -> HistoneDataset:
        """Examples whose ``split`` is ``names`` (one name or several).

        Raises
        ------
        DataError
            When the data has no split field, or a name is not among its splits.
        """
        names = [names] if isinstance(names, str) else [str(n) for n in names]
        if self.split is None:
            raise DataError(
                f"data has no split field, so split {', '.join(names)!r} cannot be selected "
                "(only DeepChrome folders and files converted from them carry one)",
                key="split",
            )
        unknown = [n for n in names if n not in self.splits]
        if unknown:
            raise DataError(
                f"split(s) {', '.join(unknown)} not in data (it has {', '.join(self.splits)})",
                key="split",
            )
        return self.subset(np.isin(self.split, names))

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

    def select_marks(self, names: Sequence[str], allow_missing: bool = False) -> HistoneDataset:
        """The marks ``names`` in that order, selected by name (extra marks are dropped).

        Parameters
        ----------
        names : sequence of str
            Wanted marks, e.g. those a model was trained on.
        allow_missing : bool
            Fill marks absent from the data with zeros (for a model trained with mark
            dropout) instead of failing; their names go to ``meta["missing_marks"]``.

        Returns
        -------
        HistoneDataset
            ``X`` of shape (n, len(names), n_bins); ``meta["dropped_marks"]`` lists the
            marks left out. ``self`` itself when nothing changes.

        Raises
        ------
        DataError
            Naming the missing mark(s) when ``allow_missing`` is False.
        """
        names = check_mark_names(names)
        if names == self.marks:
            return self
        missing = [m for m in names if m not in self.marks]
        if missing and not allow_missing:
            raise DataError(
                f"missing mark(s) {', '.join(missing)} (data has {', '.join(self.marks)})",
                key="marks",
            )
        X = np.zeros((len(self), len(names), self.n_bins), dtype=np.float32)
        for j, m in enumerate(names):
            if m in self.marks:
                X[:, j] = self.X[:, self.marks.index(m)]
        meta = dict(self.meta)
        meta["dropped_marks"] = [m for m in self.marks if m not in names]
        meta["missing_marks"] = missing
        return replace(self, X=X, marks=names, meta=meta)

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
        with_split = [p.split is not None for p in parts]
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
            # parts without a split field get "" (unassigned) when others have one
            split=None
            if not any(with_split)
            else np.concatenate(
                [p.split if p.split is not None else np.full(len(p), "") for p in parts]
            ),
        )
