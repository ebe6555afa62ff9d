"""Prediction CSVs in the course submission format.

Two columns: ``id`` = ``{cell}_{gene id}`` (e.g. ``E003_3``) and ``expression``
(the prediction, on the scale of the training target). Every id occurs once and
every prediction is finite.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr.atomic import atomic_path
from histexpr.errors import DataError

COLUMNS: tuple[str, ...] = ("id", "expression")


def submission_ids(cell, gene) -> np.ndarray:
    """``{cell}_{gene}`` ids.

    Parameters
    ----------
    cell, gene : array-like of str, shape (n,)

    Returns
    -------
    np.ndarray, shape (n,), str
    """
    cell = np.asarray(cell).astype(str)
    gene = np.asarray(gene).astype(str)
    if cell.shape != gene.shape:
        raise DataError(f"cell {cell.shape} and gene {gene.shape} lengths differ", key="id")
    if cell.size and (np.char.find(cell, "_") >= 0).any():
        bad = cell[np.char.find(cell, "_") >= 0][0]
        raise DataError(f"cell id {bad!r} contains '_' (ids would be ambiguous)", key="cell")
    return np.char.add(np.char.add(cell, "_"), gene)


def _check(df: pd.DataFrame, path) -> None:
    pred = df["expression"].to_numpy()
    bad = ~np.isfinite(pred)
    if bad.any():
        raise DataError(
            f"NaN or infinite prediction for id {df['id'].iloc[int(np.argmax(bad))]}",
            path,
            "expression",
        )
    dup = df["id"].duplicated()
    if dup.any():
        raise DataError(
            f"id {df['id'][dup].iloc[0]} occurs more than once ({int(dup.sum())} repeat(s))",
            path,
            "id",
        )


def write_submission(pred, cell, gene, path) -> Path:
    """Write predictions as a submission CSV (atomically).

    Parameters
    ----------
    pred : array-like of float, shape (n,)
    cell, gene : array-like of str, shape (n,)
    path : str or PathLike

    Raises
    ------
    DataError
        On NaN/inf predictions, duplicated ids or mismatched lengths.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    ids = submission_ids(cell, gene)
    if pred.shape != ids.shape:
        raise DataError(f"{pred.shape[0]} predictions for {ids.shape[0]} ids", path, "expression")
    df = pd.DataFrame({"id": ids, "expression": pred})
    _check(df, path)
    with atomic_path(path, suffix=".csv") as tmp:
        # repr-precision floats: reading back gives the identical float64 values.
        df.to_csv(tmp, index=False, float_format=None)
    return Path(path)


def read_submission(path, expected_ids: Collection[str] | None = None) -> pd.DataFrame:
    """Read and validate a submission CSV.

    Parameters
    ----------
    path : str or PathLike
    expected_ids : collection of str, optional
        When given, the file must hold exactly these ids.

    Returns
    -------
    pd.DataFrame
        Columns ``id``, ``expression`` (float64), and ``cell``, ``gene`` split
        from the id at its first ``_``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path)
    try:
        df = pd.read_csv(path, dtype={"id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"malformed CSV ({str(exc).splitlines()[0]})", path) from None
    if tuple(df.columns) != COLUMNS:
        raise DataError(f"columns must be {list(COLUMNS)}, found {list(df.columns)}", path)
    if df["id"].isna().any():
        raise DataError(f"empty id on line {int(df['id'].isna().argmax()) + 2}", path, "id")
    if df["expression"].dtype.kind not in "fiu":
        raise DataError("non-numeric prediction", path, "expression")
    df["expression"] = df["expression"].astype(np.float64)
    _check(df, path)
    ids = df["id"].astype(str)
    no_sep = ~ids.str.contains("_", regex=False)
    if no_sep.any():
        raise DataError(f"id {ids[no_sep].iloc[0]!r} is not of the form cell_gene", path, "id")
    parts = ids.str.split("_", n=1, expand=True)
    df["cell"] = parts[0].astype(str)
    df["gene"] = parts[1].astype(str)
    if expected_ids is not None:
        expected = set(map(str, expected_ids))
        have = set(ids)
        lost, extra = sorted(expected - have), sorted(have - expected)
        if lost:
            raise DataError(f"{len(lost)} expected id(s) missing (first {lost[0]})", path, "id")
        if extra:
            raise DataError(f"{len(extra)} unexpected id(s) (first {extra[0]})", path, "id")
    return df
