"""Benchmark 9: training throughput with and without a busy neighbour process.

A ConvNet training step (the seed network, fp32, batch 256) and a LightGBM fit (810
rows x 500 features, the atlas-lightgbm size of issue #24) run in fresh child
processes, quiet and beside a neighbour that spins one core (a Python loop this
script starts and stops itself), under three thread settings:

- ``old``: the previous defaults: torch's thread count (every core), LightGBM
  ``num_threads=2``, OpenMP's default wait policy;
- ``passive``: the same thread counts with ``OMP_WAIT_POLICY=PASSIVE``;
- ``new``: what histexpr chooses now (``import histexpr`` sets the passive policy;
  :func:`histexpr._runtime.choose_threads` picks the threads from the free cores,
  one for small data).

Each child is a new process because OpenMP reads its wait policy once, when it
loads. Runs are interleaved (repetition, neighbour, workload, setting), medians
are printed. The figure of merit (issue #21): throughput per free core beside
the neighbour over the quiet throughput per free core, free cores being the
usable cores (quiet) and one fewer (busy); target >= 0.6.

Usage::

    .venv/bin/python benchmarks/bench_busy.py                # 3 repetitions, 4 s per measure
    .venv/bin/python benchmarks/bench_busy.py --quick        # 1 repetition, 2 s
    .venv/bin/python benchmarks/bench_busy.py --settings passive new --reps 2 --seconds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SETTINGS = ("old", "passive", "new")
WORKLOADS = ("convnet", "lightgbm")
#: LightGBM threads of the old default (``LightGBMConfig.n_jobs``).
OLD_LGB_THREADS = 2
#: Rows and features of the LightGBM fit (the atlas-lightgbm size of issue #24).
LGB_SHAPE = (810, 500)
#: Boosting rounds of one timed LightGBM fit.
LGB_ROUNDS = 20
BATCH = 256


def child(workload: str, setting: str, seconds: float) -> dict:
    """Measure one workload in this (fresh) process; the environment is already set."""
    threads = None
    if setting == "new":
        import histexpr  # noqa: F401  (sets the passive wait policy before torch loads)
        from histexpr._runtime import choose_threads

        rows = LGB_SHAPE[0] if workload == "lightgbm" else None
        threads = choose_threads(0, rows)
    import numpy as np

    if workload == "convnet":
        import torch
        import torch.nn.functional as F

        from histexpr.models import ConvNetConfig, build_model

        torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
        threads = torch.get_num_threads()
        torch.manual_seed(0)
        model = build_model("convnet", ConvNetConfig(), 5, 100).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        X = torch.poisson(torch.full((BATCH, 5, 100), 3.0))
        y = torch.randn(BATCH)

        def work() -> int:
            opt.zero_grad(set_to_none=True)
            F.mse_loss(model(X), y).backward()
            opt.step()
            return BATCH

    else:
        import lightgbm as lgb

        threads = threads or OLD_LGB_THREADS
        rng = np.random.default_rng(0)
        Xl = rng.normal(size=LGB_SHAPE)
        yl = Xl[:, :10].sum(axis=1) + rng.normal(size=LGB_SHAPE[0])
        params = {
            "objective": "regression",
            "num_threads": threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
            "seed": 0,
        }

        def work() -> int:
            lgb.train(params, lgb.Dataset(Xl, yl), num_boost_round=LGB_ROUNDS)
            return LGB_ROUNDS

    work()  # warm-up
    done, t0 = 0, time.perf_counter()
    while True:
        done += work()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
    return {"rate": done / elapsed, "threads": threads}


def run_child(workload: str, setting: str, seconds: float) -> dict:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("OMP_WAIT_POLICY", None)
    if setting == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    args = [sys.executable, __file__, "--child", workload, setting, "--seconds", str(seconds)]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def spinner() -> subprocess.Popen:
    """A neighbour process keeping one core busy until it is killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def per_free_core(quiet: float, busy: float, cores: int) -> float:
    """Busy throughput per free core over quiet throughput per free core."""
    if cores < 2 or quiet <= 0:
        return float("nan")
    return (busy / (cores - 1)) / (quiet / cores)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds per measurement")
    ap.add_argument("--quick", action="store_true", help="1 repetition of 2 s")
    ap.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    ap.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    ap.add_argument("--child", nargs=2, metavar=("WORKLOAD", "SETTING"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args.seconds)))
        return 0
    if args.quick:
        args.reps, args.seconds = 1, 2.0
    from _common import print_machine

    print_machine()
    cores = len(os.sched_getaffinity(0))
    rates: dict = {}
    threads: dict = {}
    for _ in range(args.reps):
        for busy in (False, True):
            neighbour = spinner() if busy else None
            try:
                time.sleep(0.5 if busy else 0.0)
                for workload in args.workloads:
                    for setting in args.settings:
                        res = run_child(workload, setting, args.seconds)
                        print(f"  {workload} {setting} busy={busy}: {res}", flush=True)
                        rates.setdefault((workload, setting, busy), []).append(res["rate"])
                        threads.setdefault((workload, setting, busy), []).append(res["threads"])
            finally:
                if neighbour is not None:
                    neighbour.kill()
                    neighbour.wait()
    unit = {"convnet": "examples/s", "lightgbm": "rounds/s"}
    print(f"\n{cores} usable cores; neighbour: one spinning process; medians of {args.reps}")
    print(
        f"{'workload':9s} {'setting':8s} {'threads q/b':>11s} {'quiet':>9s} {'busy':>9s} "
        f"{'busy/quiet':>10s} {'per free core':>13s}"
    )
    for workload in args.workloads:
        for setting in args.settings:
            q = statistics.median(rates[(workload, setting, False)])
            b = statistics.median(rates[(workload, setting, True)])
            tq = "/".join(str(t) for t in threads[(workload, setting, False)])
            tb = "/".join(str(t) for t in threads[(workload, setting, True)])
            print(
                f"{workload:9s} {setting:8s} {tq + ' ' + tb:>11s} {q:9.1f} {b:9.1f} "
                f"{b / q:10.2f} {per_free_core(q, b, cores):13.2f}  ({unit[workload]})"
            )
    print_machine()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
