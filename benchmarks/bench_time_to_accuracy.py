"""Benchmark 4: time to accuracy on full-scale simulated data.

Simulates the seed's setting (50 training cell types + the 6 unseen ones,
16,000 genes; cached as HDF5), splits genes as :func:`histexpr.workflows.experiment.run_experiment`
does (70 % train, 10 % valid, 20 % test), trains ridge, LightGBM and the
FoldEnsemble (the seed's ConvNet, 3 cell-type folds) under a wall-clock budget,
and prints MSE relative to the Bayes oracle on seen cell types (test genes) and
unseen cell types (all genes) against training wall time.

The ensemble's curve: after every (sub-)epoch of a member its best weights so
far are kept; the model at time t is the mean of the members started by t, each
at its best validated weights (what stopping at t would deliver). Ridge and
LightGBM give one point each (their full training time). Evaluation runs on a
fixed random subset of the test examples (``--eval-examples``, half seen, half
unseen) and is not counted in the wall time.

Usage::

    python benchmarks/bench_time_to_accuracy.py --budget-minutes 60
    python benchmarks/bench_time_to_accuracy.py --quick   # small, < 2 min
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback

from histexpr.config import to_dict
from histexpr.data.hdf5 import open_h5, read_h5
from histexpr.datasets import TRAIN_CELLS, UNSEEN_CELLS
from histexpr.estimators import make_estimator
from histexpr.estimators.neural import NeuralEstimator
from histexpr.models import Predictor
from histexpr.predict import predict
from histexpr.simulator import SimulatorConfig, oracle_for_dataset, simulate
from histexpr.workflows.experiment import ExperimentConfig, split_examples


class Snapshots(Callback):
    """Best-so-far weights of each member after every epoch, with the wall time.

    Members are numbered in the order their fits start (fold0, fold1, ...).
    """

    def __init__(self, t0: float):
        self.t0 = t0
        self.member = -1
        self.best: dict[int, float] = {}
        self.items: list[dict] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        self.member += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        loss = trainer.callback_metrics.get("valid_loss")
        if loss is None:
            return
        loss = float(loss)
        improved = loss < self.best.get(self.member, float("inf"))
        if improved:
            self.best[self.member] = loss
        net = pl_module.model.net
        self.items.append(
            {
                "seconds": time.perf_counter() - self.t0,
                "member": self.member,
                "epoch": trainer.current_epoch,
                "valid_loss": loss,
                "state": {k: v.detach().clone() for k, v in net.state_dict().items()}
                if improved
                else None,
            }
        )


def dataset(n_genes: int, cells: tuple[str, ...], cache: Path) -> Path:
    """The simulated data set, generated once and reused while its config matches."""
    config = SimulatorConfig(cells=cells, n_genes=n_genes)
    path = cache / f"tta-{len(cells)}cells-{n_genes}genes-v{config.version}.h5"
    if path.exists():
        with open_h5(path) as h:
            if h.meta.get("simulator") == to_dict(config):
                return path
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    simulate(config, out=path, progress=True)
    print(f"simulated {path} in {time.perf_counter() - t0:.0f} s")
    return path


def eval_subset(test, unseen, n: int, seed: int = 0):
    """A fixed random subset of ``test``: n/2 seen and n/2 unseen examples."""
    rng = np.random.default_rng(seed)
    is_unseen = np.isin(test.cell, unseen)
    parts = []
    for mask in (~is_unseen, is_unseen):
        idx = np.flatnonzero(mask)
        parts.append(np.sort(rng.choice(idx, min(len(idx), n // 2), replace=False)))
    return test.subset(np.concatenate(parts))


def scores(y, pred, oracle, unseen_mask) -> dict:
    """MSE and MSE / oracle MSE on seen and unseen examples."""
    out = {}
    for group, mask in (("seen", ~unseen_mask), ("unseen", unseen_mask)):
        mse = float(np.mean((pred[mask].astype(np.float64) - y[mask]) ** 2))
        ref = float(np.mean((oracle[mask].astype(np.float64) - y[mask]) ** 2))
        out[f"{group}_mse"] = mse
        out[f"{group}_rel"] = mse / ref
    return out


def ensemble_curve(est: NeuralEstimator, snaps: Snapshots, X: np.ndarray, points: int):
    """(seconds, predictions) of the ensemble at up to ``points`` snapshot times."""
    members = est.model_.net.members
    norm = est.model_.normalizer
    keep = [s for s in snaps.items if s["state"] is not None]
    if len(keep) > points:
        # Thin evenly in time, always keeping the last improvement of each member.
        last = {s["member"]: i for i, s in enumerate(keep)}
        picks = set(np.linspace(0, len(keep) - 1, points).round().astype(int)) | set(last.values())
        keep = [s for i, s in enumerate(keep) if i in picks]
    current: dict[int, np.ndarray] = {}
    curve = []
    for s in keep:
        net = copy.deepcopy(members[s["member"]])
        net.load_state_dict(s["state"])
        current[s["member"]] = predict(Predictor(norm, net), X).reshape(-1)
        curve.append((s["seconds"], np.mean(list(current.values()), axis=0)))
    return curve


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-minutes", type=float, default=60.0)
    ap.add_argument("--quick", action="store_true", help="small scale (8 cell types, 600 genes)")
    ap.add_argument("--n-genes", type=int, default=16000)
    ap.add_argument("--train-cells", type=int, default=50, help="first N of the 50 training cells")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/histexpr-bench"))
    ap.add_argument("--out", type=Path, default=None, help="write results JSON here")
    ap.add_argument("--models", default="ridge,lightgbm,ensemble")
    ap.add_argument("--eval-examples", type=int, default=20000)
    ap.add_argument(
        "--lgbm-rows", type=int, default=0, help="train LightGBM on a random subset (0: all)"
    )
    ap.add_argument("--curve-points", type=int, default=12)
    ap.add_argument("--epoch-examples", type=int, default=50000, help="examples per epoch")
    ap.add_argument("--valid-max", type=int, default=10000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--precision", default="auto", help="training precision (auto: bf16 if native)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="extra neural field=value")
    args = ap.parse_args(argv)

    cells = TRAIN_CELLS[: args.train_cells] + UNSEEN_CELLS
    n_genes = args.n_genes
    if args.quick:
        cells, n_genes = TRAIN_CELLS[:6] + UNSEEN_CELLS[:2], 600
        args.budget_minutes = min(args.budget_minutes, 0.6)
        args.eval_examples = min(args.eval_examples, 4000)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    path = dataset(n_genes, tuple(cells), args.cache)
    t0 = time.perf_counter()
    data = read_h5(path)
    unseen = [c for c in UNSEEN_CELLS if c in cells]
    train, valid, test = split_examples(data, ExperimentConfig(seed=0), unseen)
    del data
    ev = eval_subset(test, unseen, args.eval_examples)
    print(
        f"data: train {len(train)}, valid {len(valid)}, test {len(test)} "
        f"(evaluated on {len(ev)}); loaded in {time.perf_counter() - t0:.0f} s"
    )
    t0 = time.perf_counter()
    oracle = oracle_for_dataset(ev)
    print(f"oracle on the evaluation subset: {time.perf_counter() - t0:.0f} s")
    unseen_mask = np.isin(ev.cell, unseen)
    rows = []

    def record(seconds, model, pred):
        row = {
            "seconds": round(seconds, 1),
            "model": model,
            **scores(ev.y, pred, oracle, unseen_mask),
        }
        rows.append(row)
        print(
            f"{row['seconds']:>9.1f}  {model:<14}{row['seen_rel']:>9.3f}{row['unseen_rel']:>11.3f}"
            f"{row['seen_mse']:>10.3f}{row['unseen_mse']:>12.3f}",
            flush=True,
        )

    print(
        f"{'wall s':>9}  {'model':<14}{'seen/orc':>9}{'unseen/orc':>11}{'seen MSE':>10}{'unseen MSE':>12}"
    )
    record(0.0, "oracle", oracle)
    models = args.models.split(",")
    for kind in ("ridge", "lightgbm"):
        if kind in models:
            t0 = time.perf_counter()
            rows_kind = train
            if kind == "lightgbm" and 0 < args.lgbm_rows < len(train):
                pick = np.random.default_rng(0).choice(len(train), args.lgbm_rows, replace=False)
                rows_kind = train.subset(np.sort(pick))
            est = make_estimator(kind).fit(rows_kind, valid)
            record(time.perf_counter() - t0, kind, est.predict(ev))
    neural = {}
    if "ensemble" in models:
        n_member_train = len(train) * 2 // 3
        neural = {
            "lr": args.lr,
            "batch_size": args.batch_size,
            "precision": args.precision,
            "max_minutes": args.budget_minutes,
            "epoch_fraction": min(1.0, args.epoch_examples / max(n_member_train, 1)),
            "valid_max": args.valid_max,
            "trainval_max": 2000,
            "threads": args.threads,
            "progress": False,
            **dict(s.split("=", 1) for s in args.set),
        }
        est = NeuralEstimator.create("ensemble", neural)
        t0 = time.perf_counter()
        snaps = Snapshots(t0)
        # Members validate on their held-out fold; ``valid`` would only add metrics.
        est.fit(train, None, callbacks=[snaps])
        seconds = time.perf_counter() - t0
        # the counts the network reads (rescaled per cell type with depth_norm=cell)
        for s, pred in ensemble_curve(est, snaps, est.model_input(ev), args.curve_points):
            record(s, "ensemble", pred)
        record(seconds, "ensemble-final", est.predict(ev))
        print("members:", json.dumps(est.metrics_["members"]))
    if args.out is not None:
        args.out.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "neural": neural,
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
