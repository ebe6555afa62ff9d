"""Atlas models at scale: fit time and MSE / histone-only-oracle MSE per group.

The issue's full scale is the seed's 50 training + 6 unseen cell types x 16,000
genes (simulated; the simulator's targets are real Roadmap expression, so the
atlas is real). Genes are split 80/20 (seed 0); models train on the training
cell types x 80% of the genes and are scored in three groups:

- seen x new genes, unseen x known genes, unseen x new genes.

Each MSE is printed beside the histone-only Bayes oracle's MSE on the same rows
(:func:`histexpr.simulator.oracle_for_dataset`) and their ratio: histone-only
models cannot go below 1, atlas models can on known genes (they know the gene's
expression in other cell types, which the histone-only oracle does not use).

Usage::

    python benchmarks/bench_atlas_scale.py                     # 56 cells x 16,000 genes
    python benchmarks/bench_atlas_scale.py --genes 4000 --train-cells 20
    python benchmarks/bench_atlas_scale.py --models lightgbm,atlas-lightgbm

Threads: the tree models use ``n_jobs`` (default 2, the machine's cores).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from histexpr.data.atlas import AtlasNotice
from histexpr.data.reference import TRAIN_CELLS, UNSEEN_CELLS
from histexpr.data.splits import split_genes
from histexpr.estimators import make_estimator
from histexpr.simulator import simulate
from histexpr.simulator.config import SimulatorConfig
from histexpr.simulator.oracle import oracle_for_dataset

#: Settings per kind (``--set``); tree models get ``n_jobs`` from the command line.
SETTINGS = {
    "lightgbm": [],
    "atlas-ridge": [],
    "atlas-lightgbm": [],
    "ridge": [],
    "gene-mean": [],
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--genes", type=int, default=16000)
    ap.add_argument("--train-cells", type=int, default=len(TRAIN_CELLS))
    ap.add_argument("--models", default="gene-mean,ridge,lightgbm,atlas-ridge,atlas-lightgbm")
    ap.add_argument("--n-jobs", type=int, default=2)
    args = ap.parse_args(argv)

    cells = tuple(TRAIN_CELLS[: args.train_cells]) + UNSEEN_CELLS
    t0 = time.perf_counter()
    data = simulate(SimulatorConfig(cells=cells, n_genes=args.genes))
    print(
        f"simulated {len(cells)} cell types x {args.genes} genes = {len(data)} examples "
        f"in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    oracle = oracle_for_dataset(data)
    genes = np.unique(data.gene)
    split = split_genes(genes, "random", valid_fraction=0.0, test_fraction=0.2, seed=0)
    seen = ~np.isin(data.cell, UNSEEN_CELLS)
    known = np.isin(data.gene, split.train)
    train = data.subset(seen & known)
    groups = {
        "seen x new": seen & ~known,
        "unseen x known": ~seen & known,
        "unseen x new": ~seen & ~known,
    }
    print(f"training examples: {len(train)}")
    header = f"{'model':<16}{'fit s':>8}" + "".join(f"{g + ' MSE/oracle':>28}" for g in groups)
    print(header, flush=True)
    for kind in args.models.split(","):
        sets = list(SETTINGS.get(kind, []))
        if kind in ("lightgbm", "atlas-lightgbm", "random-forest"):
            sets.append(f"n_jobs={args.n_jobs}")
        est = make_estimator(kind, sets)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AtlasNotice)
            est.fit(train)
            fit_s = time.perf_counter() - t0
            cols = []
            for mask in groups.values():
                part = data.subset(mask)
                mse = float(np.mean((est.predict(part) - part.y) ** 2))
                orc = float(np.mean((oracle[mask] - part.y) ** 2))
                cols.append(f"{mse:.3f} / {orc:.3f} = {mse / orc:.2f}")
        print(f"{kind:<16}{fit_s:>8.0f}" + "".join(f"{c:>28}" for c in cols), flush=True)


if __name__ == "__main__":
    main()
