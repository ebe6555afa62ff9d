"""Input checks shared by every reader, writer and converter.

Each check raises :class:`~histexpr.errors.DataError` with one line naming the
file, the key (array, cell type or gene) and the problem, and points at the
first offending example so that a user can find it in the file. Checks work on
one block (e.g. one cell type) at a time, so they stream with the readers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from histexpr.data.dataset import MARKS, N_BINS, HistoneDataset, check_mark_names
from histexpr.errors import DataError

_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: How many offending ids an error message lists before "...".
_SHOW = 3


def _preview(items) -> str:
    items = [str(i) for i in items]
    more = ", ..." if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def one_line(exc: BaseException) -> str:
    """First line of an exception's message (library errors can span several lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _at(index: tuple, genes: Sequence[str] | None, marks: Sequence[str] | None = None) -> str:
    """Human-readable location of element ``index`` of an (n, marks, bins) array.

    The gene by id and the mark by name when known, after its position
    (``gene ENSG..., mark 3, bin 10 (H3K4me3)``).
    """
    row = int(index[0])
    who = f"gene {genes[row]}" if genes is not None and len(genes) > row else f"row {row}"
    rest = "".join(f", {n} {int(i)}" for n, i in zip(("mark", "bin"), index[1:], strict=False))
    if len(index) > 1 and marks is not None and len(marks) > int(index[1]):
        rest += f" ({marks[int(index[1])]})"
    return who + rest


def check_counts(
    X: np.ndarray,
    path=None,
    key: str | None = None,
    n_marks: int | None = len(MARKS),
    n_bins: int | None = N_BINS,
    genes: Sequence[str] | None = None,
    marks: Sequence[str] | None = None,
) -> None:
    """Check binned read counts: shape, finiteness and sign.

    Errors name the gene (``genes``) and the mark (``marks``) by name when given.

    Parameters
    ----------
    X : np.ndarray, shape (n_genes, n_marks, n_bins)
        Counts of one block (any float or integer dtype).
    path, key : optional
        File and key named in the error message.
    n_marks, n_bins : int or None
        Expected sizes of axes 1 and 2 (None: any).
    genes : sequence of str, shape (n_genes,), optional
        Gene ids, to name the first offending gene instead of its row.

    Raises
    ------
    DataError
        On a wrong shape or bin count, NaN/inf, or a negative count.
    """
    X = np.asarray(X)
    if X.ndim != 3:
        raise DataError(
            f"expected a 3-d (genes, marks, bins) array, got shape {X.shape}", path, key
        )
    if n_marks is not None and X.shape[1] != n_marks:
        raise DataError(f"expected {n_marks} marks, found {X.shape[1]}", path, key)
    if n_bins is not None and X.shape[2] != n_bins:
        raise DataError(f"expected {n_bins} bins, found {X.shape[2]}", path, key)
    if X.dtype.kind not in "fiub":
        raise DataError(f"counts must be numeric, got dtype {X.dtype}", path, key)
    if X.size == 0:
        return
    if X.dtype.kind == "f":
        bad = ~np.isfinite(X)
        if bad.any():
            where = tuple(np.argwhere(bad)[0])
            raise DataError(f"NaN or infinite count at {_at(where, genes, marks)}", path, key)
        if X.dtype.itemsize > 4 and np.abs(X).max() > _FLOAT32_MAX:
            # would silently become inf in the float32 dataset
            where = tuple(np.argwhere(np.abs(X) > _FLOAT32_MAX)[0])
            raise DataError(
                f"count too large for float32 at {_at(where, genes, marks)}: "
                f"{X[where].item():.3g} > {_FLOAT32_MAX:.3g}",
                path,
                key,
            )
    if X.dtype.kind != "u" and X.min() < 0:
        where = tuple(np.argwhere(X < 0)[0])
        raise DataError(f"negative count at {_at(where, genes, marks)}", path, key)


def check_target(
    y: np.ndarray, n: int | None = None, path=None, key: str | None = None, genes=None
) -> None:
    """Check an expression target: 1-d, ``n`` long and finite.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
    n : int, optional
        Expected length.
    """
    y = np.asarray(y)
    if y.ndim != 1 or (n is not None and y.shape[0] != n):
        raise DataError(f"target has shape {y.shape}, expected ({n},)", path, key)
    if y.dtype.kind not in "fiub":
        raise DataError(f"target must be numeric, got dtype {y.dtype}", path, key)
    bad = ~np.isfinite(y.astype(np.float64, copy=False))
    if bad.any():
        raise DataError(f"NaN or infinite target at {_at((np.argmax(bad),), genes)}", path, key)


def check_constant_over_bins(
    values: np.ndarray, what: str, path=None, key: str | None = None, genes=None
) -> None:
    """Check that a per-gene value repeated on every bin is the same on all bins.

    Parameters
    ----------
    values : np.ndarray, shape (n_genes, n_bins)
        E.g. the expression column of the course npz.
    what : str
        Name of the value in the error message ("expression", "gene id").
    """
    values = np.asarray(values)
    if values.size == 0:
        return
    first = values[:, :1]
    # NaN on every bin counts as constant; a NaN target is rejected by check_target.
    same = (values == first) | (np.isnan(values) & np.isnan(first))
    bad = ~same.all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        b = int(np.argmax(~same[row]))
        raise DataError(
            f"{what} varies across the bins of {_at((row,), genes)} "
            f"(bin 0: {values[row, 0].item()!r}, bin {b}: {values[row, b].item()!r})",
            path,
            key,
        )


def check_marks(marks: Sequence[str], path=None, expected: Sequence[str] | None = MARKS) -> None:
    """Check mark names against an expected order (None: any valid, unique names).

    Raises
    ------
    DataError
        On unknown or duplicated mark names, missing marks, or another order.
    """
    if expected is None:
        check_mark_names(marks, path)
        return
    marks = [str(m) for m in marks]
    expected = list(expected)
    unknown = [m for m in marks if m not in expected]
    if unknown:
        raise DataError(
            f"unknown mark name(s) {_preview(unknown)} (known: {', '.join(expected)})",
            path,
            "marks",
        )
    dup = sorted({m for m in marks if marks.count(m) > 1})
    if dup:
        raise DataError(f"duplicated mark name(s) {_preview(dup)}", path, "marks")
    missing = [m for m in expected if m not in marks]
    if missing:
        raise DataError(f"missing mark(s) {_preview(missing)}", path, "marks")
    if marks != expected:
        raise DataError(
            f"unknown mark order {', '.join(marks)}; expected {', '.join(expected)}",
            path,
            "marks",
        )


def check_unique_genes(genes: Sequence[str], path=None, key: str | None = None) -> None:
    """Check that gene ids within one block (one cell type) are unique."""
    s = pd.Series(np.asarray(genes).astype(str))
    dup = s[s.duplicated()]
    if len(dup):
        raise DataError(
            f"duplicated gene id(s) {_preview(pd.unique(dup))} ({len(dup)} repeat(s))", path, key
        )


def check_unique_examples(cell: Sequence[str], gene: Sequence[str], path=None) -> None:
    """Check that no (cell type, gene) pair occurs twice.

    Parameters
    ----------
    cell, gene : sequence of str, shape (n,)
    """
    df = pd.DataFrame({"cell": np.asarray(cell).astype(str), "gene": np.asarray(gene).astype(str)})
    dup = df[df.duplicated()]
    if len(dup):
        first = dup.iloc[0]
        raise DataError(
            f"duplicated example(s): gene {first.gene} occurs more than once "
            f"({len(dup)} repeat(s) in all)",
            path,
            str(first.cell),
        )


def check_keys(available: Sequence[str], requested: Sequence[str] | None, path=None) -> list[str]:
    """Resolve requested keys (cell types) against those present in a file.

    Returns
    -------
    list of str
        ``requested`` in its order, or all ``available`` when None.
    """
    available = [str(a) for a in available]
    if requested is None:
        return available
    requested = [str(r) for r in requested]
    dup = sorted({r for r in requested if requested.count(r) > 1})
    if dup:
        raise DataError(f"cell type(s) requested twice: {_preview(dup)}", path, "cells")
    missing = [r for r in requested if r not in available]
    if missing:
        raise DataError(
            f"cell type(s) not in file: {_preview(missing)} (file has {len(available)}: "
            f"{_preview(available)})",
            path,
            missing[0],
        )
    return requested


def check_cells(requested, known, what: str = "cell type") -> list[str]:
    """Refuse cell ids that are not among ``known``, listing the known ones.

    The one check behind every ``--cells`` / ``--exclude-cells`` / ``--unseen``
    option: a typo is an error, never an empty or silently unfiltered selection.

    Parameters
    ----------
    requested : sequence of str
        Cell ids asked for.
    known : sequence of str
        Cell ids that exist (in the data, or recorded with the model).
    what : str
        Names the option or role in the message, e.g. ``"--exclude-cells"``.

    Returns
    -------
    list of str
        ``requested`` as strings, in its order.
    """
    requested = [str(r) for r in requested]
    known = [str(k) for k in known]
    missing = [r for r in requested if r not in set(known)]
    if missing:
        shown = ", ".join(known[:12]) + (f", ... ({len(known)} in all)" if len(known) > 12 else "")
        raise DataError(
            f"{what}: unknown cell type(s) {_preview(missing)}; known: {shown or 'none'}"
        )
    return requested


def validate_dataset(
    ds: HistoneDataset,
    path=None,
    marks: Sequence[str] | None = None,
    n_bins: int | None = N_BINS,
    unique: bool = True,
) -> HistoneDataset:
    """Run every check on an in-memory dataset; return it unchanged.

    Parameters
    ----------
    ds : HistoneDataset
    path : optional
        File named in error messages.
    marks : sequence of str or None
        Required mark order (None: any valid, unique mark names).
    n_bins : int or None
        Required number of bins (None: any).
    unique : bool
        Check that no (cell type, gene) pair repeats (streaming callers check
        this once over all blocks instead).
    """
    check_marks(ds.marks, path, expected=marks)
    if len(ds) == 0:
        return ds
    key = ds.cells[0] if len(ds.cells) == 1 else None
    check_counts(
        ds.X, path, key, n_marks=len(ds.marks), n_bins=n_bins, genes=ds.gene, marks=ds.marks
    )
    if ds.y is not None:
        check_target(ds.y, len(ds), path, key, genes=ds.gene)
    empty = np.char.str_len(ds.gene) == 0
    if empty.any():
        raise DataError(f"empty gene id at row {int(np.argmax(empty))}", path, key)
    if unique:
        check_unique_examples(ds.cell, ds.gene, path)
    return ds
