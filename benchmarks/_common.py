"""Shared helpers of the benchmark scripts: machine facts, matmul peak, FLOPs, timing, memory.

The machines these run on are shared and their load changes by the second, so
every figure that is compared with another is measured *in the same run*,
interleaved (``A B C A B C ...``) and summarised by the median: a burst of
load then hits all contenders alike and a ratio stays meaningful.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

#: Side of the square matrices of the peak measurement (the issue's 2048 x 2048).
PEAK_N = 2048


def machine_info() -> dict:
    """CPU model, relevant ISA flags, cores, torch build and the current load.

    Returns
    -------
    dict
        ``cpu``, ``cores``, ``flags`` (avx512_bf16 / amx present), ``torch``,
        ``threads`` (torch's intra-op setting), ``loadavg`` (1, 5, 15 min).
    """
    cpu, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and cpu in ("unknown", "", "x86_64"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    wanted = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "flags": {f: f in flags for f in wanted},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "loadavg": os.getloadavg(),
    }


def print_machine(info: dict | None = None) -> None:
    """Print :func:`machine_info` as a few ``key: value`` lines."""
    info = info or machine_info()
    flags = " ".join(f"{k}={'yes' if v else 'no'}" for k, v in info["flags"].items())
    print(f"machine: {info['cpu']}, {info['cores']} cores; {flags}")
    print(f"torch {info['torch']}; load average {' '.join(f'{v:.2f}' for v in info['loadavg'])}")


def matmul_seconds(dtype: torch.dtype, n: int = PEAK_N) -> Callable[[], float]:
    """A callable timing one ``n x n`` by ``n x n`` matmul in ``dtype`` (seconds).

    The operands are allocated once; every call is one timed product.
    """
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up: oneDNN/BLAS picks and caches its kernel

    def run() -> float:
        t0 = time.perf_counter()
        torch.mm(a, b)
        return time.perf_counter() - t0

    return run


def matmul_flops(n: int = PEAK_N) -> float:
    """Floating-point operations of one ``n x n`` matmul: ``2 n^3``."""
    return 2.0 * n**3


def interleave(fns: dict[str, Callable[[], float]], reps: int) -> dict[str, float]:
    """Median seconds of each timed callable, run round-robin ``reps`` times.

    Parameters
    ----------
    fns : dict of str -> callable
        Each returns the seconds of one repetition (it times itself, so set-up
        outside the measured region is not counted).
    reps : int

    Returns
    -------
    dict of str -> float
        Median seconds per name.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, reps)):
        for k, fn in fns.items():
            times[k].append(fn())
    return {k: statistics.median(v) for k, v in times.items()}


def forward_flops(model: nn.Module, example: torch.Tensor) -> float:
    """Multiply-add FLOPs of one forward pass per example, from the layer shapes.

    Counts ``2 * (C_in / groups) * C_out * K * L_out`` per ``Conv1d`` and
    ``2 * in * out`` per ``Linear`` (per example); elementwise work (batch
    norm, activations) is ignored, as in a matmul-peak comparison.

    Parameters
    ----------
    model : nn.Module
    example : torch.Tensor, shape (1, n_marks, n_bins)

    Returns
    -------
    float
        FLOPs per example.
    """
    total = [0.0]

    def conv_hook(mod, inp, out):
        c_in = mod.in_channels // mod.groups
        total[0] += 2.0 * c_in * mod.out_channels * mod.kernel_size[0] * out.shape[-1]

    def linear_hook(mod, inp, out):
        total[0] += 2.0 * mod.in_features * mod.out_features * (out.numel() / out.shape[-1])

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv1d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total[0]


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (Linux ``clear_refs``); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float:
    """Current resident memory of this process, MiB (0 where unknown)."""
    return (_status_kb("VmRSS") or 0.0) / 1024


def peak_rss_mib() -> float:
    """Peak resident memory since start or the last :func:`reset_peak_rss`, MiB."""
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm / 1024
    # Fallback (no /proc): lifetime peak; ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gflops(flops: float, seconds: float) -> float:
    """``flops / seconds`` in GFLOP/s."""
    return flops / max(seconds, 1e-12) / 1e9


def demo_split(quick: bool):
    """The embedded demo data split as the atlas and differential benchmarks score it.

    Genes split 80/20 at random (seed 0); ``quick`` keeps a random 300 of them.

    Returns
    -------
    data : HistoneDataset
        Every cell type on the kept genes.
    train : HistoneDataset
        The training cell types x the 80% genes.
    split : GeneSplit
    unseen : list of str
        The cell types never trained on.
    """
    import numpy as np

    from histexpr.data.convert import load_dataset
    from histexpr.data.splits import split_genes
    from histexpr.simulator import default_dataset

    data = load_dataset(default_dataset())
    unseen = list(data.meta["unseen_cells"])
    genes = np.unique(data.gene)
    if quick:
        genes = genes[np.random.default_rng(1).permutation(len(genes))[:300]]
        data = data.select_genes(genes)
    split = split_genes(genes, "random", valid_fraction=0.0, test_fraction=0.2, seed=0)
    train = data.subset(~np.isin(data.cell, unseen) & np.isin(data.gene, split.train))
    return data, train, split, unseen
