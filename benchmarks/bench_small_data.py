"""Neural kinds at a few hundred genes of ONE cell type: held-out MSE / cross-validated ridge.

Issue 22 point 4: at 200-500 genes of one cell type no neural kind with its defaults
may have a held-out MSE more than 5 % above ridge's (``ridge`` picks alpha by CV).

Data, all with one cell type (E003):

- ``simN``: ``histexpr.simulator`` (real Roadmap targets), N genes, one 80/20 gene split
  per seed; the simulator seed and the split seed both vary with the seed;
- ``real5`` / ``real7``: the 100 real E003 genes (``chromoformer_demo``) binned by the
  featurize path (``bench_marks.featurize_demo``) at 5 and 7 marks, 5-fold CV over genes.

Every kind runs with its defaults (only ``threads=1`` and no progress bar set; ``--set``
adds overrides for the neural kinds). Ensemble and celltype-weighted need >= 3 cell types
and are skipped on one-cell data. Prints markdown rows: data | seed | kind | test MSE |
/ ridge | fit s, then the mean ratio per data set and kind. See docs/neural_defaults.md.

    OMP_NUM_THREADS=1 python benchmarks/bench_small_data.py
    OMP_NUM_THREADS=1 python benchmarks/bench_small_data.py --n 200 --seeds 1 --kinds convnet
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_neural_defaults import parts_of, score, simulated

KINDS = ("convnet", "deepchrome", "attentivechrome", "ensemble")


def real_sets() -> dict:
    """``{"real5": ..., "real7": ...}``: the 100 real E003 genes through the featurize path."""
    import bench_marks
    from bench_marks import MARKS, featurize_demo

    if not bench_marks.SHARED.is_dir():  # a git worktree beside the main checkout
        bench_marks.SHARED = Path("/work/shared/data")
    with tempfile.TemporaryDirectory() as tmp:
        ds = featurize_demo(Path(tmp))
    return {"real5": ds.select_marks(MARKS), "real7": ds}


def rows_for(name: str, seed, parts, kinds, sets) -> list[dict]:
    rows, ridge = [], None
    for kind in ("ridge", *kinds):
        mse, secs = score(kind, parts, sets if kind != "ridge" else None)
        ridge = mse if kind == "ridge" else ridge
        rows.append({"data": name, "seed": seed, "kind": kind, "ratio": mse / ridge})
        print(f"| {name} | {seed} | {kind} | {mse:.3f} | {mse / ridge:.3f} | {secs:.1f} |")
        sys.stdout.flush()
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="200,500", help="simulated gene counts (comma-separated)")
    p.add_argument("--seeds", type=int, default=2, help="simulated data sets per gene count")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--no-real", action="store_true", help="skip the 100 real E003 genes")
    p.add_argument("--real-only", action="store_true", help="only the 100 real E003 genes")
    p.add_argument("--set", action="append", default=[], help="override for neural kinds K=V")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    kinds = [k for k in a.kinds.split(",") if k not in ("ensemble", "celltype-weighted")]
    skipped = sorted(set(a.kinds.split(",")) - set(kinds))
    if skipped:
        print(f"(one cell type: {', '.join(skipped)} need >= 3 cell types, not run)")
    sets = dict(s.split("=", 1) for s in a.set)
    print("| data | seed | kind | test MSE | / ridge | fit s |\n|---|---|---|---|---|---|")
    rows = []
    if not a.real_only:
        for n in (int(v) for v in a.n.split(",") if v):
            for seed in range(1, a.seeds + 1):
                ds = simulated(("E003",), n, seed=seed)
                from histexpr.data.splits import gene_fold_of

                fold = gene_fold_of(ds.gene, 5, seed=10 + seed)
                parts = [(ds.subset(fold != 0), ds.subset(fold == 0))]
                rows += rows_for(f"sim{n}", seed, parts, kinds, sets)
    if not a.no_real:
        for name, ds in real_sets().items():
            rows += rows_for(name, "cv5", parts_of(ds, 5), kinds, sets)
    print("\nmean MSE / ridge over seeds:")
    for data in dict.fromkeys(r["data"] for r in rows):
        for kind in kinds:
            r = [x["ratio"] for x in rows if x["data"] == data and x["kind"] == kind]
            if r:
                print(f"  {data:8s} {kind:16s} {np.mean(r):.3f} (max {max(r):.3f}, n={len(r)})")
    return rows


if __name__ == "__main__":
    main()
