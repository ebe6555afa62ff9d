"""Interrupted runs: SIGKILL of real ``histexpr`` processes, then resume or rerun.

- Training: a ``python -m histexpr train`` process is killed twice (each time
  right after it wrote a checkpoint, i.e. inside the next epoch), resumed with
  ``--resume`` each time, and must end with the same weights, metrics, history
  and predictions as an uninterrupted run with the same seed.
- Writes: ``convert`` and ``simulate`` processes are killed while their output
  is half written; only a hidden temporary file may remain, never a file under
  the final name, and the temporary file does not read as a dataset.
- In-process interruptions of the prediction and evaluation writes leave nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from conftest import make_planted
from histexpr.cli import main
from histexpr.data.convert import load_dataset
from histexpr.data.hdf5 import write_h5
from histexpr.data.npz import write_npz
from histexpr.errors import HistexprError

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
TRAIN_SETTINGS = [
    "--model",
    "convnet",
    "--seed",
    "3",
    *("--set", "epochs=5", "--set", "patience=10", "--set", "batch_size=32"),
    *("--set", "channels=8,8,8,8,16,16,16,16", "--set", "threads=1"),
    *("--set", "progress=false", "--set", "seed=5"),
]
#: Interruptions survived, reported by the summary test.
SURVIVED: list[str] = []


def start(*args, code: str | None = None) -> subprocess.Popen:
    """``python -m histexpr ARGS`` (or ``python -c CODE ARGS``) in the background."""
    prefix = ["-c", code] if code else ["-m", "histexpr"]
    return subprocess.Popen(
        [sys.executable, *prefix, *map(str, args)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen, condition, timeout: float = 60.0) -> None:
    """Poll ``condition()`` every 5 ms until true; fail if the process ends first."""
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"process ended (code {proc.returncode}) before the condition:\n{err}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("timed out waiting for the process")
        time.sleep(0.005)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


def trained(model_dir: Path) -> dict:
    """What must not depend on interruptions: weights, metrics (minus timings), history."""
    metrics = json.loads((model_dir / "metrics.json").read_text())
    for m in metrics["members"]:
        del m["seconds"], m["examples_per_s"]
    return {
        "weights": load_file(model_dir / "weights.safetensors"),
        "metrics": metrics,
        "history": (model_dir / "history.csv").read_text(),
    }


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.h5"
    write_h5(make_planted(n_genes=150, cells=("E003", "E004", "E005")), path)
    return path


def test_sigkilled_training_resumes_to_the_same_model(train_file, tmp_path):
    # reference run in this process: it saves two interpreter start-ups
    assert main_code("train", train_file, "-o", tmp_path / "whole", *TRAIN_SETTINGS) == 0
    out = tmp_path / "killed"
    ckpt = out / "checkpoints" / "model" / "last.ckpt"
    run = start("train", train_file, "-o", out, *TRAIN_SETTINGS)
    wait_for(run, ckpt.is_file)  # epoch 0 checkpointed: now inside epoch 1
    kill(run)
    assert not (out / "model.json").exists(), "an interrupted run must not look complete"
    assert main_code("predict", out, train_file, "-o", tmp_path / "p.csv") == 2
    SURVIVED.append("train: SIGKILL after the first checkpoint")

    first = ckpt.stat().st_mtime_ns
    run = start("train", train_file, "-o", out, *TRAIN_SETTINGS, "--resume")
    wait_for(run, lambda: ckpt.is_file() and ckpt.stat().st_mtime_ns != first)
    kill(run)
    SURVIVED.append("train: SIGKILL after a checkpoint of the resumed run")

    assert main_code("train", train_file, "-o", out, *TRAIN_SETTINGS, "--resume") == 0
    a, b = trained(tmp_path / "whole"), trained(out)
    assert a["weights"].keys() == b["weights"].keys()
    for k in a["weights"]:
        np.testing.assert_array_equal(a["weights"][k], b["weights"][k], err_msg=k)
    assert a["metrics"] == b["metrics"]
    assert a["history"] == b["history"]
    assert not (out / "checkpoints").exists()  # the finished bundle replaced the run dir
    for name in ("whole", "killed"):
        assert (
            main_code("predict", tmp_path / name, train_file, "-o", tmp_path / f"{name}.csv") == 0
        )
    assert (tmp_path / "whole.csv").read_bytes() == (tmp_path / "killed.csv").read_bytes()


def test_damaged_checkpoint_restarts_the_member(tmp_path):
    """A truncated last.ckpt (a full disk, a bad copy) is reported; the member retrains."""
    from lightning.pytorch import Callback

    from histexpr.estimators.neural import NeuralEstimator

    data = make_planted(n_genes=60, cells=("E003", "E004"))
    opts = {"epochs": 3, "channels": "4,4,4,4,8,8,8,8", "progress": False, "threads": 1}
    whole = NeuralEstimator.create("convnet", opts).fit(data, run_dir=tmp_path / "a")

    class Crash(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                raise RuntimeError("simulated crash")

    run = tmp_path / "b"
    with pytest.raises(RuntimeError, match="simulated"):
        NeuralEstimator.create("convnet", opts).fit(data, run_dir=run, callbacks=[Crash()])
    ckpt = run / "checkpoints" / "model" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    stale = ckpt.parent / ".last.ckpt.abc.ckpt.tmp"
    stale.write_bytes(b"half a checkpoint")
    with pytest.warns(UserWarning, match="damaged checkpoint"):
        resumed = NeuralEstimator.create("convnet", opts).fit(data, run_dir=run, resume=True)
    assert not stale.exists()
    np.testing.assert_array_equal(resumed.predict(data), whole.predict(data))
    SURVIVED.append("train: resume from a truncated last.ckpt")


SLOW_WRITES = """
import sys, time
from histexpr.data import hdf5, npz
def slowed(write):
    def slow(self, *args, **kwargs):
        write(self, *args, **kwargs)
        print("block written", flush=True)
        time.sleep(60)
    return slow
hdf5.H5Writer.append = slowed(hdf5.H5Writer.append)
npz.NpzWriter.write_cell = slowed(npz.NpzWriter.write_cell)
from histexpr.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize(
    "command",
    ["convert", "simulate-h5", "simulate-npz"],
)
def test_sigkill_during_a_write_leaves_no_complete_looking_file(command, tmp_path):
    src = tmp_path / "train.npz"
    write_npz(make_planted(n_genes=20, cells=("E003", "E004")), src)
    if command == "convert":
        out = tmp_path / "out.h5"
        args = ["convert", src, out, "--no-progress"]
    else:
        out = tmp_path / ("sim.h5" if command == "simulate-h5" else "sim.npz")
        args = ["simulate", "-o", out, "--n-genes", "30", "--cells", "E003,E004"]
        args += ["--no-progress"]
    proc = start(*args, code=SLOW_WRITES)
    # the first block is in the temporary file; the process now sleeps before the next
    assert proc.stdout.readline().strip() == "block written"
    kill(proc)
    temps = list(tmp_path.glob(f".{out.name}.*.tmp"))
    assert not out.exists()
    assert len(temps) == 1 and temps[0].stat().st_size > 0
    with pytest.raises(HistexprError):
        load_dataset(temps[0], fmt="h5" if out.suffix == ".h5" else "npz")
    SURVIVED.append(f"{command}: SIGKILL mid-write")
    # a rerun is unaffected by the leftover, writes a complete file and removes the
    # leftover (a temporary of this output whose writer is gone)
    assert main_code(*args) == 0
    assert len(load_dataset(out)) > 0
    assert not list(tmp_path.glob(f".{out.name}.*.tmp"))


def main_code(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code
    return 0


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_interrupted_output_write_leaves_nothing(command, tmp_path, monkeypatch):
    data = tmp_path / "d.h5"
    write_h5(make_planted(n_genes=30, cells=("E003", "E004")), data)
    assert main_code("train", data, "--model", "ridge", "-o", tmp_path / "m") == 0
    original = pd.DataFrame.to_csv

    def interrupted(self, path, *args, **kwargs):
        Path(path).write_text("id,expression\nE003_1,")  # half a file, then the crash
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", interrupted)
    out = tmp_path / "out.csv"
    assert main_code(command, tmp_path / "m", data, "-o", out) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5", "m"]
    monkeypatch.setattr(pd.DataFrame, "to_csv", original)
    assert main_code(command, tmp_path / "m", data, "-o", out) == 0 and out.is_file()
    SURVIVED.append(f"{command}: interrupted CSV write")


def test_interruptions_survived():
    if not SURVIVED:
        pytest.skip("run together with the interruption tests")
    print(f"\ninterruptions survived: {len(SURVIVED)}: " + "; ".join(SURVIVED))
    assert len(SURVIVED) >= 6


# --------------------------------------------------------------------------- Ctrl-C (SIGINT)


def interrupt(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_ctrl_c_during_neural_training_says_interrupted_and_how_to_resume(train_file, tmp_path):
    out = tmp_path / "m"
    ckpt = out / "checkpoints" / "model" / "last.ckpt"
    settings = [a if a != "epochs=5" else "epochs=500" for a in TRAIN_SETTINGS]
    run = start("train", train_file, "-o", out, *settings)
    wait_for(run, ckpt.is_file, timeout=240)  # inside training: Lightning holds Ctrl-C
    code, err = interrupt(run)
    assert code == 130, err
    assert "interrupted" in err and "--resume" in err
    assert "Traceback" not in err
    assert not (out / "model.json").exists() and ckpt.is_file()
    SURVIVED.append("train: Ctrl-C inside Lightning")


SWALLOWING_WRITES = """
import sys, time
from histexpr.data import hdf5
append = hdf5.H5Writer.append
def swallowing(self, *args, **kwargs):
    append(self, *args, **kwargs)
    print("block written", flush=True)
    try:  # a library that eats Ctrl-C, as some C extensions do
        time.sleep(5)
    except KeyboardInterrupt:
        pass
hdf5.H5Writer.append = swallowing
from histexpr.cli import main
main(sys.argv[1:])
"""


def test_ctrl_c_during_convert_is_never_swallowed(tmp_path):
    src = tmp_path / "train.npz"
    write_npz(make_planted(n_genes=20, cells=("E003", "E004")), src)
    out = tmp_path / "out.h5"
    proc = start("convert", src, out, "--no-progress", code=SWALLOWING_WRITES)
    assert proc.stdout.readline().strip() == "block written"
    code, err = interrupt(proc)
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.h5.*"))
    SURVIVED.append("convert: Ctrl-C swallowed by a library")
