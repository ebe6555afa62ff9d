"""Benchmark: what more marks buy, and what a missing mark costs (docs/marks.md).

Three measurements, each printed as a small table:

- ``sim``: simulated data with 7 marks (the five core marks + H3K27ac, H3K9ac)
  against the same data restricted to the 5 core marks (the simulator draws the
  core counts identically, so genes, cells and core counts are the same). The
  Bayes oracle of each mark set, ridge and LightGBM (default settings), trained on
  the training cell types with 2/3 of the genes (LightGBM with ``n_jobs=1``), scored on the held-out genes of
  the training cell types ("seen") and on every gene of the unseen cell types.
- ``real``: the real per-base arrays of 100 E003 genes (Chromoformer demo, 7
  marks) written as bigWigs, featurized with :func:`histexpr.featurize.pipeline.featurize`,
  then ridge and LightGBM cross-validated over genes (5 folds x 2 repeats) on 5
  and on 7 marks.
- ``dropout``: a ConvNet trained with ``mark_dropout`` on the demo data's
  training cell types, scored on the unseen cell types with every mark and with
  each mark missing in turn; a ConvNet without mark dropout for reference.

Usage::

    .venv/bin/python benchmarks/bench_marks.py sim [--genes 2000 --cells 8 --kinds ridge,lightgbm]
    .venv/bin/python benchmarks/bench_marks.py real
    .venv/bin/python benchmarks/bench_marks.py dropout [--epochs 6 --p 0.2]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from histexpr.data.dataset import MARKS, HistoneDataset
from histexpr.estimators import make_estimator

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SEVEN = (*MARKS, "H3K27ac", "H3K9ac")
#: Default settings, but one thread for the tree models (the benchmark machine is shared).
OPTS = {"lightgbm": {"n_jobs": 1}, "random-forest": {"n_jobs": 1}}
#: Small ConvNet settings for ``sim --kinds convnet`` (minutes, one thread).
SMALL_CONVNET = {
    "channels": "8,8,16,16,32,32,32,32",
    "epochs": 5,
    "progress": False,
    "threads": 1,
}


#: Small settings of the other neural kinds for ``sim --kinds`` (minutes, one thread).
SMALL_NEURAL = {
    "convnet": SMALL_CONVNET,
    "ensemble": SMALL_CONVNET,
    "celltype-weighted": {**SMALL_CONVNET, "epochs": 3},
    "deepchrome": {"epochs": 5, "progress": False, "threads": 1},
    "attentivechrome": {
        "bin_hidden": 8,
        "mark_hidden": 4,
        "epochs": 3,
        "progress": False,
        "threads": 1,
    },
}


def _mse(y, p) -> float:
    return float(np.mean((np.asarray(y, np.float64) - np.asarray(p, np.float64)) ** 2))


def _gene_split(ds: HistoneDataset, frac: float, seed: int) -> np.ndarray:
    genes = np.unique(ds.gene)
    rng = np.random.default_rng(seed)
    held = rng.choice(genes, size=round(frac * len(genes)), replace=False)
    return np.isin(ds.gene, held)


def bench_sim(n_genes: int, n_cells: int, seed: int, kinds=("ridge", "lightgbm")) -> None:
    from histexpr.simulator import SimulatorConfig, oracle_for_dataset, simulate
    from histexpr.simulator.config import DEFAULT_TRAIN_CELLS, DEFAULT_UNSEEN_CELLS

    train_cells = DEFAULT_TRAIN_CELLS[:n_cells]
    unseen = DEFAULT_UNSEEN_CELLS[:2]
    cfg = SimulatorConfig(seed=seed, cells=train_cells + unseen, n_genes=n_genes)
    data = {5: simulate(cfg), 7: simulate(replace(cfg, marks=SEVEN))}
    assert np.array_equal(data[7].select_marks(MARKS).X, data[5].X)
    held = _gene_split(data[5], 1 / 3, seed)
    is_train_cell = np.isin(data[5].cell, train_cells)
    groups = {"seen cells, held-out genes": is_train_cell & held, "unseen cells": ~is_train_cell}
    rows = []
    for k, ds in data.items():
        t = time.time()
        oracle = oracle_for_dataset(ds)
        preds = {"oracle": (oracle, time.time() - t)}
        train = ds.subset(is_train_cell & ~held)
        for kind in kinds:
            t = time.time()
            opts = SMALL_NEURAL.get(kind, OPTS.get(kind))
            est = make_estimator(kind, opts).fit(train)
            preds[kind] = (est.predict(ds), time.time() - t)
        for model, (p, secs) in preds.items():
            for g, mask in groups.items():
                rows.append(
                    {
                        "marks": k,
                        "model": model,
                        "group": g,
                        "mse": _mse(ds.y[mask], p[mask]),
                        "seconds": secs,
                    }
                )
    df = pd.DataFrame(rows)
    ref = df[(df.model == "oracle") & (df.marks == 5)].set_index("group").mse
    df["/oracle5"] = df.mse / df.group.map(ref)
    own = df[df.model == "oracle"].set_index(["marks", "group"]).mse
    df["/own oracle"] = [r.mse / own[(r.marks, r.group)] for r in df.itertuples()]
    print(f"sim: {len(train_cells)} training + {len(unseen)} unseen cell types x {n_genes} genes")
    print(df.round(3).to_string(index=False))


def _write_bigwig(path: Path, sizes: dict, blocks: dict) -> None:
    import pyBigWig

    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(sizes.items()))
    for chrom in sizes:
        starts, ends, vals = [], [], []
        for start, v in sorted(blocks.get(chrom, []), key=lambda b: b[0]):
            v = np.asarray(v, dtype=np.float32)
            cut = np.flatnonzero(np.diff(v) != 0) + 1
            lo, hi = np.concatenate([[0], cut]), np.concatenate([cut, [len(v)]])
            keep = v[lo] != 0
            starts += (start + lo[keep]).tolist()
            ends += (start + hi[keep]).tolist()
            vals += v[lo][keep].astype(float).tolist()
        if starts:
            bw.addEntries([chrom] * len(starts), starts, ends=ends, values=vals)
    bw.close()


def featurize_demo(workdir: Path) -> HistoneDataset:
    """The 100 real E003 genes, 7 marks: per-base arrays -> bigWigs -> featurize."""
    from histexpr.data.hdf5 import read_h5
    from histexpr.featurize.pipeline import featurize
    from histexpr.workflows.calibrate import DEMO_MARKS

    root = SHARED / "chromoformer_demo"
    meta = pd.read_csv(root / "demo_meta.csv")
    flank = 20_000
    arrays = {
        g: np.load(root / "promoters" / f"{c}:{s - flank}-{s + flank}.npy", allow_pickle=False)
        for g, c, s in zip(meta.gene_id, meta.chrom, meta.start, strict=True)
    }
    sizes = (meta.groupby("chrom")["start"].max() + flank + 1000).to_dict()
    tracks = {}
    for j, mark in enumerate(DEMO_MARKS):
        blocks: dict = {}
        for g, c, s in zip(meta.gene_id, meta.chrom, meta.start, strict=True):
            blocks.setdefault(c, []).append((s - flank, arrays[g][j]))
        tracks[mark] = workdir / f"E003-{mark}.bigWig"
        _write_bigwig(tracks[mark], sizes, blocks)
    expression = pd.DataFrame({"E003": meta["expression"].to_numpy()}, index=meta.gene_id)
    out = featurize(
        root / "demo_meta.csv", {"E003": tracks}, workdir / "e003.h5", expression, progress=False
    )
    return read_h5(out)


def bench_real(folds: int, repeats: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ds = featurize_demo(Path(tmp))
    print(f"real: {len(ds)} E003 genes, marks {', '.join(ds.marks)}; var(y) {ds.y.var():.3f}")
    rows = []
    for rep in range(repeats):
        rng = np.random.default_rng(rep)
        fold = rng.permutation(len(ds)) % folds
        for k, marks in ((5, MARKS), (7, SEVEN)):
            sub = ds.select_marks(marks)
            for kind in ("ridge", "lightgbm"):
                pred = np.empty(len(ds))
                for f in range(folds):
                    est = make_estimator(kind, OPTS.get(kind)).fit(sub.subset(fold != f))
                    pred[fold == f] = est.predict(sub.subset(fold == f))
                r = float(np.corrcoef(pred, sub.y)[0, 1])
                rows.append(
                    {"repeat": rep, "marks": k, "model": kind, "mse": _mse(sub.y, pred), "r": r}
                )
    df = pd.DataFrame(rows)
    summary = df.groupby(["model", "marks"]).agg(
        mse=("mse", "mean"), mse_sd=("mse", "std"), r=("r", "mean"), r_sd=("r", "std")
    )
    print(summary.round(3).to_string())
    paired = df.pivot_table(index=["model", "repeat"], columns="marks", values="mse")
    diff = (paired[7] - paired[5]).groupby("model").agg(["mean", "std", "min", "max"])
    print("MSE(7 marks) - MSE(5 marks) over repeats:")
    print(diff.round(3).to_string())


def bench_dropout(epochs: int, p: float, channels: str, threads: int) -> None:
    from histexpr.data.hdf5 import read_h5
    from histexpr.simulator import default_dataset
    from histexpr.simulator.config import DEFAULT_TRAIN_CELLS, DEFAULT_UNSEEN_CELLS

    ds = read_h5(default_dataset())
    train = ds.select_cells(DEFAULT_TRAIN_CELLS)
    test = ds.select_cells(DEFAULT_UNSEEN_CELLS)
    base = {"channels": channels, "epochs": epochs, "progress": False, "threads": threads}
    models = {}
    for name, extra in (("no dropout", {}), (f"mark_dropout={p}", {"mark_dropout": p})):
        t = time.time()
        models[name] = make_estimator("convnet", {**base, **extra}).fit(train)
        print(f"trained {name} in {time.time() - t:.0f} s")
    rows = []
    for name, est in models.items():
        rows.append({"model": name, "missing": "none", "mse": _mse(test.y, est.predict(test))})
    est = models[f"mark_dropout={p}"]
    for m in MARKS:
        part = test.select_marks([x for x in MARKS if x != m])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows.append(
                {"model": f"mark_dropout={p}", "missing": m, "mse": _mse(test.y, est.predict(part))}
            )
    df = pd.DataFrame(rows)
    full = df[(df.model == f"mark_dropout={p}") & (df.missing == "none")].mse.iloc[0]
    df["vs all marks"] = df.mse / full
    print(
        f"dropout: train {len(train)} examples ({len(DEFAULT_TRAIN_CELLS)} cells), "
        f"test {len(test)} (unseen {', '.join(DEFAULT_UNSEEN_CELLS)}); var(y) {test.y.var():.3f}"
    )
    print(df.round(3).to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sim")
    s.add_argument("--genes", type=int, default=2000)
    s.add_argument("--cells", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--kinds",
        default="ridge,lightgbm",
        help="comma-separated; neural kinds run small settings (SMALL_NEURAL)",
    )
    r = sub.add_parser("real")
    r.add_argument("--folds", type=int, default=5)
    r.add_argument("--repeats", type=int, default=2)
    d = sub.add_parser("dropout")
    d.add_argument("--epochs", type=int, default=6)
    d.add_argument("--p", type=float, default=0.2)
    d.add_argument("--channels", default="16,16,32,32,64,64,128,128")
    d.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    t = time.time()
    if a.what == "sim":
        bench_sim(a.genes, a.cells, a.seed, tuple(a.kinds.split(",")))
    elif a.what == "real":
        bench_real(a.folds, a.repeats)
    else:
        bench_dropout(a.epochs, a.p, a.channels, a.threads)
    print(f"total {time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
