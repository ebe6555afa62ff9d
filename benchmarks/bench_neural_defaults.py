"""Neural kinds with their DEFAULT settings vs ridge and the global mean, small to large data.

Every neural kind is fitted with its defaults (only ``threads=1`` and no progress bar
are set); ``fit`` gets no validation data, so each kind early-stops on its own
held-out genes (``validation.holdout_fraction``). Test genes are never seen.

- ``simN``: simulated, N genes of ONE cell type (E003), 80/20 gene split.
- ``sim3x300``: simulated, 3 cell types x 300 genes (ensemble needs >= 3 cells).
- ``real``: the shipped 100 real E003 genes, 5-fold CV over genes.
- ``simCxN`` (``--large``): a moderate multi-cell set (default 12 x 4000).

Prints markdown rows: data | kind | test MSE | MSE / ridge MSE | fit seconds.
See docs/neural_defaults.md.

    OMP_NUM_THREADS=1 python benchmarks/bench_neural_defaults.py --quick
    OMP_NUM_THREADS=1 python benchmarks/bench_neural_defaults.py --large
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASE = ("ridge", "global-mean")
CELLS12 = (
    "E003", "E004", "E005", "E006", "E007", "E011",
    "E012", "E013", "E016", "E024", "E027", "E028",
)  # fmt: skip


def simulated(cells, n_genes: int, seed: int = 1):
    from histexpr.simulator import SimulatorConfig, simulate

    return simulate(SimulatorConfig(seed=seed, cells=tuple(cells), n_genes=n_genes))


def real():
    from histexpr.data.dataset import HistoneDataset

    z = np.load(ROOT / "tests" / "data" / "fixtures" / "e003_binned.npz", allow_pickle=False)
    return HistoneDataset(z["X"], z["y"], np.full(len(z["y"]), "E003"), z["gene"])


def parts_of(ds, cv: int, seed: int = 11):
    """(train, test) pairs: ``cv``-fold over genes, or one 80/20 gene split when cv == 0."""
    from histexpr.data.splits import gene_fold_of

    fold = gene_fold_of(ds.gene, cv or 5, seed=seed)
    folds = range(cv) if cv else (0,)
    return [(ds.subset(fold != f), ds.subset(fold == f)) for f in folds]


def score(kind: str, parts, overrides=None) -> tuple[float, float]:
    """Pooled test MSE over the parts and the mean fit seconds."""
    from histexpr.estimators import kind_names, make_estimator

    sets = dict(overrides or {})
    if kind in kind_names(family="network"):
        sets.setdefault("threads", 1)
        sets.setdefault("progress", False)
    sse = n = secs = 0.0
    for train, test in parts:
        t = time.perf_counter()
        est = make_estimator(kind, [f"{k}={v}" for k, v in sets.items()])
        est.fit(train)
        secs += time.perf_counter() - t
        sse += float(np.sum((test.y - est.predict(test)) ** 2))
        n += len(test)
    return sse / n, secs / len(parts)


def table(name: str, ds, kinds, cv: int = 0, overrides=None) -> list[dict]:
    parts = parts_of(ds, cv)
    rows, ridge = [], None
    for kind in (*BASE, *kinds):
        if kind in ("ensemble", "celltype-weighted") and len(np.unique(ds.cell)) < 3:
            continue
        mse, secs = score(kind, parts, overrides if kind not in BASE else None)
        ridge = mse if kind == "ridge" else ridge
        rows.append({"data": name, "kind": kind, "mse": mse, "ratio": mse / ridge, "secs": secs})
        r = rows[-1]
        print(
            f"| {name} | {kind} | {mse:.3f} | {r['ratio']:.3f} | {secs:.1f} |",
            flush=True,
        )
    return rows


def main(argv=None) -> list[dict]:
    from histexpr.estimators import kind_names

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small end only, 300-gene sets")
    p.add_argument("--large", action="store_true", help="only the large end")
    p.add_argument("--large-shape", default="12x4000", help="CELLSxGENES of the large end")
    p.add_argument("--kinds", default=",".join(kind_names(family="network")))
    p.add_argument("--set", action="append", default=[], help="override for neural kinds K=V")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    kinds = a.kinds.split(",")
    sets = dict(s.split("=", 1) for s in a.set)
    print("| data | kind | test MSE | / ridge | fit s |\n|---|---|---|---|---|")
    rows = []
    if not a.large:
        rows += table("sim300 (1 cell)", simulated(("E003",), 300), kinds, overrides=sets)
        if not a.quick:
            rows += table("sim600 (1 cell)", simulated(("E003",), 600), kinds, overrides=sets)
        rows += table("sim 3x300", simulated(("E003", "E004", "E005"), 300), kinds, overrides=sets)
        rows += table("real E003 100 (5-fold)", real(), kinds, cv=5, overrides=sets)
    if a.large or not a.quick:
        c, g = (int(v) for v in a.large_shape.split("x"))
        rows += table(f"sim {c}x{g}", simulated(CELLS12[:c], g), kinds, overrides=sets)
    return rows


if __name__ == "__main__":
    main()
