"""Predictions as AnnData .h5ad (histexpr.data.h5ad), read back with anndata."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from histexpr.atomic import guard_output
from histexpr.data.h5ad import FORMAT, write_anndata
from histexpr.errors import DataError, HistexprError

anndata = pytest.importorskip("anndata")

# WRAP73 and TSPAN6 are in the packaged GENCODE table; "RP11-x" is not
GENES = ["ENSG00000116213", "ENSG00000000003", "RP11-x"]


def _read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # opens without warnings
        return anndata.read_h5ad(path)


def _table():
    cell = np.repeat(["E003", "E004", "X1"], 3)
    gene = np.tile(GENES, 3)
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"cell": cell, "gene": gene, "prediction": rng.normal(size=9)})
    df["observed"] = rng.normal(size=9)
    df["lower"], df["upper"] = df.prediction - 1, df.prediction + 1
    df["atlas_used"] = np.arange(9) % 2 == 0
    return df.drop(index=4).reset_index(drop=True)  # (E004, TSPAN6) not predicted


def test_tidy_table_becomes_cells_by_genes(tmp_path):
    table = _table()
    contract = {"marks": ["H3K4me3"], "n_bins": 100, "bin_size": 100, "cells": ["E003"]}
    path = tmp_path / "pred.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_anndata(table, path, uns={"model_kind": "ridge", "contract": contract})
    ad = _read(path)
    assert list(ad.obs_names) == ["E003", "E004", "X1"] and list(ad.var_names) == GENES
    assert set(ad.layers) == {"predicted", "observed", "lower", "upper", "atlas_used"}
    assert ad.obs.loc["E003", "tissue"] == "ESC" and ad.obs.loc["E004", "group"] == "ES-deriv"
    assert pd.isna(ad.obs.loc["X1", "name"])  # unknown cell: metadata missing
    assert ad.var.loc["ENSG00000116213", "symbol"] == "WRAP73"
    assert pd.isna(ad.var.loc["RP11-x", "symbol"])
    np.testing.assert_array_equal(ad.X, ad.layers["predicted"])
    wide = table.pivot(index="cell", columns="gene", values="prediction").loc[:, GENES]
    np.testing.assert_array_equal(ad.layers["predicted"], wide.to_numpy())
    assert np.isnan(ad.layers["observed"][1, 1])  # not predicted
    width = ad.layers["upper"] - ad.layers["lower"]
    np.testing.assert_allclose(width[~np.isnan(width)], 2.0)
    assert np.isnan(width).sum() == 1
    info = ad.uns["histexpr"]
    assert info["format"] == FORMAT and info["model_kind"] == "ridge" and info["histexpr_version"]
    assert json.loads(info["contract"]) == contract


def test_without_optional_columns_and_for_pairs(tmp_path):
    pairs = pd.DataFrame(
        {
            "cell_a": ["E003", "E003", "E005", "E005"],
            "cell_b": ["E004"] * 4,
            "gene": GENES[:2] * 2,
            "predicted_lfc": [0.5, -1.0, 2.0, 0.0],
        }
    )
    write_anndata(pairs, tmp_path / "d.h5ad", obs_keys=("cell_a", "cell_b"))
    ad = _read(tmp_path / "d.h5ad")
    assert list(ad.obs_names) == ["E003:E004", "E005:E004"] and set(ad.layers) == {"predicted"}
    assert ad.obs.loc["E005:E004", "cell_a"] == "E005" and ad.obs.loc["E005:E004", "name_b"]
    np.testing.assert_array_equal(ad.X, [[0.5, -1.0], [2.0, 0.0]])
    with pytest.raises(DataError, match="no prediction column"):
        write_anndata(
            pairs.drop(columns="predicted_lfc"), tmp_path / "e.h5ad", ("cell_a", "cell_b")
        )


def test_output_guard_knows_our_h5ad(tmp_path):
    write_anndata(_table(), tmp_path / "p.h5ad")
    guard_output(tmp_path / "p.h5ad", "table-file", force=True)  # ours: replaced with --force
    with pytest.raises(HistexprError, match="use --force"):
        guard_output(tmp_path / "p.h5ad", "table-file")
    import h5py

    with h5py.File(tmp_path / "other.h5ad", "w") as f:  # an HDF5 file histexpr did not write
        f.create_dataset("X", data=np.zeros((1, 1)))
    with pytest.raises(HistexprError, match="not a table histexpr wrote"):
        guard_output(tmp_path / "other.h5ad", "table-file", force=True)
