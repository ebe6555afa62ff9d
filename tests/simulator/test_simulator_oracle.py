"""The simulator's realism targets and its Bayes oracle on held-out genes."""

from __future__ import annotations

import numpy as np
import pytest

from histexpr.simulator import SimulatorConfig, oracle_for_dataset, oracle_predict, simulate
from histexpr.workflows.calibrate import realism_metrics

TRAIN = ("E003", "E005", "E016", "E066", "E116", "E122")
UNSEEN = ("E071", "E096")
CFG = SimulatorConfig(seed=11, cells=TRAIN + UNSEEN, n_genes=1500)


@pytest.fixture(scope="module")
def data():
    ds = simulate(CFG)
    return ds, oracle_for_dataset(ds)


def test_oracle_below_ridge_below_variance(data):
    ds, orc = data
    m = realism_metrics(ds, TRAIN, oracle=orc)
    assert m.oracle_mse < m.ridge_mse < m.var_y
    # Realism: the range reported for ridge-like models on real REMC data.
    assert 0.4 <= m.ridge_r2 <= 0.6, m
    assert 0.80 <= m.ridge_auc <= 0.90, m
    # The floor leaves headroom for non-linear models.
    assert m.ridge_mse / m.oracle_mse > 1.1, m


def test_cell_types_differ_so_unseen_ones_are_harder(data):
    ds, orc = data
    # Each cell type has its own depth, enrichment and width: the oracle of a
    # training cell type applied to an unseen one loses to the right likelihood.
    for cell in UNSEEN:
        idx = ds.cell == cell
        right = ((ds.y[idx] - orc[idx]) ** 2).mean()
        wrong = ((ds.y[idx] - oracle_predict(ds.X[idx], "E003", CFG)) ** 2).mean()
        assert right < wrong
    unseen = realism_metrics(ds, TRAIN, test_cells=UNSEEN, oracle=orc)
    assert unseen.oracle_mse < unseen.ridge_mse < unseen.var_y


def test_oracle_is_calibrated(data):
    ds, orc = data
    resid = ds.y - orc
    edges = np.quantile(orc, np.linspace(0, 1, 11))
    decile = np.clip(np.searchsorted(edges, orc, side="right") - 1, 0, 9)
    for d in range(10):
        r = resid[decile == d]
        se = r.std() / np.sqrt(len(r))
        assert abs(r.mean()) < 0.1 + 3 * se, (d, r.mean(), se)
    # ... and sharper than the per-cell prior mean.
    prior = np.array([ds.y[ds.cell == c].mean() for c in ds.cell])
    assert ((ds.y - orc) ** 2).mean() < 0.7 * ((ds.y - prior) ** 2).mean()
