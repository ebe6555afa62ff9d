"""Distributed training: global batches, Dask members and 2-process DDP on CPU."""

import os
import subprocess
import sys

import numpy as np
import pytest
from lightning.pytorch import Callback
from safetensors.numpy import load_file

from conftest import FAST, TINY, make_planted
from histexpr.data.hdf5 import write_h5
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import load_estimator
from histexpr.estimators.neural import NeuralEstimator
from histexpr.training.ddp import (
    GlobalBatches,
    is_global_zero,
    trainer_kwargs,
    training_precision,
)
from histexpr.training.plan import make_loader
from histexpr.workflows import train_model


@pytest.mark.parametrize("n, batch", [(100, 32), (97, 32), (65, 32), (33, 32), (10, 32)])
def test_global_batches_shard_the_same_batches_for_any_world_size(n, batch):
    sampler = GlobalBatches(n, batch, seed=3)
    sampler.sampler.set_epoch(2)
    one = sampler.batches(0, 1)
    # One process: exactly the batches of the single-process loader.
    torch_loader = make_loader(np.zeros((n, 1)), np.zeros(n), batch, shuffle=True, seed=3)
    torch_loader.batch_sampler.sampler.set_epoch(2)
    assert one == [list(b) for b in torch_loader.batch_sampler]
    for size in (2, 3):
        shards = [sampler.batches(r, size) for r in range(size)]
        assert len({len(s) for s in shards}) == 1  # every process steps equally often
        for b, global_batch in enumerate(one[: len(shards[0])]):
            union = sorted(i for s in shards for i in s[b])
            assert union == sorted(global_batch)
            assert min(len(s[b]) for s in shards) >= 1


def test_trainer_kwargs_choose_ddp_and_refuse_spawning(monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    one = trainer_kwargs("cpu", 1, 1, "auto")
    assert one["strategy"] == "auto" and "MASTER_ADDR" not in os.environ
    two = trainer_kwargs("cpu", 2, 1, "auto")
    assert two["strategy"] == "ddp" and not two["sync_batchnorm"]
    assert two["use_distributed_sampler"] is False
    assert os.environ["MASTER_ADDR"] == "127.0.0.1"
    assert trainer_kwargs("gpu", 2, 1, "ddp")["sync_batchnorm"]
    with pytest.raises(ConfigError, match="ddp_spawn"):
        trainer_kwargs("cpu", 2, 1, "ddp_spawn")
    with pytest.raises(ConfigError, match="positive"):
        trainer_kwargs("cpu", 0, 1, "auto")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_cpu_has_native_bf16(monkeypatch, native):
    from histexpr import _runtime

    monkeypatch.setattr(_runtime, "native_bf16", lambda: native)
    want = "bf16-mixed" if native else "32-true"
    assert training_precision("auto", "cpu") == want
    assert trainer_kwargs("cpu", 1, 1, "auto", "auto")["precision"] == want
    # an explicit setting wins, and a device without bf16 units trains in float32
    assert training_precision("32-true", "cpu") == "32-true"
    assert training_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert training_precision("auto", "mps") == "32-true"


def test_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    from histexpr import _runtime

    assert isinstance(_runtime.native_bf16(), bool)
    flags = "flags\t\t: fpu sse avx512f avx512_bf16 avx512bw\n"
    real_open = open
    monkeypatch.setattr(_runtime, "_CPU_FLAGS", {})
    monkeypatch.setattr(
        "builtins.open",
        lambda f, *a, **k: (
            __import__("io").StringIO(flags) if f == "/proc/cpuinfo" else real_open(f, *a, **k)
        ),
    )
    assert _runtime.native_bf16() is True
    monkeypatch.setattr(_runtime, "_CPU_FLAGS", {})
    flags = "flags\t\t: fpu sse avx2\n"
    assert _runtime.native_bf16() is False


def test_only_rank_zero_writes(monkeypatch):
    assert is_global_zero()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not is_global_zero()


def test_bad_budget_settings_are_refused():
    train = make_planted(20, cells=("E003", "E004"))
    with pytest.raises(ConfigError, match="epoch_fraction"):
        NeuralEstimator.create("convnet", {**FAST, "epoch_fraction": 0}).fit(train)


def test_epoch_fraction_and_valid_max_limit_the_work():
    train = make_planted(60, cells=("E003", "E004"))
    est = NeuralEstimator.create(
        "convnet", {**FAST, "epochs": 1, "epoch_fraction": 0.5, "valid_max": 5}
    ).fit(train)
    member = est.metrics_["members"][0]
    assert member["n_valid"] == 5 and member["epochs_run"] == 1


def test_dask_members_equal_serial_members(tmp_path):
    """Fold members trained on 2 local Dask worker processes give the serial model."""
    train = make_planted(40, cells=("E003", "E004", "E005", "E006"))
    cfg = {**FAST, "epochs": 2}
    serial = NeuralEstimator.create("ensemble", cfg).fit(train)
    dask = NeuralEstimator.create("ensemble", {**cfg, "workers": 2})
    dask.fit(train, run_dir=tmp_path)
    np.testing.assert_array_equal(dask.predict(train), serial.predict(train))
    for a, b in zip(serial.metrics_["members"], dask.metrics_["members"], strict=True):
        assert a["name"] == b["name"] and a["best_valid_loss"] == b["best_valid_loss"]
    assert [r["loss"] for r in dask.history_] == [r["loss"] for r in serial.history_]
    # Resuming the finished run loads every member locally (no cluster needed).
    again = NeuralEstimator.create("ensemble", {**cfg, "workers": 2})
    again.fit(train, run_dir=tmp_path, resume=True)
    np.testing.assert_array_equal(again.predict(train), serial.predict(train))


def test_ddp_two_cpu_processes_equal_one(tmp_path):
    """``histexpr train --set devices=2`` (DDP, gloo on 127.0.0.1) trains the same ConvNet.

    With dropout off both runs see the same global batches, batch norm uses the
    global batch statistics, and gradients average to the single-process ones, so
    the two runs differ only in the order of float additions. Both train in float64
    (``precision=64-true``): in float32 that rounding (~1e-7) puts two otherwise
    identical runs on different sides of a LeakyReLU kink now and then (here at step
    12 of 27, a pre-activation of -1e-7), after which the trajectories separate by
    ~1e-3; one float32 process is as far from the float64 run as two processes are.
    In float64 every weight agrees to ~1e-15. Conv biases feeding a batch norm (and
    so the running means) get only rounding-noise gradients, which Adam scales up
    (to ~1e-8 here), so they and the predictions agree closely rather than exactly.
    """
    data = write_h5(make_planted(80, cells=("E003", "E004")), tmp_path / "d.h5")
    sets = ["channels=" + TINY, "dropout=0", "epochs=3", "batch_size=32", "lr=1e-2"]
    sets += ["progress=false", "threads=1", "precision=64-true"]
    train_model(data, tmp_path / "one", "convnet", overrides=sets, log=lambda _: None)
    cmd = [sys.executable, "-m", "histexpr", "train", str(data), "--model", "convnet"]
    cmd += [a for s in [*sets, "devices=2"] for a in ("--set", s)]
    cmd += ["-o", str(tmp_path / "two")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("LOCAL_RANK", "NODE_RANK", "RANK", "WORLD_SIZE", "MASTER_PORT"):
        env.pop(var, None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = load_file(tmp_path / "one" / "weights.safetensors")
    two = load_file(tmp_path / "two" / "weights.safetensors")
    assert one.keys() == two.keys()
    for k in one:
        atol = 1e-9 if k.endswith("weight") else 1e-6
        np.testing.assert_allclose(two[k], one[k], rtol=0, atol=atol, err_msg=k)
    train = make_planted(80, cells=("E003", "E004"))
    p1 = load_estimator(tmp_path / "one").predict(train)
    p2 = load_estimator(tmp_path / "two").predict(train)
    assert np.mean((p1 - p2) ** 2) < 1e-3 * np.var(train.y)
    # Written once, by rank 0: no temporary directories left beside the model.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5", "one", "two"]


# ------------------------------------------------------------------ resume fingerprint


class _CrashAfter(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated interruption")


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A convnet run killed in its third epoch (last.ckpt holds 2 finished epochs)."""
    run = tmp_path_factory.mktemp("interrupted")
    train = make_planted(40, cells=("E003", "E004"))
    # No ridge skip: the network then improves every epoch on this planted data (with the
    # skip it starts at ridge and epoch 0 stays the best), so last.ckpt holds 2 epochs.
    # Which epochs improve depends on float rounding (the training engine's kernels); seed 4
    # improves at epoch 1 with the NLC layer stack of models/blocks.py (seeds 0-2 do not).
    opts = {**FAST, "epochs": 4, "patience": 10, "linear_skip": 0, "seed": 4}
    with pytest.raises(RuntimeError, match="simulated"):
        NeuralEstimator.create("convnet", opts).fit(train, run_dir=run, callbacks=[_CrashAfter(2)])
    assert (run / "checkpoints" / "fingerprint.json").is_file()
    return run, train, opts


def _resume(interrupted, tmp_path, train=None, **sets):
    import shutil

    run, data, opts = interrupted
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    est = NeuralEstimator.create("convnet", {**opts, **sets})
    return est.fit(data if train is None else train, run_dir=copy, resume=True)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train": make_planted(40, cells=("E003", "E005"))}, "cells (E003,E004 in the"),
        ({"train": make_planted(40, cells=("E003", "E004"), seed=9)}, "training data"),
        ({"lr": 0.5}, "optim.lr=0.01->0.5"),
        ({"channels": "4,4,8,8,8,8,8,32"}, "model settings (config.channels"),
    ],
)
def test_resume_with_other_data_cells_or_settings_says_what_differs(
    change, message, interrupted, tmp_path
):
    with pytest.raises(HistexprError, match="cannot resume") as err:
        _resume(interrupted, tmp_path, **change)
    assert message in str(err.value) and len(str(err.value).splitlines()) == 1


def test_resume_may_raise_epochs_or_change_the_runner(interrupted, tmp_path):
    est = _resume(interrupted, tmp_path, epochs=5, progress=True)
    assert est.metrics_["members"][0]["epochs_run"] >= 2


def test_resume_with_fewer_epochs_than_the_checkpoint_is_one_line(interrupted, tmp_path):
    with pytest.raises(HistexprError, match="checkpoint has 2 epochs, more than epochs=1"):
        _resume(interrupted, tmp_path, epochs=1)


def test_resume_of_an_unfingerprinted_run_checks_the_weights(interrupted, tmp_path):
    """Without a fingerprint (older runs) a changed architecture is still one line."""
    import shutil

    run, data, opts = interrupted
    copy = tmp_path / "old"
    shutil.copytree(run, copy)
    (copy / "checkpoints" / "fingerprint.json").unlink()
    est = NeuralEstimator.create("convnet", {**opts, "channels": "4,4,8,8,8,8,8,32"})
    with pytest.raises(HistexprError, match="does not fit the configured model") as err:
        est.fit(data, run_dir=copy, resume=True)
    assert len(str(err.value).splitlines()) == 1
