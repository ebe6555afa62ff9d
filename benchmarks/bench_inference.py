"""Benchmark 2: inference of the 3-member ConvNet ensemble over 56 cell types x 20,000 genes.

1.12 M examples, 3.36 M member forward passes, about 45 TFLOP. First the
variants of the prediction path, interleaved with the matmul peaks on a
subset (see ``_common``):

- ``seed path``: the module as trained, fp32, batches of 1024, no folding
  (what ``histexpr.predict.predict`` did before);
- ``fold fp32`` / ``fold bf16``: batch norm folded into the convolutions
  (:func:`histexpr.models.fuse.fold_batchnorm`), fp32 or bf16 autocast;
- ``stacked bf16``: the three folded members as one network of grouped
  convolutions (``groups=3``), kept here because it was measured and is slower;
- batch sizes 1024 / 4096 / 16384 for the default path.

Then the full 1.12 M examples once through ``histexpr.predict.predict`` with the
chosen setting (bf16, folded, batch 4096), with the lower bound that the
measured bf16 peak implies (FLOPs / peak).

Usage::

    .venv/bin/python benchmarks/bench_inference.py           # full (~10 min on 2 busy cores)
    .venv/bin/python benchmarks/bench_inference.py --quick   # smoke (< 1 min)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    forward_flops,
    gflops,
    interleave,
    matmul_flops,
    matmul_seconds,
    print_machine,
)

from histexpr.models import ConvNetConfig, FoldEnsemble, build_model
from histexpr.models.fuse import fold_batchnorm
from histexpr.predict import predict

N_CELLS, N_GENES = 56, 20_000


class StackedEnsemble(nn.Module):
    """Folded ConvNet members as one network of grouped convolutions.

    Layer 1 concatenates the members' filters (the input is shared); later
    layers and the head use ``groups = n_members``. Output (n, 1): the mean.
    """

    def __init__(self, ensemble: FoldEnsemble):
        super().__init__()
        members = list(ensemble.members)
        k = len(members)
        convs = [[m for m in net.trunk.layers if isinstance(m, nn.Conv1d)] for net in members]
        layers: list[nn.Module] = []
        for depth, group in enumerate(zip(*convs, strict=True)):
            first = group[0]
            conv = nn.Conv1d(
                first.in_channels * (1 if depth == 0 else k),
                first.out_channels * k,
                first.kernel_size[0],
                stride=first.stride[0],
                groups=1 if depth == 0 else k,
            )
            with torch.no_grad():
                conv.weight.copy_(torch.cat([c.weight for c in group]))
                conv.bias.copy_(torch.cat([c.bias for c in group]))
            layers += [conv, nn.LeakyReLU(members[0].cfg.negative_slope)]
        self.features = nn.Sequential(*layers)
        heads = [net.head.out for net in members]
        self.head = nn.Conv1d(heads[0].in_channels * k, k, 1, groups=k)
        with torch.no_grad():
            self.head.weight.copy_(torch.cat([h.weight for h in heads]))
            self.head.bias.copy_(torch.cat([h.bias for h in heads]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).mean(dim=2).mean(dim=1, keepdim=True)


def trained_like_ensemble(cfg: ConvNetConfig | None = None, seed: int = 0) -> nn.Module:
    """A 3-member ensemble Predictor with non-trivial batch-norm statistics, eval mode."""
    torch.manual_seed(seed)
    model = build_model("ensemble", cfg or ConvNetConfig(), 5, 100, n_folds=3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def counts(n: int, seed: int = 0) -> np.ndarray:
    """Poisson read counts, shape (n, 5, 100), float32."""
    rng = np.random.default_rng(seed)
    return rng.poisson(3.0, size=(n, 5, 100)).astype(np.float32)


def stacked_predictor(model: nn.Module) -> nn.Module:
    """The Predictor with its folded FoldEnsemble replaced by a :class:`StackedEnsemble`."""
    folded = fold_batchnorm(model)
    folded.net = StackedEnsemble(folded.net).eval()
    return folded


def variant_timers(model: nn.Module, X: np.ndarray) -> dict:
    """name -> callable returning seconds per example on ``X``, each warmed up once."""
    folded = fold_batchnorm(model)
    stacked = stacked_predictor(model)

    def timer(module, precision, batch, fuse):
        def run() -> float:
            t0 = time.perf_counter()
            predict(module, X, batch_size=batch, precision=precision, fuse=fuse)
            return (time.perf_counter() - t0) / len(X)

        run()
        return run

    return {
        "seed path (fp32, batch 1024)": timer(model, "32", 1024, False),
        "fp32 unfolded, batch 4096": timer(model, "32", 4096, False),
        "fold fp32, batch 4096": timer(folded, "32", 4096, False),
        "bf16 unfolded, batch 4096": timer(model, "bf16", 4096, False),
        "fold bf16, batch 1024": timer(folded, "bf16", 1024, False),
        "fold bf16, batch 4096": timer(folded, "bf16", 4096, False),
        "fold bf16, batch 16384": timer(folded, "bf16", 16384, False),
        "stacked groups=3 bf16, batch 4096": timer(stacked, "bf16", 4096, False),
    }


def check_agreement(model: nn.Module, X: np.ndarray) -> dict:
    """Largest absolute difference of each fast path from the seed path, and the output spread."""
    ref = predict(model, X, batch_size=1024, fuse=False)
    out = {"output std": float(ref.std())}
    out["fold fp32"] = float(np.abs(predict(model, X) - ref).max())
    out["fold bf16"] = float(np.abs(predict(model, X, precision="bf16") - ref).max())
    out["stacked fp32"] = float(
        np.abs(predict(stacked_predictor(model), X, fuse=False) - ref).max()
    )
    return out


def full_run(model: nn.Module, flops: float, n_cells: int, n_genes: int) -> dict:
    """Predict ``n_cells`` blocks of ``n_genes`` examples (one per cell type), timed.

    One bf16 matmul is timed after every block, so the peak that bounds the run
    is measured under the same load as the run itself (median over blocks).

    Returns
    -------
    dict
        ``seconds``, ``examples``, ``tflop``, ``peak_bf16`` (GFLOP/s, median),
        ``bound_s`` (FLOPs / peak) and ``fraction`` (bound / seconds).
    """
    block = counts(n_genes, seed=1)
    peak = matmul_seconds(torch.bfloat16)
    peaks, seconds = [], 0.0
    for _ in range(n_cells):
        t0 = time.perf_counter()
        pred = predict(model, block, precision="bf16")
        seconds += time.perf_counter() - t0
        peaks.append(peak())
        assert pred.shape == (n_genes,)
    n = n_cells * n_genes
    p16 = gflops(matmul_flops(), float(np.median(peaks)))
    total = flops * n
    out = {
        "seconds": seconds,
        "examples": n,
        "tflop": total / 1e12,
        "peak_bf16": p16,
        "bound_s": total / (p16 * 1e9),
    }
    out["fraction"] = out["bound_s"] / seconds
    print(
        f"\nfull run: {n_cells} cells x {n_genes} genes = {n} examples, "
        f"{3 * n / 1e6:.2f} M member forward passes, {out['tflop']:.1f} TFLOP"
    )
    print(
        f"  predict(precision='bf16'), one cell type per call: {seconds:.1f} s, {n / seconds:.0f} examples/s"
    )
    print(
        f"  lower bound at the measured bf16 peak ({p16:.0f} GFLOP/s, median over the run): {out['bound_s']:.1f} s"
    )
    print(f"  fraction of bf16 matmul peak: {out['fraction']:.3f}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="subset only, < 1 min")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--subset", type=int, default=8192, help="examples per variant timing")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cells", type=int, default=N_CELLS)
    ap.add_argument("--genes", type=int, default=N_GENES)
    args = ap.parse_args(argv)
    if args.quick:
        args.subset, args.reps, args.cells, args.genes = 2048, 1, 2, 2048
    torch.set_num_threads(args.threads)
    print_machine()
    model = trained_like_ensemble()
    flops = forward_flops(model, torch.zeros(1, 5, 100))
    print(f"threads={args.threads}; ensemble forward FLOPs per example: {flops / 1e6:.2f} M")

    X = counts(args.subset)
    agree = check_agreement(model, X[:2048])
    print(
        "max |difference| from the seed path: "
        + ", ".join(f"{k} {v:.2e}" for k, v in agree.items())
    )
    fns = {"peak_bf16": matmul_seconds(torch.bfloat16), "peak_fp32": matmul_seconds(torch.float32)}
    fns.update(variant_timers(model, X))
    med = interleave(fns, args.reps)
    p16 = gflops(matmul_flops(), med.pop("peak_bf16"))
    p32 = gflops(matmul_flops(), med.pop("peak_fp32"))
    n_full = N_CELLS * N_GENES
    print(f"matmul peak fp32 {p32:.0f} GFLOP/s, bf16 {p16:.0f} GFLOP/s (same run, interleaved)")
    print(
        f"  {'variant':36s} {'examples/s':>10s} {'GFLOP/s':>8s} {'/bf16 pk':>8s} {'1.12M est s':>11s}"
    )
    for name, sec in med.items():
        gf = gflops(flops, sec)
        print(f"  {name:36s} {1 / sec:10.0f} {gf:8.1f} {gf / p16:8.3f} {sec * n_full:11.0f}")
    base = med["seed path (fp32, batch 1024)"]
    best = med["fold bf16, batch 4096"]
    print(
        f"speed-up of the default path (fold bf16, batch 4096) over the seed path: {base / best:.2f}x"
    )

    n = args.cells * args.genes
    if n:
        full_run(model, flops, args.cells, args.genes)
    print_machine()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
