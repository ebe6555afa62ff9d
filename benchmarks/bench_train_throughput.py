"""Benchmark 1: training throughput of the seed ConvNet against the machine's matmul peak.

For each thread count, interleaved in one run (see ``_common``): a 2048 x 2048
matmul in fp32 and bf16 (the peaks) and one AdamW training step of the default
ConvNet at several batch sizes, in fp32 and under bf16 autocast, with the
current engine (the model as built, its ``ConvStack`` training path and the
optimizer of :func:`histexpr.training.plan.make_optimizer`) and with the
previous one ("plain": the layers as a plain ``nn.Sequential``, foreach AdamW).
Prints examples/s, achieved GFLOP/s (3 x forward FLOPs per example, counted
from the layer shapes), the fraction of each peak and the speed-up over the
plain step, then two lines: ``fraction of bf16 matmul peak (default training
step)``, for what ``histexpr train`` runs by default (the precision and batch of
``TrainConfig()``), and ``fraction of bf16 matmul peak`` for the fast setting
(bf16 autocast, batch 2048).

Then the real training path end to end: ``NeuralEstimator("convnet")`` (Lightning)
with ``precision="32-true"`` and ``"bf16-mixed"`` on the same simulated data,
reporting examples/s and held-out test MSE of both.

Usage::

    .venv/bin/python benchmarks/bench_train_throughput.py            # full (~10 min)
    .venv/bin/python benchmarks/bench_train_throughput.py --quick    # smoke (< 1 min)
    .venv/bin/python benchmarks/bench_train_throughput.py --compile  # + torch.compile
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    forward_flops,
    gflops,
    interleave,
    matmul_flops,
    matmul_seconds,
    print_machine,
)

from histexpr.models import ConvNetConfig, build_model
from histexpr.training.config import TrainConfig
from histexpr.training.ddp import training_precision
from histexpr.training.plan import make_optimizer

#: The setting the ``fraction of bf16 matmul peak`` line reports.
DEFAULT_PRECISION, DEFAULT_BATCH = "bf16", 2048


def make_step(
    batch_size: int, precision: str, compile_model: bool = False, cfg=None, plain: bool = False
):
    """A callable running one training step, returning seconds per example.

    Parameters
    ----------
    batch_size : int
    precision : {"fp32", "bf16"}
        bf16: the forward pass under ``torch.autocast("cpu", torch.bfloat16)``
        (what Lightning's "bf16-mixed" does), loss and optimizer in fp32.
    compile_model : bool
        Wrap the model in ``torch.compile`` (inductor).
    cfg : ConvNetConfig, optional
    plain : bool
        The previous engine: the convolution stack as a plain ``nn.Sequential``
        (oneDNN convolutions in NCL layout, ``bernoulli_`` dropout) and foreach
        AdamW, instead of the model's ``ConvStack`` and the fused optimizer.

    Returns
    -------
    callable
        Already warmed up (compilation, oneDNN kernel selection done).
    """
    torch.manual_seed(0)
    model = build_model("convnet", cfg or ConvNetConfig(), 5, 100).train()
    if plain:
        model.net.trunk.layers = torch.nn.Sequential(*model.net.trunk.layers)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    else:
        opt = make_optimizer(model.parameters(), 1e-3, 1e-4)
    fwd = torch.compile(model) if compile_model else model
    X = torch.poisson(torch.full((batch_size, 5, 100), 3.0))
    y = torch.randn(batch_size)
    bf16 = precision == "bf16"

    def step() -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = fwd(X)
        loss = F.mse_loss(out.float(), y)
        loss.backward()
        opt.step()
        return (time.perf_counter() - t0) / batch_size

    step()
    step()
    return step


def default_setting() -> tuple[str, int]:
    """Precision ("fp32"/"bf16") and batch of the step ``histexpr train`` runs by default."""
    cfg = TrainConfig()
    resolved = training_precision(cfg.device.precision, cfg.device.accelerator)
    precision = "bf16" if resolved.startswith("bf16") else "fp32"
    return precision, cfg.optim.batch_size


def step_table(threads: int, batch_sizes, reps: int, compile_model: bool, cfg=None) -> dict:
    """Interleaved medians of the peaks and every (precision, batch) training step.

    Returns
    -------
    dict
        ``peak_fp32``, ``peak_bf16`` (GFLOP/s), ``flops`` (training FLOPs per
        example) and ``rows``: list of (name, examples/s, GFLOP/s).
    """
    torch.set_num_threads(threads)
    cfg = cfg or ConvNetConfig()
    flops = 3.0 * forward_flops(build_model("convnet", cfg, 5, 100), torch.zeros(1, 5, 100))
    fns = {"peak_fp32": matmul_seconds(torch.float32), "peak_bf16": matmul_seconds(torch.bfloat16)}
    for bs in batch_sizes:
        for prec in ("fp32", "bf16"):
            fns[f"{prec} batch {bs}"] = make_step(bs, prec, cfg=cfg)
            fns[f"plain {prec} batch {bs}"] = make_step(bs, prec, cfg=cfg, plain=True)
    if compile_model:
        t0 = time.perf_counter()
        fns[f"bf16 batch {max(batch_sizes)} compiled"] = make_step(
            max(batch_sizes), "bf16", compile_model=True, cfg=cfg
        )
        print(f"  torch.compile warm-up: {time.perf_counter() - t0:.0f} s")
    med = interleave(fns, reps)
    out = {
        "peak_fp32": gflops(matmul_flops(), med.pop("peak_fp32")),
        "peak_bf16": gflops(matmul_flops(), med.pop("peak_bf16")),
        "flops": flops,
        "rows": [(k, 1.0 / v, gflops(flops, v)) for k, v in med.items()],
    }
    return out


def print_table(threads: int, res: dict) -> float:
    """Print one thread count's table; return the fast setting's bf16-peak fraction."""
    p32, p16 = res["peak_fp32"], res["peak_bf16"]
    print(f"\nthreads={threads}: matmul peak fp32 {p32:.0f} GFLOP/s, bf16 {p16:.0f} GFLOP/s")
    print(f"  training FLOPs per example: {res['flops'] / 1e6:.2f} M (3 x forward)")
    print(
        f"  {'setting':28s} {'examples/s':>10s} {'GFLOP/s':>8s} {'/fp32 pk':>8s} {'/bf16 pk':>8s}"
        f" {'/plain':>7s}"
    )
    rates = {name: eps for name, eps, _ in res["rows"]}
    fracs = {}
    for name, eps, gf in res["rows"]:
        plain = rates.get(f"plain {name}")
        speedup = f"{eps / plain:7.2f}" if plain else ""
        print(f"  {name:28s} {eps:10.0f} {gf:8.1f} {gf / p32:8.3f} {gf / p16:8.3f} {speedup}")
        fracs[name] = gf / p16
    prec, batch = default_setting()
    default = fracs.get(f"{prec} batch {batch}", float("nan"))
    print(
        f"fraction of bf16 matmul peak (default training step): {default:.3f}  "
        f"(threads={threads}, {prec}, batch {batch})"
    )
    fast = fracs.get(f"{DEFAULT_PRECISION} batch {DEFAULT_BATCH}", float("nan"))
    print(
        f"fraction of bf16 matmul peak: {fast:.3f}  "
        f"(threads={threads}, {DEFAULT_PRECISION} autocast, batch {DEFAULT_BATCH})"
    )
    return fast


def loader_throughput(n: int, batch_size: int) -> float:
    """Examples/s of one shuffled epoch of the training loader alone (no model).

    The loader cuts whole batches from contiguous tensors
    (:func:`histexpr.training.plan.make_loader`); this shows its cost is
    negligible next to a training step.
    """
    from histexpr.training.plan import make_loader

    X = torch.zeros(n, 5, 100)
    y = torch.zeros(n)
    loader = make_loader(X, y, batch_size, shuffle=True, seed=0)
    t0 = time.perf_counter()
    seen = sum(len(xb) for xb, _ in loader)
    return seen / (time.perf_counter() - t0)


def lightning_compare(
    n_genes: int, n_cells: int, epochs: int, batch_size: int, threads: int, seed: int = 0
) -> dict:
    """Train the ConvNet through Lightning in fp32 and bf16-mixed on the same data.

    Simulated data (``n_cells`` cell types x ``n_genes`` genes), a tenth of the
    genes held out as the test set; no early stopping (patience = epochs).

    Returns
    -------
    dict
        precision -> {"examples_per_s", "seconds", "test_mse", "test_mse_bf16_predict"}.
    """
    from histexpr.estimators.neural import NeuralEstimator
    from histexpr.simulator import SimulatorConfig, simulate
    from histexpr.simulator.config import DEFAULT_TRAIN_CELLS

    data = simulate(SimulatorConfig(cells=DEFAULT_TRAIN_CELLS[:n_cells], n_genes=n_genes))
    genes = np.unique(data.gene)
    test_genes = np.random.default_rng(seed).choice(genes, max(1, len(genes) // 10), replace=False)
    is_test = np.isin(data.gene, test_genes)
    train, test = data.subset(~is_test), data.subset(is_test)
    out = {}
    for precision in ("32-true", "bf16-mixed"):
        sets = dict(epochs=epochs, patience=epochs, batch_size=batch_size, precision=precision)
        sets.update(threads=threads, progress=False, seed=seed)
        est = NeuralEstimator.create("convnet", sets)
        t0 = time.perf_counter()
        est.fit(train)
        seconds = time.perf_counter() - t0
        from histexpr.predict import predict

        pred32 = predict(est.model_, test.X)
        pred16 = predict(est.model_, test.X, precision="bf16")
        member = est.metrics_["members"][0]
        out[precision] = {
            "examples_per_s": member["examples_per_s"],
            "seconds": seconds,
            "test_mse": float(np.mean((pred32 - test.y) ** 2)),
            "test_mse_bf16_predict": float(np.mean((pred16 - test.y) ** 2)),
        }
    return out


def print_lightning(res: dict, args) -> None:
    print(
        f"\nLightning end to end (NeuralEstimator convnet, {args.cells} cells x {args.genes} genes, "
        f"{args.epochs} epochs, batch {args.lightning_batch}, threads {args.lightning_threads}):"
    )
    for prec, r in res.items():
        print(
            f"  precision={prec:10s} {r['examples_per_s']:8.0f} examples/s (fit {r['seconds']:.0f} s)"
            f"  test MSE {r['test_mse']:.4f} (bf16 predict {r['test_mse_bf16_predict']:.4f})"
        )
    a, b = res["32-true"]["test_mse"], res["bf16-mixed"]["test_mse"]
    print(f"  bf16-mixed / fp32 test MSE: {b / a:.4f}  (relative difference {abs(b - a) / a:.2%})")
    speed = res["bf16-mixed"]["examples_per_s"] / res["32-true"]["examples_per_s"]
    print(f"  bf16-mixed / fp32 examples/s: {speed:.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, < 1 min")
    ap.add_argument(
        "--threads", type=int, nargs="*", default=[1, 2], help="none: skip the step tables"
    )
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 2048, 4096])
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions (medians)")
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile")
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lightning-batch", type=int, default=256)
    ap.add_argument("--lightning-threads", type=int, default=1)
    ap.add_argument("--no-lightning", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.threads, args.reps = args.threads[:1], 1
        # both printed settings: the fast one and the default training step
        args.batch_sizes = sorted({DEFAULT_BATCH, default_setting()[1]})
        args.genes, args.cells, args.epochs, args.lightning_threads = 200, 2, 1, 1
    print_machine()
    n_loader = 20_000 if args.quick else 500_000
    eps = loader_throughput(n_loader, 256)
    print(f"training loader alone ({n_loader} examples, batch 256): {eps:,.0f} examples/s")
    for t in args.threads:
        print_table(t, step_table(t, args.batch_sizes, args.reps, args.compile))
    if not args.no_lightning:
        print_lightning(
            lightning_compare(
                args.genes, args.cells, args.epochs, args.lightning_batch, args.lightning_threads
            ),
            args,
        )
    print_machine()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
