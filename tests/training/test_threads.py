"""Thread counts that cannot collapse under load: one owner (histexpr._runtime)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import make_planted
from histexpr import _runtime
from histexpr._runtime import choose_threads, free_cores, torch_threads, usable_cores


@pytest.fixture
def busy(monkeypatch):
    """Pretend other processes keep ``n`` cores busy (no sampling, no cache)."""

    def set_busy(n: float):
        monkeypatch.setattr(_runtime, "_busy_elsewhere", lambda seconds=0.0: float(n))
        monkeypatch.setattr(_runtime, "_FREE_CORES", {})
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    return set_busy


def test_free_cores_leave_the_busy_ones_out(busy, monkeypatch):
    monkeypatch.setattr(_runtime, "usable_cores", lambda: 4)
    busy(0.0)
    assert free_cores() == 4
    busy(1.0)
    assert free_cores() == 3
    busy(0.9)  # a core busy most of the time counts as taken
    assert free_cores() == 3
    busy(9.0)  # never fewer than one
    assert free_cores() == 1


def test_a_niced_neighbour_leaves_its_core_to_us():
    """``/proc/stat`` ticks: user, nice, system, idle, iowait, irq, softirq, steal,
    guest, guest_nice. A nice-19 job yields its core to a training step at nice 0."""
    fields = [100.0, 500.0, 20.0, 900.0, 5.0, 1.0, 2.0, 3.0, 40.0, 30.0]
    mine = _runtime._busy_ticks(fields, count_niced=False)
    assert mine == 100 + 20 + 1 + 2 + 3 - 40  # guest ticks are already in user
    assert _runtime._busy_ticks(fields, count_niced=True) == mine + 500 - 30
    assert _runtime._busy_ticks(fields[:4], count_niced=True) == 620  # old kernels: 4 fields


def test_free_cores_are_sampled_once_per_interval(busy, monkeypatch):
    calls = []
    busy(0.0)
    monkeypatch.setattr(_runtime, "_busy_elsewhere", lambda seconds=0.0: calls.append(1) or 0.0)
    free_cores()
    free_cores()
    assert len(calls) == 1


def test_an_explicit_setting_wins_and_small_work_gets_one_thread(busy, monkeypatch):
    monkeypatch.setattr(_runtime, "usable_cores", lambda: 4)
    busy(0.0)
    assert choose_threads(3) == 3
    assert choose_threads(-1) == 4
    assert choose_threads(0) == 4
    assert choose_threads(0, work=810) == 1  # issue #24: LightGBM on 810 rows
    assert choose_threads(0, work=10**6) == 4
    busy(1.0)
    assert choose_threads(0, work=10**6) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # e.g. a Dask worker's setting
    assert choose_threads(0) == 2


def test_torch_threads_sets_torch_and_blas_then_restores(busy, monkeypatch):
    from threadpoolctl import threadpool_info

    monkeypatch.setattr(_runtime, "usable_cores", lambda: 2)
    busy(1.0)  # one neighbour on two cores
    before = torch.get_num_threads()
    with torch_threads() as n:
        assert n == 1 and torch.get_num_threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert torch.get_num_threads() == before
    with torch_threads(2) as n:
        assert n == 2 and torch.get_num_threads() == 2


def test_importing_histexpr_makes_openmp_wait_passively_unless_set():
    code = "import os, histexpr; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ACTIVE"


def test_lightgbm_fits_small_data_on_one_thread_unless_told(busy, monkeypatch):
    from histexpr.estimators.baseline_config import LightGBMConfig
    from histexpr.estimators.diff import DiffConfig
    from histexpr.estimators.trees import lightgbm_params

    monkeypatch.setattr(_runtime, "usable_cores", lambda: 4)
    busy(0.0)
    assert LightGBMConfig().n_jobs == 0 and DiffConfig().n_jobs == 0
    assert lightgbm_params(LightGBMConfig(), rows=810)["num_threads"] == 1
    assert lightgbm_params(LightGBMConfig(), rows=10**6)["num_threads"] == 4
    assert lightgbm_params(LightGBMConfig(n_jobs=3), rows=810)["num_threads"] == 3


def test_a_lightgbm_model_trains_on_one_thread_on_small_data(busy):
    from histexpr.estimators import make_estimator

    busy(0.0)
    est = make_estimator("lightgbm", ["n_estimators=5"]).fit(make_planted(n_genes=60))
    assert int(est.booster_.params["num_threads"]) == 1
    assert usable_cores() >= 1
