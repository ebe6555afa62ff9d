"""Differential estimators: antisymmetry, save/load, signal, pairs, the baseline, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_planted
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import KINDS, load_estimator, make_estimator
from histexpr.estimators.bundle import sha256
from histexpr.estimators.diff import diff_from_model, pair_examples, parse_pairs, training_pairs
from histexpr.evaluate import diff_metrics

CELLS = ("E003", "E004", "E005", "E006")
FAST = {"diff-ridge": None, "diff-lightgbm": ["n_estimators=40", "max_rows=2000"]}


@pytest.fixture(scope="module")
def split():
    ds = make_planted(160, CELLS, seed=3)
    genes = np.unique(ds.gene)
    return ds.select_genes(genes[:110]), ds.select_genes(genes[:110], exclude=True)


@pytest.fixture(scope="module")
def fitted(split):
    train, _ = split
    return {k: make_estimator(k, FAST[k]).fit(train) for k in FAST}


def test_kinds_are_registered():
    assert {"diff-ridge", "diff-lightgbm"} <= set(KINDS)


@pytest.mark.parametrize("kind", list(FAST))
def test_antisymmetric_and_beats_a_constant(kind, fitted, split):
    _, test = split
    est = fitted[kind]
    ab, ba = est.predict_pair(test, "E003", "E006"), est.predict_pair(test, "E006", "E003")
    np.testing.assert_allclose(ab.predicted, -ba.predicted, atol=1e-5)
    # the constant change 0 (no difference) is the floor: MSE = mean(lfc^2)
    assert np.mean((ab.predicted - ab.observed) ** 2) < 0.8 * np.mean(ab.observed**2)
    assert diff_metrics(ab.observed, ab.predicted).pearson > 0.4


@pytest.mark.parametrize("kind", list(FAST))
def test_save_load_round_trip_and_attributions_sum_to_prediction(kind, fitted, split, tmp_path):
    _, test = split
    est = fitted[kind]
    est.save(tmp_path / kind)
    back = load_estimator(tmp_path / kind)
    assert back.pairs_ == est.pairs_
    p, q = est.predict_pair(test, "E004", "E005"), back.predict_pair(test, "E004", "E005")
    np.testing.assert_allclose(p.predicted, q.predicted, rtol=1e-5, atol=1e-6)
    att = back.attribute_pair(test, "E004", "E005")
    assert att.attribution.shape == (len(att.gene), test.X.shape[1], test.X.shape[2])
    np.testing.assert_allclose(att.attribution.sum((1, 2)) + att.base, att.predicted, atol=1e-3)
    with pytest.raises(HistexprError, match="--pair"):
        back.predict(test)


def test_one_model_applies_to_a_pair_it_never_saw(split):
    train, test = split
    est = make_estimator("diff-ridge", ["pairs=E003:E004,E004:E005"]).fit(train)
    assert est.pairs_ == [("E003", "E004"), ("E004", "E005")]
    p = est.predict_pair(test, "E003", "E006")  # E006 never trained on
    assert diff_metrics(p.observed, p.predicted).pearson > 0.4


def test_pairs_parsing_errors_are_one_line():
    assert parse_pairs("A:B, C:D") == (("A", "B"), ("C", "D"))
    for bad in ("A", "A:", ":B", "A:A", "A:B:C", "A:B,A:B"):
        with pytest.raises(ConfigError) as info:
            parse_pairs(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(HistexprError, match="not in the training data"):
        training_pairs(["A", "B"], "A:Z")
    with pytest.raises(HistexprError, match="at least two"):
        training_pairs(["A"])
    assert len(training_pairs(list("ABCDE"), max_pairs=3)) == 3
    assert len(training_pairs(list("ABCD"))) <= 6


def test_pair_examples_aligns_shared_genes(split):
    _, test = split
    part = test.subset(np.flatnonzero((test.cell != "E004") | (test.gene > test.gene[5])))
    gene, XA, XB, lfc = pair_examples(part, "E003", "E004")
    assert len(gene) == len(np.unique(part.gene[part.cell == "E004"]))
    ia = [np.flatnonzero((part.cell == "E003") & (part.gene == g))[0] for g in gene]
    ib = [np.flatnonzero((part.cell == "E004") & (part.gene == g))[0] for g in gene]
    np.testing.assert_array_equal(XA, part.X[ia])
    np.testing.assert_array_equal(XB, part.X[ib])
    np.testing.assert_allclose(lfc, part.y[ia] - part.y[ib])
    with pytest.raises(HistexprError, match="not in the data"):
        pair_examples(part, "E003", "E999")


def test_baseline_is_the_difference_of_two_predictions(split):
    train, test = split
    ridge = make_estimator("ridge").fit(train)
    p = diff_from_model(ridge, test, "E003", "E005")
    yhat = ridge.predict(test)
    for g in p.gene[:5]:
        a = yhat[(test.cell == "E003") & (test.gene == g)][0]
        b = yhat[(test.cell == "E005") & (test.gene == g)][0]
        assert p.predicted[list(p.gene).index(g)] == pytest.approx(a - b, abs=1e-5)


def test_diff_metrics_known_answers():
    y = np.array([-2.0, -1.5, -0.2, 0.1, 1.2, 3.0])
    m = diff_metrics(y, y)
    assert m.pearson == pytest.approx(1) and m.spearman == pytest.approx(1) and m.mse == 0
    assert m.n_changed == 4 and m.n_up == 2 and m.auc == 1.0
    assert diff_metrics(y, -y).auc == 0.0
    assert np.isnan(diff_metrics(y, y, threshold=10).auc)


def test_lightgbm_row_budget_keeps_a_share_of_every_pair(split):
    train, _ = split
    est = make_estimator("diff-lightgbm", ["n_estimators=5", "max_rows=200", "max_pairs=2"])
    est.fit(train)
    assert est.metrics_["n_pair_rows"] == est.metrics_["n_fit_rows"] == 200
    assert make_estimator("diff-ridge", ["max_rows=200", "max_pairs=2"]).fit(train).metrics_[
        "n_pair_rows"
    ] == 2 * len(np.unique(train.gene))  # one row per gene and training pair


def test_one_pair_model_matches_both_baselines_and_keeps_its_orientation(tmp_path):
    """DeepDiffChrome's setting: one model for one pair, a few hundred genes.

    Each diff kind is at least as good on held-out genes as the difference of two
    single-cell ridge predictions (the blend is chosen on out-of-fold genes), and
    diff-lightgbm at least as good as diff-ridge (boosting only where it helps).
    """
    ds = make_planted(260, ("E003", "E004"), seed=5)
    genes = np.unique(ds.gene)
    train, test = ds.select_genes(genes[:200]), ds.select_genes(genes[:200], exclude=True)
    single = diff_from_model(make_estimator("ridge").fit(train), test, "E003", "E004")
    r_single = diff_metrics(single.observed, single.predicted).pearson
    scores = {}
    for kind, extra in (("diff-ridge", []), ("diff-lightgbm", ["n_estimators=60"])):
        est = make_estimator(kind, ["pairs=E003:E004", *extra]).fit(train)
        ab, ba = est.predict_pair(test, "E003", "E004"), est.predict_pair(test, "E004", "E003")
        np.testing.assert_allclose(ab.predicted, -ba.predicted, atol=1e-5)  # exact
        assert est.orientation("E003", "E004") == 1 and est.orientation("E004", "E003") == -1
        scores[kind] = diff_metrics(ab.observed, ab.predicted).pearson
        assert scores[kind] >= r_single - 0.02, (kind, scores[kind], r_single)
    assert scores["diff-lightgbm"] >= scores["diff-ridge"] - 0.02


def test_a_diff_ridge_saved_before_levels_still_loads_and_predicts(split, tmp_path):
    """Layout 1 (difference-only coefficients, no mu/layout/blend): antisymmetrised."""
    train, test = split
    est = make_estimator("diff-ridge").fit(train)
    est.save(tmp_path / "m")
    p = test.X.shape[1] * test.X.shape[2]
    rng = np.random.default_rng(0)
    coef, sd = rng.normal(size=p).astype(np.float32), np.ones(p, np.float32)
    np.savez(
        tmp_path / "m" / "state.npz",
        sd=sd,
        coef=coef,
        intercept=np.float32(0),
        pairs=np.array(["E003:E004"]),
    )
    header = json.loads((tmp_path / "m" / "model.json").read_text())
    header["checksums"]["state.npz"] = sha256(tmp_path / "m" / "state.npz")
    (tmp_path / "m" / "model.json").write_text(json.dumps(header))
    old = load_estimator(tmp_path / "m")
    assert old.layout_ == 1 and old.orientation("E003", "E004") == 0
    _, XA, XB, _ = pair_examples(test, "E003", "E004")
    expected = (np.log1p(XA.reshape(len(XA), -1)) - np.log1p(XB.reshape(len(XB), -1))) @ coef
    np.testing.assert_allclose(
        old.predict_pair(test, "E003", "E004").predicted, expected, rtol=1e-4, atol=1e-4
    )
