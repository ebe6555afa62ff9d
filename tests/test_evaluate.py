import numpy as np
import pytest

from histexpr.evaluate import compute_metrics, evaluate_predictions, median_split_labels


def test_perfect_prediction_known_answers():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    m = compute_metrics(y, y)
    assert m.mse == 0 and m.r2 == 1
    assert m.pearson == pytest.approx(1) and m.spearman == pytest.approx(1)
    assert m.auc == 1.0


def test_constant_prediction_gives_r2_zero_and_auc_half():
    y = np.arange(100, dtype=float)
    m = compute_metrics(y, np.full(100, y.mean()))
    assert m.r2 == pytest.approx(0)
    assert m.auc == pytest.approx(0.5)
    assert np.isnan(m.pearson)


def test_metrics_invariant_to_monotone_transform_where_expected():
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    yhat = y + rng.normal(size=300)
    a, b = compute_metrics(y, yhat), compute_metrics(y, np.exp(yhat))
    assert a.spearman == pytest.approx(b.spearman)
    assert a.auc == pytest.approx(b.auc)


def test_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    y = rng.normal(size=500)
    score = y + rng.normal(size=500)
    labels = median_split_labels(y)
    assert compute_metrics(y, score).auc == pytest.approx(roc_auc_score(labels, score))


def test_median_split_is_per_cell():
    y = np.array([1, 2, 3, 10, 20, 30.0])
    cell = np.array(["a"] * 3 + ["b"] * 3)
    np.testing.assert_array_equal(median_split_labels(y, cell), [0, 0, 1, 0, 0, 1])


def test_evaluation_groups_and_oracle_ratio():
    rng = np.random.default_rng(3)
    n = 600
    y = rng.normal(size=n)
    cell = np.repeat(["E1", "E2", "E3"], n // 3)
    preds = {"oracle": y + 0.1 * rng.normal(size=n), "model": y + 0.5 * rng.normal(size=n)}
    ev = evaluate_predictions(y, cell, preds, unseen_cells=["E3"])
    t = ev.table.set_index(["model", "group"])
    assert set(ev.table.group) == {"all", "seen", "unseen"}
    assert t.loc[("oracle", "all"), "mse_over_oracle"] == pytest.approx(1)
    assert t.loc[("model", "unseen"), "mse_over_oracle"] > 5
    assert t.loc[("model", "seen"), "n"] == 400
    assert len(ev.per_cell) == 6
    assert not ev.per_cell.set_index(["model", "cell"]).loc[("model", "E3"), "seen"]


def test_split_half_coverage_is_near_nominal_on_exchangeable_residuals():
    from histexpr.evaluate import split_half_coverage

    r = np.abs(np.random.default_rng(0).normal(size=4000))
    for level in (0.8, 0.9):
        coverage, width = split_half_coverage(r, level)
        assert abs(coverage - level) < 0.02
        # the width is twice the level's quantile of |N(0, 1)|: 2 x 1.28 / 2 x 1.64
        assert width == pytest.approx(2 * np.quantile(r, level), rel=0.05)
    # too few residuals for the level: an infinite interval covers everything
    assert split_half_coverage(r[:6], 0.9) == (1.0, float("inf"))
