"""Predictions as an AnnData ``.h5ad`` file (scanpy / anndata).

``histexpr predict ... -o pred.h5ad`` writes the tidy prediction table
(:mod:`histexpr.data.submission`) as a cells x genes AnnData object:

- observations: cell types (a differential prediction: one per pair ``A:B``, with
  ``cell_a``/``cell_b``), with the packaged Roadmap epigenome metadata where the id is
  a Roadmap EID: ``name``, ``tissue`` (Roadmap's anatomy), ``group``, ``mnemonic``,
  ``type`` (suffixed ``_a``/``_b`` for pairs); unknown entries are missing;
- variables: genes, index the canonical ENSG id, ``symbol`` from the packaged
  GENCODE v10 table (missing when unknown);
- ``X`` and layer ``predicted``: the prediction (``prediction``, ``probability_high``
  or ``predicted_lfc``); layer ``observed`` when the table has the observed value;
  ``lower`` and ``upper`` when it has an interval; any other numeric column of the
  table (e.g. ``atlas_used``) as a layer of its own name. A (cell, gene) not
  predicted is NaN;
- ``uns["histexpr"]``: ``format`` (``"histexpr-predictions"``), ``histexpr_version``,
  ``model_kind``, ``task``, ``value`` (the prediction column), ``contract`` (the
  model's input contract as a JSON string: marks, n_bins, bin_size, target, cells).

Strings are written as categoricals (pandas 3's string arrays are not portable to
older anndata), so the file opens without warnings. Needs ``pip install anndata``
(``histexpr[anndata]``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr.atomic import atomic_path
from histexpr.data.dataset import canonical_gene_ids
from histexpr.errors import DataError

#: ``uns["histexpr"]["format"]`` of the files written here (the output guard checks it).
FORMAT = "histexpr-predictions"
#: Table columns -> layer names (every other numeric column keeps its name).
LAYERS: dict[str, str] = {
    "prediction": "predicted",
    "probability_high": "predicted",
    "predicted_lfc": "predicted",
    "probability_high_difference": "predicted",
    "predicted": "predicted",
    "observed": "observed",
    "observed_lfc": "observed",
    "lower": "lower",
    "upper": "upper",
}
#: Epigenome metadata columns -> obs column names.
_META = {
    "name": "name",
    "anatomy": "tissue",
    "group": "group",
    "mnemonic": "mnemonic",
    "type": "type",
}


def is_h5ad(path) -> bool:
    """Whether a path names an AnnData file (by its suffix)."""
    return Path(path).suffix.lower() == ".h5ad"


def _category(values) -> pd.Categorical:
    """Strings as a categorical; None/NaN stay missing."""
    return pd.Categorical(
        [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]
    )


def _index(values) -> pd.Index:
    return pd.Index(np.asarray(values).astype(str).astype(object), dtype=object)


def _cell_metadata(cells: Sequence[str], suffix: str = "") -> dict[str, pd.Categorical]:
    from histexpr.data.reference import load_epigenomes

    meta = load_epigenomes()
    out = {}
    for column, name in _META.items():
        lookup = meta[column].to_dict() if column in meta.columns else {}
        out[name + suffix] = _category([lookup.get(c) for c in cells])
    return out


def _symbols(genes: np.ndarray) -> pd.Categorical:
    from histexpr.data.reference import load_tss

    tss = load_tss()
    lookup = dict(zip(canonical_gene_ids(tss["gene_id"].to_numpy()), tss["name"], strict=True))
    return _category([lookup.get(g) for g in genes])


def _wide(table: pd.DataFrame, row: np.ndarray, col: np.ndarray, shape, column: str):
    values = table[column].to_numpy()
    dtype = np.float32 if values.dtype == np.float32 else np.float64
    out = np.full(shape, np.nan, dtype=dtype)
    out[row, col] = values.astype(dtype)
    return out


def write_anndata(
    table: pd.DataFrame,
    path,
    obs_keys: Sequence[str] = ("cell",),
    uns: Mapping | None = None,
) -> Path:
    """Write a tidy prediction table as an ``.h5ad`` file (atomically).

    Parameters
    ----------
    table : pd.DataFrame, shape (n_rows, n_columns)
        One row per prediction: the ``obs_keys`` columns, ``gene``, a prediction
        column (a key of :data:`LAYERS` mapping to ``"predicted"``), and optionally
        ``observed``, ``lower``, ``upper`` and other numeric columns.
    path : str or PathLike
    obs_keys : sequence of str
        ``("cell",)`` (one observation per cell type) or ``("cell_a", "cell_b")``
        (one per pair).
    uns : mapping, optional
        ``model_kind``, ``task``, ``contract`` (a dict, stored as JSON) and the like,
        stored in ``uns["histexpr"]``.

    Returns
    -------
    Path
    """
    try:
        import anndata
    except ImportError:
        raise DataError("writing .h5ad needs anndata (pip install anndata)", path) from None
    from histexpr._runtime import histexpr_version

    path = Path(path)
    missing = [c for c in (*obs_keys, "gene") if c not in table.columns]
    if missing:
        raise DataError(f"prediction table has no column(s) {', '.join(missing)}", path)
    keys = table[list(obs_keys)].astype(str)
    obs_id = keys.iloc[:, 0] if len(obs_keys) == 1 else keys.agg(":".join, axis=1)
    obs_names = obs_id.drop_duplicates().to_numpy().astype(str)
    genes = canonical_gene_ids(table["gene"].astype(str).to_numpy())
    var_names = pd.unique(pd.Series(genes)).astype(str)
    row = pd.Index(obs_names).get_indexer(obs_id.to_numpy().astype(str))
    col = pd.Index(var_names).get_indexer(genes)
    if pd.DataFrame({"r": row, "c": col}).duplicated().any():
        raise DataError("a (cell, gene) occurs twice in the prediction table", path)
    layers: dict[str, np.ndarray] = {}
    for column in table.columns:
        if column in (*obs_keys, "gene") or table[column].dtype.kind not in "fiub":
            continue
        name = LAYERS.get(column, column)
        if name in layers:
            raise DataError(f"two columns give layer {name!r}", path, column)
        layers[name] = _wide(table, row, col, (len(obs_names), len(var_names)), column)
    if "predicted" not in layers:
        raise DataError(f"no prediction column (one of {', '.join(sorted(LAYERS))})", path)
    obs = pd.DataFrame(index=_index(obs_names))
    if len(obs_keys) == 1:
        obs = obs.assign(**_cell_metadata(list(obs_names)))
    else:
        first = keys.drop_duplicates().to_numpy()
        for j, key in enumerate(obs_keys):
            suffix = "_" + key.rsplit("_", 1)[-1]
            obs[key] = _category(first[:, j])
            obs = obs.assign(**_cell_metadata(list(first[:, j]), suffix))
    var = pd.DataFrame({"symbol": _symbols(var_names)}, index=_index(var_names))
    info = {"format": FORMAT, "histexpr_version": histexpr_version()}
    for k, v in (uns or {}).items():
        info[k] = json.dumps(v, sort_keys=True) if isinstance(v, Mapping) else str(v)
    adata = anndata.AnnData(X=layers["predicted"].copy(), obs=obs, var=var, layers=layers)
    adata.uns["histexpr"] = info
    with atomic_path(path, suffix=".h5ad") as tmp:
        adata.write_h5ad(tmp)
    return path
