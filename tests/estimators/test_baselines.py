import numpy as np
import pytest

from conftest import make_planted
from histexpr.errors import HistexprError
from histexpr.estimators import BASELINE_KINDS, load_estimator, make_estimator
from histexpr.estimators.baselines import log1p_features, select_correlated_features


@pytest.fixture(scope="module")
def split():
    ds = make_planted(n_genes=300)
    genes = np.unique(ds.gene)
    test_genes = genes[::4]
    return ds.select_genes(test_genes, exclude=True), ds.select_genes(test_genes)


FAST = {
    "random-forest": ["n_estimators=20", "n_jobs=1"],
    "lightgbm": ["n_estimators=60", "n_jobs=1"],
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
    with pytest.raises(HistexprError, match="expected float"):
        make_estimator("ridge", ["alpha=abc"])
