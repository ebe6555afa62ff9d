"""Baselines at both ends of the data size: old fixed defaults vs the data-chosen ones.

Small end (``--cv``): pooled 5-fold cross-validation over genes; 1/8 of each training
part is passed to ``fit`` as validation data. Large end (default): one 70/10/20 % gene
split (train / valid / test). Prints markdown rows: data | kind | defaults | MSE |
MSE / var(y) | mean fit seconds. See docs/baselines.md.

Data: ``real`` (the shipped 100 real E003 genes, tests/data/fixtures/e003_binned.npz),
``plantedN`` (the tests' planted signal, N genes of one cell type), or
``PATH[:CELL[:N_GENES]]`` (any dataset file, optionally one cell type, first N genes).

    OMP_NUM_THREADS=1 python benchmarks/bench_baselines.py real --cv
    python benchmarks/bench_baselines.py sim12x8000.h5
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: The defaults before issue 13 (a fixed penalty, a fixed leaf, a 300-round cap).
OLD = {
    "ridge": ["alpha=1.0"],
    "random-forest": ["min_samples_leaf=5", "max_depth=12"],
    "lightgbm": ["n_estimators=300", "reg_lambda=0", "holdout_fraction=0", "early_stopping=30"],
}
KINDS = ("global-mean", "ridge", "random-forest", "lightgbm")


def load(which: str):
    from histexpr.data.convert import load_dataset
    from histexpr.data.dataset import HistoneDataset

    if which == "real":
        z = np.load(ROOT / "tests" / "data" / "fixtures" / "e003_binned.npz", allow_pickle=False)
        return HistoneDataset(z["X"], z["y"], np.full(len(z["y"]), "E003"), z["gene"])
    if which.startswith("planted"):
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import make_planted

        return make_planted(n_genes=int(which[7:]), cells=("E003",), seed=2)
    path, *rest = which.split(":")
    ds = load_dataset(path)
    if rest:
        ds = ds.select_cells([rest[0]])
    if len(rest) > 1:
        ds = ds.select_genes(np.unique(ds.gene)[: int(rest[1])])
    return ds


def run(ds, kinds, cv: bool, name: str) -> None:
    from histexpr.data.splits import gene_fold_of, split_genes
    from histexpr.estimators import make_estimator

    if cv:
        fold = gene_fold_of(ds.gene, 5, seed=11)
        parts = []
        for f in range(5):
            rest, test = ds.subset(fold != f), ds.subset(fold == f)
            inner = gene_fold_of(rest.gene, 8, seed=f) == 0
            parts.append((rest.subset(~inner), rest.subset(inner), test))
    else:
        s = split_genes(np.unique(ds.gene), "random", valid_fraction=0.1, test_fraction=0.2)
        train = ds.select_genes(np.concatenate([s.valid, s.test]), exclude=True)
        parts = [(train, ds.select_genes(s.valid), ds.select_genes(s.test))]
    n_test = sum(len(p[2]) for p in parts)
    var = float(np.var(np.concatenate([p[2].y for p in parts])))
    for kind in kinds:
        for variant in ("old", "new") if kind in OLD else ("new",):
            sse = secs = 0.0
            for train, valid, test in parts:
                t = time.perf_counter()
                est = make_estimator(kind, OLD[kind] if variant == "old" else None)
                est.fit(train, valid)
                secs += time.perf_counter() - t
                sse += float(np.sum((test.y - est.predict(test)) ** 2))
            mse = sse / n_test
            note = est.metrics_.get("selection", "")
            print(
                f"| {name} | {kind} | {variant} | {mse:.3f} | {mse / var:.3f} | "
                f"{secs / len(parts):.1f} | {note} |",
                flush=True,
            )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--cv", action="store_true", help="5-fold CV over genes (small data)")
    p.add_argument("--kinds", default=",".join(KINDS))
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    run(load(a.data), a.kinds.split(","), a.cv, a.data)


if __name__ == "__main__":
    main()
