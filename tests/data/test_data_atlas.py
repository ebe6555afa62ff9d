"""The expression atlas: sources, canonical gene ids and storage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_planted
from histexpr.data.atlas import (
    Atlas,
    atlas_from_dataset,
    read_atlas_table,
    resolve_atlas,
    roadmap_atlas,
)
from histexpr.errors import ConfigError, DataError


def test_training_targets_become_a_genes_by_cells_atlas():
    data = make_planted(n_genes=30, cells=("E003", "E004"))
    atlas = resolve_atlas("", "rpkm", data)
    assert atlas.source == "train" and list(atlas.cells) == ["E003", "E004"]
    assert atlas.values.shape == (30, 2)
    rows, found = atlas.rows(data.gene)
    assert found.all()
    col = np.searchsorted(atlas.cells, data.cell)
    np.testing.assert_allclose(atlas.values[rows, col], data.y)


def test_table_gene_ids_are_matched_in_canonical_form(tmp_path):
    # versioned ENSG ids and course integers name the same genes as the data
    path = tmp_path / "atlas.tsv"
    pd.DataFrame(
        {"gene": ["ENSG00000000001.7", "2", " ENSG00000000003 "], "E010": [0.0, 1.0, 3.0]}
    ).to_csv(path, sep="\t", index=False)
    atlas = read_atlas_table(path, "rpkm")
    data = make_planted(n_genes=5, cells=("E003",))
    rows, found = atlas.rows(data.gene)
    assert found.tolist() == [False, True, True, True, False]
    # RPKM are put in the target transform, log2(x + 1)
    np.testing.assert_allclose(atlas.values[rows[found], 0], [0.0, 1.0, 2.0])


def test_csv_transformed_values_are_taken_as_they_are(tmp_path):
    path = tmp_path / "atlas.csv"
    pd.DataFrame({"g": ["ENSG00000000001"], "A": [-1.5], "B": [2.0]}).to_csv(path, index=False)
    atlas = read_atlas_table(path, "transformed")
    np.testing.assert_allclose(atlas.values, [[-1.5, 2.0]])
    with pytest.raises(DataError, match="negative RPKM"):
        read_atlas_table(path, "rpkm")
    with pytest.raises(ConfigError, match="atlas_values"):
        read_atlas_table(path, "log")
    with pytest.raises(DataError, match="not found"):
        read_atlas_table(tmp_path / "missing.tsv")


def test_roadmap_atlas_has_the_56_deepchrome_cells():
    atlas = roadmap_atlas()
    assert atlas.values.shape == (19795, 56) and atlas.source == "roadmap"
    assert "E003" in atlas.cells and "E000" not in atlas.cells
    assert np.isfinite(atlas.values).all() and atlas.values.min() >= 0


def test_save_load_round_trip_without_pickles(tmp_path):
    atlas = atlas_from_dataset(make_planted(n_genes=10, cells=("E003", "E004")))
    atlas.save(tmp_path)
    with np.load(tmp_path / "atlas.npz", allow_pickle=False) as z:
        assert z["values"].dtype == np.float32
    back = Atlas.load(tmp_path)
    np.testing.assert_array_equal(back.values, atlas.values)
    assert list(back.cells) == list(atlas.cells) and back.source == "train"


def test_without_drops_named_columns_only():
    atlas = Atlas(np.array(["g1", "g2"]), np.array(["A", "B"]), np.ones((2, 2), np.float32))
    assert list(atlas.without(["B", "Z"]).cells) == ["A"]
    assert atlas.without(["Z"]) is atlas
    _rows, found = atlas.without(["A", "B"]).rows(["g1"])
    assert not found.any()
