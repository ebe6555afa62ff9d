"""Tests of the REMC simulator: determinism, biology, formats, caching, oracle."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from histexpr.config import from_dict, to_dict
from histexpr.data.dataset import MARKS, HistoneDataset
from histexpr.data.hdf5 import open_h5, read_h5
from histexpr.datasets import TRAIN_CELLS, UNSEEN_CELLS, load_expression
from histexpr.errors import ConfigError, DataError
from histexpr.simulator import (
    DEFAULT_TRAIN_CELLS,
    DEFAULT_UNSEEN_CELLS,
    Simulator,
    SimulatorConfig,
    config_from_meta,
    default_config,
    default_dataset,
    oracle_for_dataset,
    oracle_predict,
    simulate,
)
from histexpr.simulator import generate as gen_mod
from histexpr.simulator.config import class_table, gene_classes, mark_dispersion
from histexpr.simulator.profiles import mean_counts, y_grid, y_to_bin

SMALL = SimulatorConfig(seed=3, cells=("E003", "E066", "E116"), n_genes=300)


@pytest.fixture(scope="module")
def small():
    return simulate(SMALL)


def test_config_round_trip_and_validation():
    cfg = replace(SMALL, genes=("ENSG00000000003", "ENSG00000000005"))
    assert from_dict(SimulatorConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError):
        SimulatorConfig(cells=("E003", "E003"))
    with pytest.raises(ConfigError):
        SimulatorConfig(shift_probs=(0.5, 0.5, 0.5, 0.5))
    with pytest.raises(ConfigError):
        simulate(replace(SMALL, cells=("E999",)))


def test_default_config_uses_real_train_and_unseen_cells():
    cfg = default_config()
    assert set(DEFAULT_TRAIN_CELLS) <= set(TRAIN_CELLS)
    assert set(DEFAULT_UNSEEN_CELLS) <= set(UNSEEN_CELLS)
    assert cfg.cells == DEFAULT_TRAIN_CELLS + DEFAULT_UNSEEN_CELLS
    assert cfg.n_genes == 2000


def test_targets_are_real_and_counts_integer(small):
    assert small.X.shape == (3 * 300, len(MARKS), 100)
    assert small.marks == MARKS
    assert np.all(small.X >= 0) and np.all(small.X == np.round(small.X))
    real = load_expression(["E066"])
    sub = small.select_cells(["E066"])
    np.testing.assert_allclose(sub.y, real.loc[sub.gene, "E066"].to_numpy(), rtol=1e-6)
    assert config_from_meta(small.meta) == SMALL


def test_grid_keeps_zero_point_mass():
    y = np.array([0.0, 1e-4, 0.5, 17.7, 30.0])
    g = y_to_bin(y, SMALL)
    assert g[0] == 0 and g[1] == 1 and g[-1] == SMALL.n_grid - 1
    grid = y_grid(SMALL)
    assert grid[0] == 0.0 and np.all(np.abs(grid[g[1:4]] - y[1:4]) <= SMALL.y_max / SMALL.n_grid)


def test_classes_are_independent_of_gene_subset():
    genes = ["ENSG00000000003", "ENSG00000000005", "ENSG00000000419"]
    np.testing.assert_array_equal(gene_classes(SMALL, genes)[1:], gene_classes(SMALL, genes[1:]))
    many = gene_classes(SMALL, [f"ENSG{i:011d}" for i in range(20000)])
    freq = np.bincount(many, minlength=len(class_table(SMALL).prob)) / len(many)
    np.testing.assert_allclose(freq, class_table(SMALL).prob, atol=0.015)


def test_profiles_follow_the_biology():
    mu = mean_counts(SMALL, "E003", np.array([0.0, 8.0]))
    cls = class_table(SMALL)
    k = int(np.flatnonzero((cls.cpg == 1) & (cls.shift == 0) & (cls.amp == 1))[0])
    k27, k36, k4me3 = (MARKS.index(m) for m in ("H3K27me3", "H3K36me3", "H3K4me3"))
    silent, active = mu[0, k], mu[1, k]
    assert active[k4me3, 45:55].mean() > 3 * silent[k4me3, 45:55].mean()
    assert silent[k4me3, 45:55].mean() > 3 * silent[k4me3, :10].mean()  # bivalent CpG promoter
    assert silent[k27, 45:55].mean() > 2 * active[k27, 45:55].mean()
    # H3K36me3 runs downstream only: transcript orientation matters.
    assert active[k36, 70:].mean() > 2 * active[k36, :30].mean()
    assert active[k36, 70:].mean() > 2 * silent[k36, 70:].mean()


def test_same_seed_identical_files_and_cell_subsets(tmp_path, small):
    a = simulate(SMALL, out=tmp_path / "a.h5")
    b = simulate(SMALL, out=tmp_path / "b.h5")
    da, db = read_h5(a), read_h5(b)
    np.testing.assert_array_equal(da.X, db.X)
    np.testing.assert_array_equal(da.y, db.y)
    np.testing.assert_array_equal(da.gene, db.gene)
    np.testing.assert_array_equal(da.X, small.X)
    assert da.meta["simulator"] == to_dict(SMALL)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b)]
    assert digest[0] == digest[1]
    # A subset of the cells regenerates identically; another seed does not.
    one = simulate(replace(SMALL, cells=("E066",)))
    np.testing.assert_array_equal(one.X, small.select_cells(["E066"]).X)
    other = simulate(replace(SMALL, seed=4, cells=("E066",)))
    assert not np.array_equal(other.X, one.X)


def test_npz_output_matches_h5(tmp_path, small):
    from histexpr.data.npz import read_npz

    path = simulate(SMALL, out=tmp_path / "train.npz", fmt="npz")
    back = read_npz(path)
    assert back.cells == list(SMALL.cells)
    np.testing.assert_array_equal(back.X, small.X)
    np.testing.assert_allclose(back.y, small.y)
    with pytest.raises(ConfigError):
        simulate(SMALL, out=tmp_path / "x.csv", fmt="csv")


def test_default_dataset_cached_and_regenerated(tmp_path, monkeypatch):
    cfg = replace(SMALL, cells=("E003",), n_genes=50)
    monkeypatch.setattr(gen_mod, "default_config", lambda: cfg)
    monkeypatch.setenv("HISTEXPR_CACHE", str(tmp_path / "cache"))
    path = default_dataset()
    assert path.parent == tmp_path / "cache"
    stamp = path.stat().st_mtime_ns
    assert default_dataset() == path and path.stat().st_mtime_ns == stamp
    changed = replace(cfg, seed=9)
    monkeypatch.setattr(gen_mod, "default_config", lambda: changed)
    assert default_dataset() == path
    with open_h5(path) as h:
        assert h.meta["simulator"] == to_dict(changed)


def _brute_force_posterior_mean(x, cell, cfg):
    """E[y | x] from full NB log-pmfs (scipy), without the linear-algebra shortcut."""
    from scipy.stats import nbinom

    sim = Simulator(cfg)
    y = sim.Y[:, list(cfg.cells).index(cell)].astype(np.float64)
    g = y_to_bin(y, cfg)
    mu = mean_counts(cfg, cell)
    r = mark_dispersion(cfg)[:, None]
    prob = class_table(cfg).prob
    num = den = 0.0
    logs = []
    for gi in np.unique(g):
        for k in range(len(prob)):
            m = mu[gi, k]
            ll = nbinom.logpmf(x, r, r / (r + m)).sum()
            logs.append((ll + np.log(np.mean(g == gi)) + np.log(prob[k]), y[g == gi].mean()))
    top = max(v for v, _ in logs)
    for v, ybar in logs:
        w = np.exp(v - top)
        num, den = num + w * ybar, den + w
    return num / den


def test_oracle_equals_brute_force_posterior(small):
    cfg = replace(SMALL, n_grid=24, shifts=(0.0, 2.0), shift_probs=(0.5, 0.5))
    ds = simulate(replace(cfg, cells=("E116",))).subset(slice(0, 3))
    fast = oracle_predict(ds.X, "E116", cfg)
    slow = [_brute_force_posterior_mean(x, "E116", cfg) for x in ds.X]
    np.testing.assert_allclose(fast, slow, rtol=1e-8, atol=1e-8)
    with pytest.raises(DataError):
        oracle_predict(ds.X, "E004", cfg)
    with pytest.raises(DataError):
        oracle_for_dataset(HistoneDataset(ds.X, ds.y, ds.cell, ds.gene))


def test_optional_marks_extend_the_core_marks_exactly():
    from histexpr.simulator.config import SIM_MARKS

    cfg = replace(SMALL, cells=("E003",), n_genes=60)
    five = simulate(cfg)
    seven = simulate(replace(cfg, marks=SIM_MARKS))
    assert seven.marks == SIM_MARKS and five.marks == MARKS
    # The core counts do not depend on the optional marks (own random streams).
    assert np.array_equal(seven.select_marks(MARKS).X, five.X)
    one = simulate(replace(cfg, marks=("H3K9ac", "H3K4me3")))
    assert np.array_equal(one.X, seven.select_marks(("H3K9ac", "H3K4me3")).X)
    with pytest.raises(ConfigError, match="marks"):
        replace(cfg, marks=("H3K4me3", "CTCF"))
    with pytest.raises(ConfigError, match="course npz"):
        simulate(replace(cfg, marks=SIM_MARKS), out="x.npz", fmt="npz")


def test_oracle_with_seven_marks_is_exact_and_better():
    from histexpr.simulator.config import SIM_MARKS

    cfg = replace(SMALL, cells=("E003",), n_genes=400)
    five = simulate(cfg)
    seven = simulate(replace(cfg, marks=SIM_MARKS))
    mse5 = np.mean((five.y - oracle_for_dataset(five)) ** 2)
    mse7 = np.mean((seven.y - oracle_for_dataset(seven)) ** 2)
    assert mse7 < mse5
    # The posterior over 7 marks equals the brute-force NB posterior on one example.
    cfg7 = replace(cfg, marks=SIM_MARKS, n_grid=24, shifts=(0.0, 2.0), shift_probs=(0.5, 0.5))
    ds = simulate(cfg7).subset(slice(0, 2))
    got = Simulator(cfg7).posterior_mean(ds.X, "E003")
    want = [_brute_force_posterior_mean(x, "E003", cfg7) for x in ds.X]
    assert np.allclose(got, want, rtol=1e-6)
