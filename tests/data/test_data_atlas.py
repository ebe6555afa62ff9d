"""The expression atlas: sources, canonical gene ids, storage and the pure-numpy features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_planted
from histexpr.data.atlas import (
    Atlas,
    atlas_from_dataset,
    choose_temperature,
    gene_statistics,
    read_atlas_table,
    resolve_atlas,
    roadmap_atlas,
    similarity_correlations,
    softmax_weights,
    weighted_prior,
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


def test_gene_statistics_known_answers_and_nan_rows():
    v = np.array([[1.0, 2.0, 3.0, 4.0], [np.nan, 5.0, np.nan, 5.0], [np.nan] * 4])
    s = gene_statistics(v)
    assert s.shape == (3, 9)
    np.testing.assert_allclose(s[0, [0, 2, 5, 8]], [2.5, 1.0, 2.5, 4.0])
    np.testing.assert_allclose(s[1, :3], [5.0, 0.0, 5.0])
    assert np.isnan(s[2]).all()


def test_similarity_prefers_the_reference_cell_with_the_same_departures():
    rng = np.random.default_rng(0)
    gene_level = rng.normal(5, 2, size=500)
    ref = gene_level[:, None] + rng.normal(0, 1, size=(500, 4))
    score = ref[:, 2] + 0.1 * rng.normal(size=500)
    corr = similarity_correlations(score, ref)
    assert int(np.argmax(corr)) == 2 and corr[2] > 0.5
    # the prior concentrates on that cell at a low temperature ...
    sharp = weighted_prior(ref, softmax_weights(corr, 0.02))
    np.testing.assert_allclose(sharp, ref[:, 2], atol=1e-3)
    # ... and is the plain gene mean at T = inf (NaN entries renormalised away)
    ref[0, 0] = np.nan
    flat = weighted_prior(ref, softmax_weights(corr, float("inf")))
    np.testing.assert_allclose(flat, np.nanmean(ref, axis=1), rtol=1e-5)


def test_temperature_is_sharp_when_one_reference_cell_matches_and_flat_when_none_does():
    rng = np.random.default_rng(1)
    gene_level = rng.normal(5, 2, size=400)
    ref = gene_level[:, None] + rng.normal(0, 1, size=(400, 5))
    twin = ref[:, 3] + 0.05 * rng.normal(size=400)
    cases = [(similarity_correlations(twin, ref), ref, twin)]
    assert choose_temperature(cases) <= 0.05
    # cells unrelated to every reference: averaging over them, sharpening does not pay
    unrelated = gene_level[:, None] + rng.normal(0, 1, size=(400, 20))
    cases = [(similarity_correlations(u, ref), ref, u) for u in unrelated.T]
    assert choose_temperature(cases) >= 0.1


def test_gene_statistics_complete_and_gappy_rows_agree_with_nan_aware_numpy():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(200, 12))
    v[::7, 3] = np.nan  # some rows with gaps, one with nothing known
    v[5] = np.nan
    got = gene_statistics(v)
    ok = np.isfinite(v).any(axis=1)
    want = np.full((len(v), 9), np.nan)
    w = v[ok]
    want[ok, 0], want[ok, 1] = np.nanmean(w, axis=1), np.nanstd(w, axis=1)
    want[ok, 2:] = np.nanquantile(w, [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1], axis=1).T
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-6, equal_nan=True)
