"""Smoke tests of the benchmark scripts' helpers on tiny sizes (no speed assertions)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT

BENCH = REPO_ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import bench_busy  # noqa: E402
import bench_inference  # noqa: E402
import bench_load  # noqa: E402
import bench_train_throughput  # noqa: E402

from histexpr.models import ConvNetConfig, build_model  # noqa: E402
from histexpr.predict import predict  # noqa: E402

TINY = ConvNetConfig(channels=(4, 4, 8, 8, 8, 8, 8, 8))


def test_forward_flops_matches_the_layer_formula():
    model = build_model("convnet", ConvNetConfig(), 5, 100)
    # 2 * C_in * C_out * K * L_out per layer, lengths 49 47 23 21 10 8 3 1, plus the head.
    layers = [(5, 64, 49), (64, 64, 47), (64, 128, 23), (128, 128, 21)]
    layers += [(128, 256, 10), (256, 256, 8), (256, 512, 3), (512, 512, 1)]
    expected = sum(2 * a * b * 3 * n for a, b, n in layers) + 2 * 512
    assert _common.forward_flops(model, torch.zeros(1, 5, 100)) == expected
    assert model.training  # mode restored
    ens = build_model("ensemble", TINY, 5, 100, n_folds=3)
    one = _common.forward_flops(build_model("convnet", TINY, 5, 100), torch.zeros(1, 5, 100))
    assert _common.forward_flops(ens, torch.zeros(1, 5, 100)) == 3 * one


def test_interleave_takes_medians_in_round_robin_order():
    calls = []
    seq = iter([5.0, 1.0, 3.0])

    def a():
        calls.append("a")
        return next(seq)

    def b():
        calls.append("b")
        return 2.0

    assert _common.interleave({"a": a, "b": b}, 3) == {"a": 3.0, "b": 2.0}
    assert calls == ["a", "b"] * 3


def test_matmul_timer_and_memory_probes():
    t = _common.matmul_seconds(torch.float32, n=32)()
    assert t > 0 and _common.matmul_flops(32) == 2 * 32**3
    assert _common.gflops(2e9, 2.0) == pytest.approx(1.0)
    assert _common.rss_mib() > 0 and _common.peak_rss_mib() > 0
    info = _common.machine_info()
    assert info["cores"] >= 1 and len(info["loadavg"]) == 3


def test_train_step_and_fraction_line(capsys):
    assert bench_train_throughput.make_step(8, "bf16", cfg=TINY)() > 0
    assert bench_train_throughput.loader_throughput(100, 32) > 0
    res = {"peak_fp32": 100.0, "peak_bf16": 400.0, "flops": 4e7, "rows": []}
    res["rows"] = [("bf16 batch 2048", 2500.0, 100.0), ("fp32 batch 256", 1000.0, 40.0)]
    frac = bench_train_throughput.print_table(1, res)
    assert frac == pytest.approx(0.25)
    assert "fraction of bf16 matmul peak: 0.250" in capsys.readouterr().out


def test_inference_variants_agree():
    model = bench_inference.trained_like_ensemble(TINY)
    X = bench_inference.counts(64)
    ref = predict(model, X, fuse=False)
    stacked = bench_inference.stacked_predictor(model)
    np.testing.assert_allclose(predict(stacked, X, fuse=False), ref, rtol=1e-4, atol=1e-6)
    agree = bench_inference.check_agreement(model, X)
    assert agree["fold fp32"] < 1e-5 and agree["stacked fp32"] < 1e-5
    timers = bench_inference.variant_timers(model, X[:16])
    assert all(fn() > 0 for fn in timers.values())
    flops = _common.forward_flops(model, torch.zeros(1, 5, 100))
    run = bench_inference.full_run(model, flops, 2, 16)
    assert run["examples"] == 32 and run["fraction"] > 0


def test_load_phases_on_a_tiny_npz(tmp_path):
    res, arrays_mib, x_mib = bench_load.run(2, 40, tmp_path)
    assert x_mib == pytest.approx(arrays_mib * 5 / 7)
    assert set(res) == {
        "convert npz -> h5",
        "load_dataset(h5)",
        "read_npz(npz)",
        "load_dataset(npz)",
    }
    assert arrays_mib == pytest.approx(2 * 40 * 700 * 4 / 2**20)
    assert all(s >= 0 for s, _, _ in res.values())
    assert (tmp_path / "train.h5").is_file()


def test_atlas_scale_benchmark_runs_on_a_tiny_size(capsys):
    import bench_atlas_scale

    bench_atlas_scale.main(
        [
            "--genes",
            "60",
            "--train-cells",
            "3",
            "--models",
            "gene-mean,atlas-ridge",
            "--n-jobs",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert "9 cell types x 60 genes" in out and "atlas-ridge" in out and "MSE/oracle" in out


def test_bench_busy_ratio_per_free_core():
    # half the quiet rate with one of two cores taken: the neighbour's share exactly
    assert bench_busy.per_free_core(100.0, 50.0, cores=2) == pytest.approx(1.0)
    assert bench_busy.per_free_core(100.0, 15.0, cores=2) == pytest.approx(0.3)
    assert np.isnan(bench_busy.per_free_core(100.0, 50.0, cores=1))
