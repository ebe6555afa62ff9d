"""The two matrix files of deepTools ``computeMatrix reference-point`` (deepTools 3.5).

``-out matrix.gz`` (``heatmapper.save_matrix``, gzipped)
    First line ``@`` + a JSON header: ``upstream``, ``downstream``, ``body``,
    ``bin size``, ``ref point``, ``unscaled 5 prime``/``3 prime`` (one value per
    sample since deepTools 3.0, a single value before), ``sample_labels``,
    ``sample_boundaries`` (column offsets of the samples), ``group_labels`` and
    ``group_boundaries``. Then one tab-separated row per region: chrom, start, end,
    name, score, strand and the values of every sample's bins (``%f``; ``nan`` for
    bins without data).
``--outFileNameMatrix matrix.tab`` (``heatmapper.save_matrix_values``, plain text)
    ``#group:count`` fields, ``#downstream:[...]<TAB>upstream:[...]<TAB>body:[...]<TAB>bin
    size:[...]<TAB>unscaled 5 prime:[...]<TAB>unscaled 3 prime:[...]``, a line of the group
    fields followed by one sample label per column, then the values (``%.4g``). It has no
    region names: they come from the ``--outFileSortedRegions`` BED (``save_BED``) written
    beside it (``regions=``; default: the matrix name with its last suffix replaced by
    ``.bed``).

Only reference-point matrices around the TSS are accepted (``body`` 0, ``ref point``
TSS), with the same upstream/downstream/bin size for every sample.
:mod:`histexpr.data.deeptools` turns matrices into a dataset.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr.errors import DataError

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Matrix:
    """One computeMatrix file.

    Attributes
    ----------
    path : Path
    labels : tuple of str
        Sample labels, shape (n_samples,).
    values : np.ndarray, shape (n_regions, n_samples, n_bins), float64
        NaN where deepTools wrote ``nan``.
    names : np.ndarray, shape (n_regions,), str
        Region names (gene ids).
    upstream, downstream, bin_size : int
    """

    path: Path
    labels: tuple[str, ...]
    values: np.ndarray
    names: np.ndarray
    upstream: int
    downstream: int
    bin_size: int


def _first_lines(path: Path, n: int, limit: int = -1) -> list[str]:
    """The first ``n`` lines (each cut at ``limit`` characters; -1: whole); [] when unreadable."""
    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == _GZIP_MAGIC
        opener = gzip.open if gz else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            return [fh.readline(limit) for _ in range(n)]
    except (OSError, EOFError, UnicodeDecodeError, zlib.error):
        return []


def sniff(path) -> str | None:
    """``"gz"`` for a ``-out`` matrix, ``"text"`` for ``--outFileNameMatrix``, else None."""
    path = Path(path)
    if not path.is_file():
        return None
    lines = _first_lines(path, 2, limit=1 << 20)  # never a whole binary file
    if lines and lines[0].startswith("@{"):
        return "gz"
    if len(lines) == 2 and lines[0].startswith("#") and lines[1].startswith("#downstream:"):
        return "text"
    return None


def matrix_files(path) -> list[Path]:
    """The matrices of a file or folder (sorted by name); empty when there are none."""
    path = Path(path)
    if path.is_dir():
        return [p for p in sorted(path.iterdir()) if sniff(p) is not None]
    return [path] if sniff(path) is not None else []


def is_deeptools(path) -> bool:
    """Whether ``path`` is a computeMatrix file or a folder holding some."""
    return bool(matrix_files(path))


def _per_sample(params: dict, key: str, n: int, path: Path, default=None) -> list:
    value = params.get(key, default)
    values = value if isinstance(value, list) else [value] * n
    if len(values) != n:
        raise DataError(f"{len(values)} values of {key!r} for {n} samples", path, key)
    return values


def _layout(params: dict, n: int, path: Path) -> tuple[int, int, int]:
    """(upstream, downstream, bin size), the same for every sample of a reference-point matrix."""
    body = _per_sample(params, "body", n, path, 0)
    unscaled = _per_sample(params, "unscaled 5 prime", n, path, 0) + _per_sample(
        params, "unscaled 3 prime", n, path, 0
    )
    if any(b for b in body) or any(u for u in unscaled):
        raise DataError(
            "a computeMatrix scale-regions matrix (body > 0); histexpr reads reference-point "
            "matrices (computeMatrix reference-point --referencePoint TSS)",
            path,
        )
    ref = {str(r).upper() for r in _per_sample(params, "ref point", n, path, "TSS") if r}
    if ref - {"TSS"}:
        raise DataError(
            f"reference point {', '.join(sorted(ref))}; histexpr needs windows around the TSS "
            "(--referencePoint TSS)",
            path,
            "ref point",
        )
    layout = set()
    for key in ("upstream", "downstream", "bin size"):
        if key not in params:
            raise DataError(f"header has no {key!r}", path, key)
    for up, down, size in zip(
        _per_sample(params, "upstream", n, path),
        _per_sample(params, "downstream", n, path),
        _per_sample(params, "bin size", n, path),
        strict=True,
    ):
        try:
            layout.add((int(up), int(down), int(size)))
        except (TypeError, ValueError):
            raise DataError("upstream, downstream and bin size must be integers", path) from None
    if len(layout) != 1:
        raise DataError("samples have different upstream/downstream/bin size", path)
    up, down, size = layout.pop()
    if size <= 0 or up < 0 or down < 0 or up % size or down % size or up + down == 0:
        raise DataError(f"upstream {up} / downstream {down} not whole bins of {size} bp", path)
    return up, down, size


def _values(cells: pd.DataFrame, path: Path, first_line: int) -> np.ndarray:
    try:
        return np.asarray(cells.to_numpy(dtype=str), dtype=np.float64)
    except ValueError:
        bad = ~cells.apply(lambda c: pd.to_numeric(c, errors="coerce").notna() | (c == "nan"))
        row = int(np.flatnonzero(bad.to_numpy().any(axis=1))[0])
        raise DataError(f"non-numeric value on line {row + first_line}", path) from None


def _read_table(path: Path, skip: int, compression: str | None) -> pd.DataFrame:
    try:
        return pd.read_csv(
            path,
            sep="\t",
            header=None,
            skiprows=skip,
            dtype=str,
            keep_default_na=False,
            compression=compression,
            comment=None,
        )
    except pd.errors.EmptyDataError:
        raise DataError("no regions (only the header)", path) from None
    except (OSError, EOFError, ValueError, zlib.error, pd.errors.ParserError) as exc:
        raise DataError(f"malformed matrix ({str(exc).splitlines()[0]})", path) from None


def _samples(labels: Sequence[str], bounds: Sequence[int], n_bins: int, path: Path) -> None:
    sizes = np.diff(np.asarray(bounds, dtype=np.int64))
    if len(sizes) != len(labels) or (sizes != n_bins).any():
        raise DataError(
            f"sample boundaries {list(bounds)} do not give {n_bins} bins to each of "
            f"{len(labels)} samples",
            path,
        )


def _read_gz(path: Path) -> Matrix:
    header = _first_lines(path, 1)[0]
    try:
        params = json.loads(header[1:])
    except ValueError:
        raise DataError("first line is not @ + a JSON header", path) from None
    labels = tuple(str(s) for s in params.get("sample_labels") or ())
    if not labels:
        raise DataError("header has no sample_labels", path, "sample_labels")
    up, down, size = _layout(params, len(labels), path)
    n_bins = (up + down) // size
    _samples(labels, params.get("sample_boundaries") or [], n_bins, path)
    with open(path, "rb") as fh:
        compression = "gzip" if fh.read(2) == _GZIP_MAGIC else None
    df = _read_table(path, 1, compression)
    if df.shape[1] != 6 + n_bins * len(labels):
        raise DataError(
            f"{df.shape[1]} columns; expected 6 region fields + {len(labels)} x {n_bins} values",
            path,
        )
    values = _values(df.iloc[:, 6:], path, 2)
    return Matrix(
        path,
        labels,
        values.reshape(len(df), len(labels), n_bins),
        df[3].to_numpy(str),
        up,
        down,
        size,
    )


def _text_params(line: str, path: Path) -> dict:
    params = {}
    for field in line.lstrip("#").rstrip("\n").split("\t"):
        key, sep, value = field.partition(":")
        if not sep:
            raise DataError(f"header field {field!r} is not key:value", path)
        try:
            params[key.strip()] = json.loads(value.strip().replace("None", "null"))
        except ValueError:
            raise DataError(f"header value {value!r} of {key!r} is not a number", path) from None
    return params


def _read_regions(path: Path, n: int, matrix: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(
            f"the text matrix has no region names and {path.name} (its --outFileSortedRegions "
            "BED) is not there; give regions=",
            matrix,
        )
    bed = pd.read_csv(path, sep="\t", header=None, comment="#", dtype=str, keep_default_na=False)
    if bed.shape[1] < 4:
        raise DataError("regions BED needs a name column (4th)", path)
    if len(bed) != n:
        raise DataError(f"{len(bed)} regions for {n} matrix rows", path)
    return bed[3].to_numpy(str)


def _read_text(path: Path, regions=None) -> Matrix:
    lines = _first_lines(path, 3)
    params = _text_params(lines[1], path)
    df = _read_table(path, 3, None)
    n_cols = df.shape[1]
    labels_per_col = lines[2].rstrip("\n").split("\t")[-n_cols:]
    if len(labels_per_col) != n_cols:
        raise DataError(f"third line names {len(labels_per_col)} columns of {n_cols}", path)
    labels = tuple(dict.fromkeys(labels_per_col))
    up, down, size = _layout(params, len(labels), path)
    n_bins = (up + down) // size
    bounds = [0] + [labels_per_col.index(s) + labels_per_col.count(s) for s in labels]
    _samples(labels, bounds, n_bins, path)
    if labels_per_col != [s for s in labels for _ in range(n_bins)]:
        raise DataError("sample labels of the columns are not in blocks of one sample", path)
    values = _values(df, path, 4).reshape(len(df), len(labels), n_bins)
    bed = Path(regions) if regions is not None else path.with_suffix(".bed")
    return Matrix(path, labels, values, _read_regions(bed, len(df), path), up, down, size)


def read_matrix(path, regions=None) -> Matrix:
    """Read one computeMatrix file (``-out`` gz or ``--outFileNameMatrix`` text)."""
    path = Path(path)
    kind = sniff(path)
    if kind is None:
        raise DataError("not a deepTools computeMatrix file", path)
    return _read_gz(path) if kind == "gz" else _read_text(path, regions)
