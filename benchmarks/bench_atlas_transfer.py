"""Atlas kinds transferred between unlike cell types: atlas model vs its prior vs histone-only.

Simulator part (issue #22): ``histexpr simulate --cells ...`` (real Roadmap
expression as targets); for every ordered pair ``a -> b`` of the cell types, an
atlas kind with ``atlas=roadmap`` trains on ``a`` x 80% of the genes and predicts
``b`` x the other 20% (the input holds only those genes, as in the issue); with
``--leave-one-out`` also every cell type ``b`` from a model trained on all the others.
R2 of: the atlas model (with its per-cell guard, :mod:`histexpr.estimators.atlas_guard`,
and without it: ``guard_ = None``); its own prior alone (the similarity-weighted one it
adds its residual to, ``prior_``); the plain prior (the gene's mean over the reference
cells without ``b``); the histone-only model of the same family (the kind's own
fallback, trained on the same rows). On one test set R2 and MSE order predictions
alike (R2 = 1 - MSE / var(y)), so ">= in R2" is "<= in MSE"; both are printed.

Real-data part: on the Roadmap matrix alone (no histone data), each listed cell
type is predicted from the reference cells without it by the plain mean, by the
similarity-weighted prior at the temperature learned (leave-one-cell-out, with
targets) on another cell type ``a`` (the old rule), and at the temperature chosen
per cell from its own scores without targets (the new rule,
:func:`histexpr.estimators.atlas_cells.cell_state`). The score standing in for the
histone-only prediction is the true expression plus Gaussian noise with R2 0.5.

Usage: ``python benchmarks/bench_atlas_transfer.py [--cells E003,E123,E071,E062]
[--kinds atlas-ridge,atlas-lightgbm] [--n-genes 2000] [--seeds 0] [--leave-one-out]
[--skip-roadmap]``
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


def score_direction(est, test, atlas, b):
    """Predictions of one direction: guarded, unguarded, own prior, plain prior, histone."""
    pred = est.predict(test)
    own = np.asarray(est.prior_, np.float64)
    scale = (getattr(est, "guard_scales_", None) or {}).get(b, 1.0)
    guard, kept = getattr(est, "guard_", None), getattr(est, "residual_kept_", True)
    raw = pred
    if guard is not None or not kept:  # the model as it learned: no guard, its residual
        est.guard_ = None
        if not kept:
            est.residual_kept_ = True
        try:
            raw = est.predict(test)
        finally:
            est.guard_ = guard
            if not kept:
                est.residual_kept_ = kept
    own = np.where(np.isfinite(own), own, pred)  # genes outside the atlas: the model's
    return {
        "atlas": pred,
        "unguarded": raw,
        "own prior": own,
        "plain prior": plain_prior(atlas, b, test),
        "histone": histone_only(est, test),
        "scale": scale,
    }


NAMES = ("atlas", "unguarded", "own prior", "plain prior", "histone")


def summary(out, y) -> str:
    return " ".join(f"{k} {r2(out[k], y):.3f}" for k in NAMES) + f" scale {out['scale']:.2f}"


def simulator_rows(cells, kinds, n_genes, seeds, leave_one_out=False):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            data = load_dataset(simulate(cells, n_genes, seed, Path(tmp)))
            genes = np.unique(data.gene)
            held = np.random.default_rng(seed).permutation(genes)[: len(genes) // 5]
            atlas = roadmap_atlas()
            sets = [((a,), [b for b in cells if b != a]) for a in cells]
            if leave_one_out:
                sets += [(tuple(c for c in cells if c != b), [b]) for b in cells]
            for train_cells, targets in sets:
                train = data.subset(np.isin(data.cell, train_cells) & ~np.isin(data.gene, held))
                for kind in kinds:
                    est = make_estimator(kind, {"atlas": "roadmap", **FAST.get(kind, {})})
                    est.fit(train)
                    for b in targets:
                        test = data.subset((data.cell == b) & np.isin(data.gene, held))
                        out = score_direction(est, test, atlas, b)
                        d = f"{'+'.join(train_cells)} -> {b}"
                        rows.append((seed, d, kind, out, test.y))
                        print(f"seed {seed} {d} {kind}: {summary(out, test.y)}", flush=True)
    return rows


def histone_only(est, data) -> np.ndarray:
    fallback = getattr(est, "fallback_", None)
    if fallback is not None:
        return fallback.predict(data)
    # atlas-convnet: the same network with the atlas hidden (its genes-absent path)
    from histexpr.data.dataset import conform_marks
    from histexpr.predict import predict as predict_batched

    data = conform_marks(data, est.contract_.marks)
    # no features, indicator 0, and the training mean as the prior the network adds
    hidden = np.zeros((len(data), len(est.side_mean_) + 2), np.float32)
    hidden[:, -1] = est.base_mean_
    return predict_batched(est.model_, (data.X, hidden)).reshape(len(data))


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


def guard_rows(score_r2: float = 0.5) -> list[str]:
    """Real Roadmap check of the guard's estimates (no histone data): every cell type as
    the new cell, its similarity from a stand-in score (truth + noise, R2 ``score_r2``) on
    4,000 random genes; the true MSE of its prior against :func:`prior_error` (jackknife) and
    :func:`prior_spread`. For every ordered pair (training ``a``, new ``b``) the scale
    ``min(1, est_b / est_a)`` of each estimate, and of the smaller ratio (the guard's
    rule), against the ideal ``v_b / v_a``: a scale above twice the ideal would score
    below the prior. "gain": the share of the attainable gain over the prior kept,
    ``2 r - r^2`` with ``r = scale / min(1, ideal)``, weighted by ``min(1, ideal)^2``."""
    from histexpr.estimators.atlas_guard import POWER, prior_error, prior_spread

    atlas = roadmap_atlas()
    cells = list(atlas.cells)
    V = atlas.values[np.isfinite(atlas.values).all(axis=1)]
    genes = atlas.genes[np.isfinite(atlas.values).all(axis=1)]
    rng = np.random.default_rng(0)
    true, jk, sp = [], [], []
    for j, _b in enumerate(cells):
        y, ref = V[:, j], np.delete(V, j, axis=1)
        sub = rng.choice(len(y), 4000, replace=False)
        score = y + rng.normal(0, y.std() * np.sqrt((1 - score_r2) / score_r2), len(y))
        state = cell_state(genes[sub], score[sub], ref[sub])
        w = softmax_weights(state.corr, state.temperature)
        true.append(float(np.mean((ref @ w - y) ** 2)))
        jk.append(prior_error(ref, w))
        sp.append(prior_spread(ref, w))
    true, jk, sp = np.array(true), np.array(jk), np.array(sp)
    ideal = true[None, :] / true[:, None]  # [a, b]: v_b / v_a
    off = ~np.eye(len(cells), dtype=bool)
    capped = np.minimum(ideal, 1.0)
    weight = np.where(off, capped**2, 0.0)
    ratio = {e: np.divide(v[None, :], v[:, None]) for e, v in (("jackknife", jk), ("spread", sp))}
    rules = {
        "scale 1 (no guard)": np.ones_like(ideal),
        "jackknife": np.minimum(1.0, ratio["jackknife"]),
        "spread": np.minimum(1.0, ratio["spread"]),
        "smaller ratio": np.minimum(1.0, np.minimum(*ratio.values())),
        f"smaller ratio ** {POWER} (the guard)": np.minimum(1.0, np.minimum(*ratio.values()))
        ** POWER,
    }
    lines = [
        f"guard estimates on all {len(cells)} Roadmap cells (score R2 {score_r2}): corr(log estimated, log true "
        f"prior MSE) jackknife {np.corrcoef(np.log(jk), np.log(true))[0, 1]:.3f}, spread "
        f"{np.corrcoef(np.log(np.maximum(sp, 1e-12)), np.log(true))[0, 1]:.3f}"
    ]
    for name, scale in rules.items():
        r = scale / capped
        gain = np.sum(np.where(off, 2 * r - r**2, 0.0) * weight) / weight.sum()
        unsafe = int((off & (scale > 2 * ideal)).sum())
        lines.append(
            f"  {name}: pairs above twice the ideal scale {unsafe} of {int(off.sum())}; "
            f"gain kept {gain:.3f}"
        )
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="E003,E123,E071,E062")
    ap.add_argument("--kinds", default="atlas-ridge,atlas-lightgbm")
    ap.add_argument("--n-genes", type=int, default=2000)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--skip-simulator", action="store_true")
    ap.add_argument("--skip-roadmap", action="store_true")
    ap.add_argument("--leave-one-out", action="store_true")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    cells = args.cells.split(",")
    if not args.skip_roadmap:
        print("Roadmap matrix (score = truth + noise, R2 0.5):")
        print("| direction | plain mean | old: T of training cell | new: T per cell |")
        print("|---|---|---|---|")
        for line in roadmap_rows(cells):
            print(line)
        for line in roadmap_all():
            print(line)
        for score_r2 in (0.3, 0.5, 0.7):
            for line in guard_rows(score_r2):
                print(line)
    if args.skip_simulator:
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = simulator_rows(cells, args.kinds.split(","), args.n_genes, seeds, args.leave_one_out)
    print_table(rows)


def print_table(rows) -> None:
    print("\nSimulator, held-out genes of the cell not trained on (R2; MSE):")
    print(
        "| direction | kind | atlas | scale | unguarded | own prior | plain prior | histone-only "
        "| MSE atlas / own prior / histone | atlas >= all three |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    bad = 0
    for seed, d, kind, out, y in rows:
        s = {k: r2(out[k], y) for k in NAMES}
        m = {k: float(np.mean((np.asarray(out[k], np.float64) - y) ** 2)) for k in NAMES}
        ok = s["atlas"] >= max(s["own prior"], s["plain prior"], s["histone"])
        ok &= m["atlas"] <= min(m["own prior"], m["plain prior"], m["histone"])
        bad += not ok
        print(
            f"| {d} (seed {seed}) | {kind} | {s['atlas']:.3f} | {out['scale']:.2f} "
            f"| {s['unguarded']:.3f} | {s['own prior']:.3f} | {s['plain prior']:.3f} "
            f"| {s['histone']:.3f} | {m['atlas']:.3f} / {m['own prior']:.3f} / {m['histone']:.3f} "
            f"| {'yes' if ok else '**no**'} |"
        )
    print(
        f"\n{len(rows) - bad} of {len(rows)} rows: atlas >= its own prior, the plain prior "
        "and the histone-only model"
    )


if __name__ == "__main__":
    main()
