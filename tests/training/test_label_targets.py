"""Classification targets: labels the data carry are used as they are, never median-split again."""

import numpy as np
import pytest

from histexpr.data.dataset import HistoneDataset
from histexpr.errors import HistexprError
from histexpr.evaluate import compute_metrics, is_label, median_split_labels
from histexpr.training.members import binary_targets, task_targets


def deepchrome_like(n=200, positive=0.6, cells=("E003", "E004"), seed=0):
    """0/1 labels with ``positive`` of the genes expressed in every cell (DeepChrome train split)."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([(rng.random(n) < positive).astype(np.float32) for _ in cells])
    X = rng.poisson(1.0, (len(y), 5, 100)).astype(np.float32)
    return HistoneDataset(
        X=X,
        y=y,
        cell=np.repeat(cells, n),
        gene=np.tile([f"ENSG{i:011d}" for i in range(n)], len(cells)),
        target="label(RPKM > cell median)",
    )


def test_labels_are_the_targets_with_most_genes_positive():
    ds = deepchrome_like(positive=0.6)
    assert ds.y.mean() > 0.5  # the case where a median split of labels collapses to all 0
    t = binary_targets(ds)
    np.testing.assert_array_equal(t, ds.y)
    np.testing.assert_array_equal(task_targets(ds, "classification"), ds.y)
    for c in ds.cells:
        m = ds.cell == c
        assert 0 < t[m].mean() < 1  # both classes in every cell


def test_continuous_targets_split_at_the_cell_median():
    rng = np.random.default_rng(1)
    y = rng.normal(3, 1, 100)
    cell = np.repeat(["A", "B"], 50)
    lab = median_split_labels(y, cell)
    assert lab[:50].sum() == 25 and lab[50:].sum() == 25
    # A stored training median is used instead of the data's own.
    lab = median_split_labels(y, cell, medians={"A": -np.inf})
    assert lab[:50].all() and lab[50:].sum() == 25
    assert not is_label(y) and is_label(np.array([0, 1, 1.0]))


def test_auc_of_labels_is_against_the_labels():
    ds = deepchrome_like(positive=0.7, seed=2)
    score = ds.y + np.random.default_rng(3).normal(0, 0.5, len(ds))
    m = compute_metrics(ds.y, score, ds.cell)
    assert 0.8 < m.auc < 1.0  # a median split would give one class (AUC NaN)


def test_label_target_that_is_not_binary_is_an_error():
    ds = deepchrome_like()
    ds.y = ds.y * 2.5
    with pytest.raises(HistexprError, match="should be 0/1 labels"):
        binary_targets(ds)


def test_neural_classifier_learns_labels_with_most_genes_positive():
    """Through a real fit: a 0/1 target with 60% positives is not collapsed to all zeros."""
    from conftest import FAST, make_planted
    from histexpr.estimators.neural import NeuralEstimator

    ds = make_planted(n_genes=150, cells=("E003", "E004"))
    ds.y = (ds.y > np.quantile(ds.y, 0.4)).astype(np.float32)  # 60% positive in all
    ds.target = "label(RPKM > cell median)"
    valid = ds.subset(np.flatnonzero(np.isin(ds.gene, ds.gene[:30])))
    train = ds.subset(np.flatnonzero(~np.isin(ds.gene, ds.gene[:30])))
    est = NeuralEstimator.create("convnet", {**FAST, "epochs": 4, "task": "classification"})
    est.fit(train, valid)
    p = est.predict(valid)
    assert 0.3 < p.mean() < 0.9  # all-zero targets drive every probability towards 0
    assert est.metrics_["valid_auc"] > 0.7  # defined: both classes among the targets
