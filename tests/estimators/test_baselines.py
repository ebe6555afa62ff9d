import numpy as np
import pytest

from conftest import REPO_ROOT, make_planted
from histexpr.data.dataset import HistoneDataset
from histexpr.data.splits import gene_fold_of
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import kind_names, load_estimator, make_estimator
from histexpr.estimators.baseline_config import RF_LEAF_GRID
from histexpr.estimators.histone_features import log1p_features, select_correlated_features
from histexpr.estimators.linear import RELATIVE_GRID, fit_ridge_cv

#: Every single-cell kind outside the network registry.
BASELINE_KINDS = tuple(
    k for k in kind_names(task="expression") if k not in kind_names(family="network")
)


@pytest.fixture(scope="module")
def split():
    ds = make_planted(n_genes=300)
    genes = np.unique(ds.gene)
    test_genes = genes[::4]
    return ds.select_genes(test_genes, exclude=True), ds.select_genes(test_genes)


FAST = {
    "random-forest": ["n_estimators=20", "n_jobs=1", "select_trees=5"],
    "lightgbm": ["n_estimators=60", "n_jobs=1"],
    "atlas-ridge": ["alpha=10"],
    "atlas-lightgbm": ["n_estimators=60", "n_jobs=1", "alpha=10"],
    "atlas-convnet": [
        "channels=4,4,8,8,8,8,16,16",
        "epochs=3",
        "n_folds=1",
        "batch_size=32",
        "threads=1",
        "progress=false",
        "alpha=10",
    ],
}


@pytest.mark.parametrize("kind", BASELINE_KINDS)
def test_fit_predict_save_load_roundtrip(kind, split, tmp_path):
    train, test = split
    est = make_estimator(kind, FAST.get(kind)).fit(train)
    pred = est.predict(test)
    assert pred.shape == (len(test),) and pred.dtype == np.float32
    assert np.isfinite(pred).all()
    est.save(tmp_path / kind)
    loaded = load_estimator(tmp_path / kind)
    np.testing.assert_array_equal(loaded.predict(test), pred)
    # nothing pickled: every array file loads without pickle
    for f in (tmp_path / kind).glob("*.npz"):
        np.load(f, allow_pickle=False)


@pytest.mark.parametrize("kind", ["ridge", "random-forest", "lightgbm"])
def test_feature_models_beat_global_mean_on_planted_signal(kind, split):
    train, test = split
    base = make_estimator("global-mean").fit(train).predict(test)
    pred = make_estimator(kind, FAST.get(kind)).fit(train).predict(test)
    mse_base = np.mean((test.y - base) ** 2)
    mse = np.mean((test.y - pred) ** 2)
    assert mse < 0.5 * mse_base


def test_gene_mean_uses_training_cells_and_falls_back_for_new_genes(split):
    train, test = split
    est = make_estimator("gene-mean").fit(train)
    g = train.gene[0]
    expected = train.y[train.gene == g].mean()
    sub = train.select_genes([g])
    np.testing.assert_allclose(est.predict(sub), expected, rtol=1e-6)
    # test genes were never seen: global mean
    np.testing.assert_allclose(est.predict(test), train.y.mean(), rtol=1e-6)


def test_random_forest_arrays_match_sklearn(split):
    from sklearn.ensemble import RandomForestRegressor

    from histexpr.estimators.trees import TreeEnsembleArrays

    train, test = split
    F = log1p_features(train.X)[:, :40]
    rf = RandomForestRegressor(n_estimators=5, max_depth=6, random_state=0).fit(F, train.y)
    arrays = TreeEnsembleArrays.from_sklearn(rf.estimators_)
    Ft = log1p_features(test.X)[:, :40]
    np.testing.assert_allclose(arrays.predict_mean(Ft), rf.predict(Ft), rtol=1e-5, atol=1e-5)


def test_correlated_feature_selection_finds_planted_bins():
    ds = make_planted(n_genes=400)
    F = log1p_features(ds.X)
    idx = select_correlated_features(F, ds.y.astype(float), 10)
    marks, bins = np.divmod(idx, 100)
    # every selected feature is H3K27me3 (mark 0) or central H3K4me3 (mark 3, bins 45-54)
    assert np.all((marks == 0) | ((marks == 3) & (bins >= 45) & (bins < 55)))


def test_baselines_refuse_wrong_input(split):
    train, test = split
    est = make_estimator("ridge").fit(train)
    bad = test.subset(slice(0, 5))
    bad.X = bad.X[:, :, :90]
    with pytest.raises(HistexprError, match="bins"):
        est.predict(bad)
    with pytest.raises(HistexprError, match="no expression"):
        make_estimator("ridge").fit(train.without_target())


def test_unknown_kind_and_bad_override():
    with pytest.raises(HistexprError, match="unknown model kind"):
        make_estimator("svm")
    with pytest.raises(HistexprError, match="unknown"):
        make_estimator("ridge", ["beta=2"])
    with pytest.raises(HistexprError, match="alpha"):
        make_estimator("ridge", ["alpha=abc"])


# --- ridge: alpha chosen by cross-validation over genes --------------------------------------

FIXTURES = REPO_ROOT / "tests" / "data" / "fixtures"


def _heldout(ds, every=4):
    genes = np.unique(ds.gene)
    test_genes = genes[::every]
    return ds.select_genes(test_genes, exclude=True), ds.select_genes(test_genes)


def _mse(test, pred):
    return float(np.mean((test.y - pred) ** 2))


@pytest.mark.parametrize(
    ("n_genes", "cells"), [(100, ("E003",)), (200, ("E003", "E004")), (2000, ("E003",))]
)
def test_ridge_never_worse_than_the_mean_on_heldout_genes(n_genes, cells):
    train, test = _heldout(make_planted(n_genes=n_genes, cells=cells, seed=5))
    mean = _mse(test, make_estimator("global-mean").fit(train).predict(test))
    est = make_estimator("ridge").fit(train)
    assert _mse(test, est.predict(test)) < mean
    assert (
        est.metrics_["alpha"] == est.alpha_ > 0
        and "chosen by 5-fold CV" in est.metrics_["selection"]
    )


def test_ridge_on_pure_noise_shrinks_to_the_mean():
    # y independent of X: a fixed small alpha over-fits, the CV choice must not
    ds = make_planted(n_genes=160, cells=("E003", "E004"), seed=7)
    ds.y = np.random.default_rng(0).normal(size=len(ds)).astype(np.float32)
    train, test = _heldout(ds)
    mean = _mse(test, make_estimator("global-mean").fit(train).predict(test))
    fixed = _mse(test, make_estimator("ridge", ["alpha=1.0"]).fit(train).predict(test))
    chosen = make_estimator("ridge").fit(train)
    assert fixed > 1.2 * mean  # the old default is worse than the mean here
    assert _mse(test, chosen.predict(test)) < 1.02 * mean
    assert chosen.alpha_ > 10 * len(train)  # close to predicting the mean


def test_ridge_on_real_e003_genes_beats_the_mean():
    # 100 real E003 genes (fixture): 5-fold CV over genes, pooled MSE
    z = np.load(FIXTURES / "e003_binned.npz", allow_pickle=False)
    ds = HistoneDataset(z["X"], z["y"], np.full(len(z["y"]), "E003"), z["gene"])
    fold = gene_fold_of(ds.gene, 5, seed=1)
    sse = {"ridge": 0.0, "global-mean": 0.0}
    for f in range(5):
        train, test = ds.subset(fold != f), ds.subset(fold == f)
        for kind in sse:
            sse[kind] += len(test) * _mse(test, make_estimator(kind).fit(train).predict(test))
    assert sse["ridge"] < 0.8 * sse["global-mean"]


def test_ridge_cv_closed_form_matches_explicit_refits():
    rng = np.random.default_rng(3)
    n, p = 90, 12
    Z = rng.normal(size=(n, p))
    y = Z[:, 0] - 0.5 * Z[:, 3] + rng.normal(size=n)
    gene = np.repeat([f"g{i}" for i in range(30)], 3)  # 3 cell types per gene
    res = fit_ridge_cv(lambda rows: Z[rows], n, y, gene, folds=4)
    fold = gene_fold_of(gene, 4)
    for j in (0, 15, 30):  # a few grid points: refit every fold explicitly
        sse = 0.0
        for f in range(4):
            tr, te = fold != f, fold == f
            xm, ym = Z[tr].mean(0), y[tr].mean()
            Zc = Z[tr] - xm
            alpha = RELATIVE_GRID[j] * tr.sum()
            coef = np.linalg.solve(Zc.T @ Zc + alpha * np.eye(p), Zc.T @ (y[tr] - ym))
            sse += np.sum((y[te] - ym - (Z[te] - xm) @ coef) ** 2)
        np.testing.assert_allclose(res.cv_mse[j], sse / n, rtol=1e-8)
    # the final fit is the ridge solution at the chosen alpha on all data
    Zc = Z - Z.mean(0)
    coef = np.linalg.solve(Zc.T @ Zc + res.alpha * np.eye(p), Zc.T @ (y - y.mean()))
    np.testing.assert_allclose(res.coef, coef, rtol=1e-7, atol=1e-10)


def test_ridge_fixed_alpha_matches_sklearn(split):
    from sklearn.linear_model import Ridge

    train, test = split
    est = make_estimator("ridge", ["alpha=3.0"]).fit(train)
    F = log1p_features(train.X)
    ref = Ridge(alpha=3.0).fit((F - est.mu_) / est.sd_, train.y)
    Ft = (log1p_features(test.X) - est.mu_) / est.sd_
    np.testing.assert_allclose(est.predict(test), ref.predict(Ft), rtol=1e-4, atol=1e-4)
    assert est.metrics_["selection"] == "alpha=3 (fixed)"


def test_ridge_saves_its_chosen_alpha(split, tmp_path):
    from histexpr.estimators.bundle import load_metrics

    train, _ = split
    est = make_estimator("ridge").fit(train)
    est.save(tmp_path / "m")
    assert load_estimator(tmp_path / "m").alpha_ == pytest.approx(est.alpha_)
    assert load_metrics(tmp_path / "m")["alpha"] == pytest.approx(est.alpha_)


# --- trees: model choice on the validation data ----------------------------------------------


def test_random_forest_chooses_leaf_size_on_valid_or_out_of_bag(split):
    train, _ = split
    fast = ["n_estimators=12", "select_trees=6", "n_jobs=1"]
    genes = np.unique(train.gene)
    tr, va = train.select_genes(genes[::5], exclude=True), train.select_genes(genes[::5])
    on_valid = make_estimator("random-forest", fast).fit(tr, va)
    oob = make_estimator("random-forest", fast).fit(train)
    assert "chosen on validation data" in on_valid.metrics_["selection"]
    assert "out-of-bag" in oob.metrics_["selection"]
    for est in (on_valid, oob):
        assert est.metrics_["min_samples_leaf"] in RF_LEAF_GRID
        assert est.trees_.n_trees == 12  # the chosen forest grew to n_estimators
    fixed = make_estimator("random-forest", [*fast, "min_samples_leaf=7"]).fit(train)
    assert fixed.metrics_ == {"min_samples_leaf": 7}


def test_lightgbm_early_stops_without_valid_and_refits():
    ds = make_planted(n_genes=200, cells=("E003",), seed=4)
    ds.y = np.random.default_rng(1).normal(size=len(ds)).astype(np.float32)  # noise: stop early
    train, test = _heldout(ds)
    est = make_estimator("lightgbm", ["n_jobs=1", "early_stopping=10"]).fit(train)
    assert est.metrics_["best_iteration"] < 100
    assert "then a refit" in est.metrics_["selection"]
    assert est.booster_.num_trees() == est.metrics_["best_iteration"]
    mean = _mse(test, make_estimator("global-mean").fit(train).predict(test))
    assert _mse(test, est.predict(test)) < 1.15 * mean


@pytest.mark.parametrize(
    ("kind", "bad", "field"),
    [
        ("ridge", "alpha=-1", "alpha"),
        ("ridge", "cv_folds=1", "cv_folds"),
        ("random-forest", "max_depth=1", "max_depth"),
        ("random-forest", "max_samples=0", "max_samples"),
        ("lightgbm", "holdout_fraction=0.7", "holdout_fraction"),
        ("lightgbm", "learning_rate=0", "learning_rate"),
    ],
)
def test_baseline_configs_reject_out_of_range(kind, bad, field):
    with pytest.raises(ConfigError, match=field):
        make_estimator(kind, [bad])


@pytest.mark.parametrize("kind", ["global-mean", "ridge", "random-forest", "lightgbm"])
def test_prediction_in_blocks_is_bit_identical_to_one_call(kind, split):
    # the base predicts block_rows rows at a time (aligned to BLOCK_ALIGN); a block
    # size that cuts the data into uneven blocks must not change one bit
    train, test = split
    est = make_estimator(kind, FAST.get(kind)).fit(train)
    whole = est.predict(test, batch_size=len(test))
    assert whole.dtype == np.float32 and whole.shape == (len(test),)
    for rows in (7, 64, 100):
        np.testing.assert_array_equal(est.predict(test, batch_size=rows), whole)
    np.testing.assert_array_equal(est.predict(test), whole)
