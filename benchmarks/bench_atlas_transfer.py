"""Atlas kinds transferred between unlike cell types: atlas model vs its prior vs histone-only.

Simulator part (issue #22): ``histexpr simulate --cells ...`` (real Roadmap
expression as targets); for every ordered pair ``a -> b`` of the cell types, an
atlas kind with ``atlas=roadmap`` trains on ``a`` x 80% of the genes and predicts
``b`` x the other 20% (the input holds only those genes, as in the issue). R2 of:
the atlas model; its prior alone (the gene's mean over the reference cells without
``b``); the histone-only model of the same family (the kind's own fallback, trained
on the same rows).

Real-data part: on the Roadmap matrix alone (no histone data), each listed cell
type is predicted from the reference cells without it by the plain mean, by the
similarity-weighted prior at the temperature learned (leave-one-cell-out, with
targets) on another cell type ``a`` (the old rule), and at the temperature chosen
per cell from its own scores without targets (the new rule,
:func:`histexpr.estimators.atlas_cells.cell_state`). The score standing in for the
histone-only prediction is the true expression plus Gaussian noise with R2 0.5.

Usage: ``python benchmarks/bench_atlas_transfer.py [--cells E003,E123,E071,E062]
[--kinds atlas-ridge,atlas-lightgbm] [--n-genes 2000] [--seeds 0]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from histexpr.data.atlas import roadmap_atlas
from histexpr.data.convert import load_dataset
from histexpr.data.dataset import canonical_gene_ids
from histexpr.estimators import make_estimator
from histexpr.estimators.atlas_cells import cell_state
from histexpr.estimators.atlas_prior import (
    choose_temperature,
    similarity_correlations,
    softmax_weights,
    weighted_prior,
)

FAST = {
    "atlas-lightgbm": {"n_jobs": 2},
    "atlas-convnet": {
        "epochs": 8,
        "progress": False,
        "n_folds": 1,
        "channels": "8,8,16,16,16,16,32,32",
    },
}


def r2(pred, y) -> float:
    pred, y = np.asarray(pred, np.float64), np.asarray(y, np.float64)
    return float(1 - np.mean((pred - y) ** 2) / np.var(y))


def simulate(cells, n_genes: int, seed: int, folder: Path) -> Path:
    out = folder / f"sim_{seed}.h5"
    cmd = [sys.executable, "-m", "histexpr", "simulate", "--cells", ",".join(cells)]
    cmd += ["--n-genes", str(n_genes), "--seed", str(seed), "--out", str(out), "--no-progress"]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def plain_prior(atlas, cell, data) -> np.ndarray:
    atlas = atlas.without([cell])
    rows, _ = atlas.rows(canonical_gene_ids(data.gene))
    return np.nanmean(atlas.values[rows], axis=1)


def simulator_rows(cells, kinds, n_genes, seeds):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            data = load_dataset(simulate(cells, n_genes, seed, Path(tmp)))
            genes = np.unique(data.gene)
            held = np.random.default_rng(seed).permutation(genes)[: len(genes) // 5]
            atlas = roadmap_atlas()
            for a in cells:
                train = data.subset((data.cell == a) & ~np.isin(data.gene, held))
                for kind in kinds:
                    est = make_estimator(kind, {"atlas": "roadmap", **FAST.get(kind, {})})
                    est.fit(train)
                    for b in cells:
                        if b == a:
                            continue
                        test = data.subset((data.cell == b) & np.isin(data.gene, held))
                        pred = est.predict(test)
                        prior = plain_prior(atlas, b, test)
                        hist = histone_only(est, test)
                        rows.append((seed, f"{a} -> {b}", kind, pred, prior, hist, test.y))
                        print(
                            f"seed {seed} {a} -> {b} {kind}: atlas {r2(pred, test.y):.3f} "
                            f"prior {r2(prior, test.y):.3f} histone {r2(hist, test.y):.3f}",
                            flush=True,
                        )
    return rows


def histone_only(est, data) -> np.ndarray:
    fallback = getattr(est, "fallback_", None)
    if fallback is not None:
        return fallback.predict(data)
    # atlas-convnet: the same network with the atlas hidden (its genes-absent path)
    from histexpr.data.dataset import conform_marks
    from histexpr.predict import predict as predict_batched

    data = conform_marks(data, est.contract_.marks)
    hidden = np.zeros((len(data), len(est.side_mean_) + 1), np.float32)
    out = predict_batched(est.model_, (data.X, hidden)).reshape(len(data))
    return out + est.base_mean_


def roadmap_rows(cells, seed: int = 0):
    """Real Roadmap check of the prior: old (temperature of a training cell) vs new rule."""
    atlas = roadmap_atlas()
    rng = np.random.default_rng(seed)
    lines = []
    for a in cells:
        others = atlas.without([a])
        ya = atlas.values[:, list(atlas.cells).index(a)]
        ok = np.isfinite(ya) & np.isfinite(others.values).all(axis=1)
        noisy = ya[ok] + rng.normal(0, ya[ok].std(), ok.sum())  # score R2 ~0.5
        t_old = choose_temperature(
            [(similarity_correlations(noisy, others.values[ok]), others.values[ok], ya[ok])]
        )
        for b in cells:
            if b == a:
                continue
            ref_atlas = atlas.without([b])
            y = atlas.values[:, list(atlas.cells).index(b)]
            ok = np.isfinite(y) & np.isfinite(ref_atlas.values).all(axis=1)
            ref, yb = ref_atlas.values[ok], y[ok]
            score = yb + rng.normal(0, yb.std(), len(yb))
            corr = similarity_correlations(score, ref)
            old = weighted_prior(ref, softmax_weights(corr, t_old))
            state = cell_state(ref_atlas.genes[ok], score, ref)
            new = weighted_prior(ref, softmax_weights(state.corr, state.temperature))
            lines.append(
                f"| {a} -> {b} | {r2(ref.mean(axis=1), yb):.3f} | {r2(old, yb):.3f} (T={t_old}) "
                f"| {r2(new, yb):.3f} (T={state.temperature}) |"
            )
    return lines


def roadmap_all(train_cells=("E003", "E123"), seed: int = 0) -> list[str]:
    """Every Roadmap cell type as the new cell: R2 of the plain mean, of the prior at the
    temperature learned on each of ``train_cells`` (old rule) and per cell (new rule)."""
    atlas = roadmap_atlas()
    rng = np.random.default_rng(seed)
    cells = list(atlas.cells)
    temps = {}
    for a in train_cells:
        others = atlas.without([a])
        ya = atlas.values[:, cells.index(a)]
        ok = np.isfinite(ya) & np.isfinite(others.values).all(axis=1)
        noisy = ya[ok] + rng.normal(0, ya[ok].std(), ok.sum())
        corr = similarity_correlations(noisy, others.values[ok])
        temps[a] = choose_temperature([(corr, others.values[ok], ya[ok])])
    res = {k: [] for k in ("mean", "new", *temps)}
    for b in cells:
        ref_atlas = atlas.without([b])
        y = atlas.values[:, cells.index(b)]
        ok = np.isfinite(y) & np.isfinite(ref_atlas.values).all(axis=1)
        ref, yb = ref_atlas.values[ok], y[ok]
        score = yb + rng.normal(0, yb.std(), len(yb))
        corr = similarity_correlations(score, ref)
        state = cell_state(ref_atlas.genes[ok], score, ref)
        res["mean"].append(r2(ref.mean(axis=1), yb))
        res["new"].append(
            r2(weighted_prior(ref, softmax_weights(state.corr, state.temperature)), yb)
        )
        for a, t in temps.items():
            res[a].append(r2(weighted_prior(ref, softmax_weights(corr, t)), yb))
    new, mean = np.array(res["new"]), np.array(res["mean"])
    lines = [
        f"all {len(cells)} Roadmap cell types as the new cell: per-cell prior R2 mean "
        f"{new.mean():.3f} (min {new.min():.3f}); plain mean {mean.mean():.3f}; per-cell >= "
        f"plain mean for {int((new >= mean - 1e-9).sum())} of {len(cells)} (worst "
        f"difference {(new - mean).min():+.3f})"
    ]
    for a, t in temps.items():
        old = np.array(res[a])
        lines.append(
            f"  old rule, T={t} learned on {a}: mean {old.mean():.3f} (min {old.min():.3f}); "
            f"per-cell >= it for {int((new >= old - 1e-9).sum())} of {len(cells)} "
            f"(worst difference {(new - old).min():+.3f})"
        )
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="E003,E123,E071,E062")
    ap.add_argument("--kinds", default="atlas-ridge,atlas-lightgbm")
    ap.add_argument("--n-genes", type=int, default=2000)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--skip-simulator", action="store_true")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    cells = args.cells.split(",")
    print("Roadmap matrix (score = truth + noise, R2 0.5):")
    print("| direction | plain mean | old: T of training cell | new: T per cell |")
    print("|---|---|---|---|")
    for line in roadmap_rows(cells):
        print(line)
    for line in roadmap_all():
        print(line)
    if args.skip_simulator:
        return
    rows = simulator_rows(
        cells, args.kinds.split(","), args.n_genes, [int(s) for s in args.seeds.split(",")]
    )
    print("\nSimulator, held-out genes of the cell not trained on (R2):")
    print("| direction | kind | atlas | its prior | histone-only | atlas >= both |")
    print("|---|---|---|---|---|---|")
    for seed, d, kind, pred, prior, hist, y in rows:
        a, p, h = r2(pred, y), r2(prior, y), r2(hist, y)
        ok = "yes" if a >= max(p, h) else "**no**"
        print(f"| {d} (seed {seed}) | {kind} | {a:.3f} | {p:.3f} | {h:.3f} | {ok} |")


if __name__ == "__main__":
    main()
