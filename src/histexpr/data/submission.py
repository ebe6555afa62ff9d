"""Prediction tables: the tidy form and the course submission format.

Tidy form (the default output of ``histexpr predict``): one row per example with
columns ``cell``, ``gene`` and the prediction (``prediction`` for regression,
``probability_high`` -- the probability of above-median expression -- for a
classifier), then any per-example flag columns a model reports (e.g. whether an
atlas was used). Written as CSV, as tab-separated text when the path ends in
``.tsv`` or ``.tab``, or as Parquet when it ends in ``.parquet``. Any cell id is allowed.

:func:`write_table` is the one writer of every table a command writes (``predict``,
``evaluate``, their ``--pair`` forms): the suffix of the path picks the format.

Submission form (``--format submission``, the course's): two columns, ``id`` =
``{cell}_{gene id}`` (e.g. ``E003_3``) and ``expression`` (the prediction, on the
scale of the training target; ``probability_high`` for a classifier). Every id
occurs once and every prediction is finite; a cell id containing ``_`` is refused
there (the id would be ambiguous).

Every output names what it holds: :func:`value_column` is the one place that names
the prediction column of each output (tidy, submission, pair) by what the model
predicts -- expression, the probability of above-median expression, or a log fold
change.
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


#: Prediction column of each output (tidy, submission, pair) by the model's task.
OUTPUT_COLUMNS: dict[str, dict[str, str]] = {
    "regression": {"tidy": "prediction", "submission": "expression", "pair": "predicted_lfc"},
    "classification": {
        "tidy": "probability_high",
        "submission": "probability_high",
        # a difference of two probabilities is not a log fold change
        "pair": "probability_high_difference",
    },
}


def value_column(task: str, output: str = "tidy") -> str:
    """The name of the prediction column of ``output`` for a model of ``task``.

    Parameters
    ----------
    task : {"regression", "classification"}
    output : {"tidy", "submission", "pair"}
    """
    try:
        return OUTPUT_COLUMNS[task][output]
    except KeyError:
        raise DataError(f"no prediction column for task {task!r} in output {output!r}") from None


def output_gene_ids(gene, meta: dict | None = None) -> np.ndarray:
    """Gene ids as every output of predictions writes them (tidy CSV/Parquet, pair).

    Canonical (``ENSG`` + 11 digits) in memory; data read from the course npz keep its
    integer ids (``"938"``), so that one input gives ids of one type in all outputs.
    """
    from histexpr.data.dataset import canonical_gene_ids, course_gene_ids

    if (meta or {}).get("source_format") == "npz":
        return course_gene_ids(gene)
    return canonical_gene_ids(gene)


#: Suffixes of tab-separated tables (any other suffix but Parquet's is CSV).
TSV_SUFFIXES = (".tsv", ".tab")


def table_sep(path) -> str:
    """The field separator of a text table at ``path``: a tab for ``.tsv``/``.tab``."""
    return "\t" if Path(path).suffix.lower() in TSV_SUFFIXES else ","


def write_table(df: pd.DataFrame, path, float_format: str | None = None) -> Path:
    """Write a table atomically in the format its suffix names: Parquet for ``.parquet``
    (``.pq``), tab-separated for ``.tsv``/``.tab``, else CSV.

    ``float_format=None`` writes floats at full precision (read back identical)."""
    if is_parquet(path):
        try:
            import pyarrow  # noqa: F401
        except ImportError:  # pragma: no cover - pyarrow is a dependency
            raise DataError("writing Parquet needs pyarrow (pip install pyarrow)", path) from None
        with atomic_path(path, suffix=".parquet") as tmp:
            df.to_parquet(tmp, index=False)
    else:
        with atomic_path(path, suffix=Path(path).suffix or ".csv") as tmp:
            df.to_csv(tmp, index=False, sep=table_sep(path), float_format=float_format)
    return Path(path)


def _check(df: pd.DataFrame, path) -> None:
    column = df.columns[1]
    pred = df[column].to_numpy()
    bad = ~np.isfinite(pred)
    if bad.any():
        raise DataError(
            f"NaN or infinite prediction for id {df['id'].iloc[int(np.argmax(bad))]}",
            path,
            column,
        )
    dup = df["id"].duplicated()
    if dup.any():
        raise DataError(
            f"id {df['id'][dup].iloc[0]} occurs more than once ({int(dup.sum())} repeat(s))",
            path,
            "id",
        )


def write_submission(pred, cell, gene, path, column: str = "expression") -> Path:
    """Write predictions as a submission CSV (atomically).

    Parameters
    ----------
    pred : array-like of float, shape (n,)
    cell, gene : array-like of str, shape (n,)
    path : str or PathLike
    column : str
        Name of the prediction column (:func:`value_column`: ``expression``, or
        ``probability_high`` for a classifier).

    Raises
    ------
    DataError
        On NaN/inf predictions, duplicated ids or mismatched lengths.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    ids = submission_ids(cell, gene)
    if pred.shape != ids.shape:
        raise DataError(f"{pred.shape[0]} predictions for {ids.shape[0]} ids", path, column)
    df = pd.DataFrame({"id": ids, column: pred})
    _check(df, path)
    # repr-precision floats: reading back gives the identical float64 values.
    return write_table(df, path)


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
        # round_trip: pandas < 3 parses the 17 written digits to the nearest double
        # only with this flag (its fast parser can be 1 ulp off)
        df = pd.read_csv(path, dtype={"id": str}, sep=table_sep(path), float_precision="round_trip")
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


#: Key columns of the tidy form.
TIDY_KEYS: tuple[str, ...] = ("cell", "gene")
#: Name of the prediction column by task.
VALUE_COLUMNS: dict[str, str] = {task: out["tidy"] for task, out in OUTPUT_COLUMNS.items()}


def prediction_table(
    pred, cell, gene, value: str = "prediction", flags: dict | None = None
) -> pd.DataFrame:
    """The tidy table of predictions, checked (finite, one row per cell and gene).

    Parameters
    ----------
    pred : array-like of float, shape (n,)
    cell, gene : array-like of str, shape (n,)
    value : str
        Name of the prediction column (see :data:`VALUE_COLUMNS`).
    flags : dict of str to array-like, shape (n,), optional
        Extra per-example columns, e.g. ``{"atlas_used": ...}``.

    Returns
    -------
    pd.DataFrame
        Columns ``cell``, ``gene``, ``value``, then the flags.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    cell = np.asarray(cell).astype(str)
    gene = np.asarray(gene).astype(str)
    if not pred.shape == cell.shape == gene.shape:
        raise DataError(
            f"{pred.shape[0]} predictions for {cell.shape[0]} cells and {gene.shape[0]} genes",
            key=value,
        )
    df = pd.DataFrame({"cell": cell, "gene": gene, value: pred})
    for name, column in (flags or {}).items():
        column = np.asarray(column).reshape(-1)
        if column.shape != pred.shape:
            raise DataError(f"{column.shape[0]} values for {pred.shape[0]} rows", key=name)
        df[name] = column
    bad = ~np.isfinite(pred)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"NaN or infinite prediction for gene {gene[i]}", key=cell[i])
    dup = df.duplicated(list(TIDY_KEYS))
    if dup.any():
        first = df[dup].iloc[0]
        raise DataError(
            f"gene {first.gene} occurs more than once ({int(dup.sum())} repeat(s))",
            key=str(first.cell),
        )
    return df


def is_parquet(path) -> bool:
    """Whether a path names a Parquet file (by its suffix)."""
    return Path(path).suffix.lower() in (".parquet", ".pq")


def write_predictions(table: pd.DataFrame, path) -> Path:
    """Write a tidy prediction table atomically (:func:`write_table`).

    Floats are written at full precision: reading back gives the same float64 values.
    """
    return write_table(table, path)


def read_predictions(path) -> pd.DataFrame:
    """Read a tidy prediction table (CSV or Parquet); cell and gene ids as strings."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path)
    try:
        if is_parquet(path):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(
                path,
                dtype={"cell": str, "gene": str},
                sep=table_sep(path),
                float_precision="round_trip",
            )
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"unreadable prediction table ({str(exc).splitlines()[0]})", path) from None
    missing = [c for c in TIDY_KEYS if c not in df.columns]
    if missing:
        raise DataError(f"no column(s) {', '.join(missing)}; found {list(df.columns)}", path)
    return df
