"""Simulated profiles against the real binned data they were calibrated on."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from conftest import SHARED_DATA
from histexpr.data.dataset import MARKS
from histexpr.simulator import SimulatorConfig, simulate
from histexpr.workflows.calibrate import bin_demo, dataset_stats, load_toy, profile_stats

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(
    not (DATA / "chromoformer_demo" / "demo_meta.csv").exists(),
    reason="real reference data (../shared/data) not available",
)


@pytest.fixture(scope="module")
def sim_stats():
    # The profiles are calibrated for a typical cell type (all factors 1);
    # per-cell depth, enrichment and width scatter around it.
    cfg = SimulatorConfig(seed=5, cells=("E003",), n_genes=2000, depth_sd=0.0, enrich_sd=0.0)
    ds = simulate(replace(cfg, width_sd=0.0))
    return dataset_stats(ds, "E003")


def test_profile_stats_known_answer():
    X = np.zeros((4, len(MARKS), 100))
    X[:2, 0, 45:55] = 10.0
    s = profile_stats(X, np.array([True, True, False, False]))
    assert s.loc[MARKS[0], "center_hi"] == 10.0 and s.loc[MARKS[0], "center_lo"] == 0.0
    assert s.loc[MARKS[0], "frac_zero"] == pytest.approx(0.95)


@needs_data
def test_real_demo_orientation_puts_h3k36me3_downstream():
    oriented = bin_demo(DATA)
    raw = bin_demo(DATA, orient=False)
    k36 = MARKS.index("H3K36me3")
    hi = oriented.high
    gain = oriented.X[hi, k36, 70:].mean() / oriented.X[hi, k36, :30].mean()
    gain_raw = raw.X[hi, k36, 70:].mean() / raw.X[hi, k36, :30].mean()
    assert gain > 1.5 and gain > gain_raw


@needs_data
@pytest.mark.parametrize("source", ["demo", "toy"])
def test_simulated_stats_within_factor_of_real(sim_stats, source):
    real_data = bin_demo(DATA) if source == "demo" else load_toy(DATA)
    real = profile_stats(real_data.X, real_data.high)
    cols = ["mean", "center_hi", "center_lo", "down_hi", "frac_zero"]
    ratio = (sim_stats.loc[:, cols] / real.loc[:, cols]).to_numpy()
    # The demo is E003, the simulated cell type; the toy rows are 30 genes of
    # another cell type with about twice the H3K4me3 depth, so a wider tolerance.
    tol = 2.0 if source == "demo" else 4.0
    assert np.all((ratio > 1 / tol) & (ratio < tol)), (sim_stats[cols], real[cols])
    # The direction of every high-vs-low contrast at the TSS matches the real data,
    # except H3K9me3 and H3K4me1 whose real contrasts are within noise.
    for mark in ("H3K27me3", "H3K4me3"):
        real_sign = np.sign(real.loc[mark, "center_hi"] - real.loc[mark, "center_lo"])
        sim_sign = np.sign(sim_stats.loc[mark, "center_hi"] - sim_stats.loc[mark, "center_lo"])
        assert real_sign == sim_sign
