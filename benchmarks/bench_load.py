"""Benchmark 3: the full-scale course npz -> HDF5 conversion and loading, time and peak memory.

Writes the course npz with the simulator (50 cell types x 16,000 genes, one
``(16000, 100, 7)`` float32 array per cell type: 2.1 GiB), then measures in
this process, each phase after resetting the peak-RSS counter (Linux
``/proc/self/clear_refs``):

- ``convert``: ``histexpr.data.convert.convert(npz, h5)`` (streams one cell type);
- ``load h5``: ``load_dataset(h5)`` (the whole dataset into memory);
- ``read_npz``: the npz straight into one preallocated dataset;
- ``load_dataset(npz)``: the generic loader (per-cell blocks, then concatenated).

Peak memory is reported as the increase over the resident memory before the
phase, against the size of the npz arrays and of the loaded ``X``. The
target: peak under 2x the array size, no full extra copies.

Usage::

    .venv/bin/python benchmarks/bench_load.py            # full (~3 min, 2.1 GiB + HDF5 under /tmp)
    .venv/bin/python benchmarks/bench_load.py --quick    # 3 cells x 2,000 genes
    .venv/bin/python benchmarks/bench_load.py --dir /scratch --keep
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import peak_rss_mib, print_machine, reset_peak_rss, rss_mib

from histexpr.data.convert import convert, load_dataset
from histexpr.data.npz import read_npz
from histexpr.simulator import SimulatorConfig, simulate
from histexpr.simulator.config import DEFAULT_TRAIN_CELLS, DEFAULT_UNSEEN_CELLS

MIB = 2**20


def cell_list(n: int) -> tuple[str, ...]:
    """The first ``n`` Roadmap epigenomes of the packaged RPKM matrix (default cells first)."""
    from histexpr.datasets import load_rpkm

    first = list(DEFAULT_TRAIN_CELLS + DEFAULT_UNSEEN_CELLS)
    rest = [c for c in load_rpkm().columns if c not in first]
    cells = (first + rest)[:n]
    if len(cells) < n:
        raise SystemExit(f"only {len(cells)} cell types in the packaged RPKM matrix")
    return tuple(cells)


def measure(fn: Callable[[], object]) -> tuple[object, float, float]:
    """Run ``fn``; return (its result, seconds, peak RSS increase in MiB over the start)."""
    gc.collect()
    base = rss_mib()
    reset_peak_rss()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    return out, seconds, peak_rss_mib() - base


def run(n_cells: int, n_genes: int, workdir: Path) -> tuple[dict, float, float]:
    """Write the npz, then time every phase.

    Returns
    -------
    tuple
        (name -> (seconds, peak MiB increase, reference MiB), npz arrays MiB, X MiB).
    """
    npz, h5 = workdir / "train.npz", workdir / "train.h5"
    cfg = SimulatorConfig(cells=cell_list(n_cells), n_genes=n_genes)
    t0 = time.perf_counter()
    simulate(cfg, out=npz, fmt="npz")
    print(
        f"simulated {n_cells} cells x {n_genes} genes -> {npz} "
        f"({npz.stat().st_size / MIB:.0f} MiB) in {time.perf_counter() - t0:.0f} s"
    )
    arrays_mib = n_cells * n_genes * 100 * 7 * 4 / MIB
    x_mib = n_cells * n_genes * 5 * 100 * 4 / MIB
    res = {}
    out, s, peak = measure(lambda: convert(npz, h5, progress=False))
    res["convert npz -> h5"] = (s, peak, arrays_mib)
    print(f"  wrote {h5} ({h5.stat().st_size / MIB:.0f} MiB), {out.n_examples} examples")
    for name, fn in (
        ("load_dataset(h5)", lambda: load_dataset(h5)),
        ("read_npz(npz)", lambda: read_npz(npz)),
        ("load_dataset(npz)", lambda: load_dataset(npz)),
    ):
        ds, s, peak = measure(fn)
        assert ds.X.shape == (n_cells * n_genes, 5, 100)
        res[name] = (s, peak, x_mib)
        del ds
    return res, arrays_mib, x_mib


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 cells x 2,000 genes")
    ap.add_argument("--cells", type=int, default=50)
    ap.add_argument("--genes", type=int, default=16_000)
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the written files")
    args = ap.parse_args(argv)
    if args.quick:
        args.cells, args.genes = 3, 2000
    print_machine()
    workdir = Path(tempfile.mkdtemp(prefix="histexpr-bench-", dir=args.dir))
    try:
        res, arrays_mib, x_mib = run(args.cells, args.genes, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"npz arrays {arrays_mib:.0f} MiB; loaded X (float32) {x_mib:.0f} MiB")
    print(f"  {'phase':22s} {'seconds':>8s} {'peak +MiB':>10s} {'x size':>7s}")
    for name, (s, peak, ref) in res.items():
        what = "npz" if name.startswith("convert") else "X"
        print(f"  {name:22s} {s:8.1f} {peak:10.0f} {peak / ref:6.2f}x {what}")
    print_machine()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
