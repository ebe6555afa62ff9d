"""The atlas maths of the atlas kinds: gene statistics, cell similarity, the prior."""

from __future__ import annotations

import numpy as np

from histexpr.estimators.atlas_prior import (
    choose_temperature,
    gene_statistics,
    similarity_correlations,
    softmax_weights,
    weighted_prior,
)


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
