"""Atlas models vs gene-mean and histone-only models on the demo data, plus a real-data prior check.

Demo data (``histexpr.simulator.default_dataset()``: 12 training + 3 unseen cell
types x 2,000 genes; its targets are real Roadmap expression, so the atlas is
real). Genes are split 80/20 (seed 0); every model trains on the training cell
types x the 80% genes and is scored by MSE in three groups:

- seen x new genes: training cell types x the 20% genes;
- unseen x known genes: unseen cell types x the 80% genes (trained on in other cells);
- unseen x new genes: unseen cell types x the 20% genes.

Atlas kinds run with the default atlas (the training targets) and with the
packaged Roadmap matrix (``atlas=roadmap``, the unseen cells' columns excluded
via ``atlas_exclude`` as well as by the per-cell exclusion).

Real-data prior check: on the Roadmap matrix alone (no histone data needed), the
6 unseen cell types of the seed are predicted from the 50 training ones by the
gene mean and by the similarity-weighted prior, whose per-gene score is the true
expression plus Gaussian noise sized so that the score has R2 0.5 (about what a
histone-only model reaches); the temperature is chosen leave-one-cell-out on the
50 training cell types with the same noise model.

The neural rows (``ensemble``, ``atlas-convnet``) use the demo's settings
(:data:`histexpr.workflows.demo.DEMO_NEURAL`: widths 32..256, 12 epochs).

Usage: ``python benchmarks/bench_atlas.py [--quick] [--models ridge,atlas-convnet]``
(``--quick``: 300 genes, fewer trees).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import demo_split

from histexpr._runtime import torch_threads
from histexpr.data.atlas import AtlasNotice
from histexpr.estimators import make_estimator
from histexpr.estimators.atlas_prior import (
    choose_temperature,
    similarity_correlations,
    softmax_weights,
    weighted_prior,
)
from histexpr.workflows.demo import DEMO_NEURAL

#: Neural settings: the demo's, without a progress bar.
NEURAL = [*DEMO_NEURAL, "progress=false"]


def demo_table(quick: bool, only: tuple[str, ...] = ()):
    """Yields one row per model: name, MSE of the three groups, fit seconds, atlas use."""
    data, train, split, unseen = demo_split(quick)
    seen = ~np.isin(data.cell, unseen)
    known = np.isin(data.gene, split.train)
    groups = {
        "seen x new genes": data.subset(seen & ~known),
        "unseen x known genes": data.subset(~seen & known),
        "unseen x new genes": data.subset(~seen & ~known),
    }
    trees = {"n_estimators": 60} if quick else {}
    excl = ",".join(unseen)
    models = {
        "gene-mean": ("gene-mean", {}),
        "ridge": ("ridge", {}),
        "atlas-ridge": ("atlas-ridge", {}),
        "lightgbm": ("lightgbm", trees),
        "atlas-lightgbm": ("atlas-lightgbm", trees),
        "atlas-ridge (roadmap)": ("atlas-ridge", {"atlas": "roadmap", "atlas_exclude": excl}),
        "atlas-lightgbm (roadmap)": (
            "atlas-lightgbm",
            {**trees, "atlas": "roadmap", "atlas_exclude": excl},
        ),
        # the neural kinds with the demo's settings (histexpr.workflows.demo.DEMO_NEURAL)
        "ensemble": ("ensemble", NEURAL),
        "atlas-convnet": ("atlas-convnet", NEURAL),
    }
    for name, (kind, overrides) in models.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        est = make_estimator(kind, overrides or None).fit(train)
        fit_s = time.perf_counter() - t0
        mses, used = [], []
        for part in groups.values():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AtlasNotice)
                warnings.filterwarnings("ignore", "gene-mean: ")
                pred = est.predict(part)
            mses.append(float(np.mean((pred - part.y) ** 2)))
            u = getattr(est, "atlas_used_", None)
            used.append(f"{int(u.sum())}/{len(part)}" if u is not None else "-")
        yield (name, *mses, fit_s, " ".join(used))


def _r2(p, y):
    return float(1 - np.mean((p - y) ** 2) / np.var(y))


def roadmap_prior_check(noise_r2: float = 0.5, seed: int = 0) -> list[tuple]:
    from histexpr.data.reference import TRAIN_CELLS, UNSEEN_CELLS, load_expression

    expr = load_expression()
    rng = np.random.default_rng(seed)
    train = expr[list(TRAIN_CELLS)].to_numpy(np.float64)
    sd = float(np.std(expr.to_numpy()))
    noise = sd * np.sqrt((1 - noise_r2) / noise_r2)

    def score(y):
        return y + rng.normal(0, noise, size=y.shape)

    cases = []
    for k in range(train.shape[1]):
        ref = np.delete(train, k, axis=1)
        cases.append((similarity_correlations(score(train[:, k]), ref), ref, train[:, k]))
    t = choose_temperature(cases)
    rows = []
    for c in UNSEEN_CELLS:
        y = expr[c].to_numpy(np.float64)
        mean = train.mean(axis=1)
        w = softmax_weights(similarity_correlations(score(y), train), t)
        prior = weighted_prior(train, w)
        rows.append(
            (
                c,
                float(np.mean((mean - y) ** 2)),
                float(np.mean((prior - y) ** 2)),
                _r2(mean, y),
                _r2(prior, y),
                t,
            )
        )
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: 300 genes, fewer trees")
    ap.add_argument("--models", default="", help="comma-separated subset of the table's rows")
    args = ap.parse_args(argv)
    only = tuple(m for m in args.models.split(",") if m)
    print("Roadmap matrix, 6 unseen cells from 50 training cells (score: truth + noise, R2 0.5)")
    print("| cell | gene-mean MSE | prior MSE | gene-mean R2 | prior R2 | temperature |")
    print("|---|---|---|---|---|---|")
    for c, m1, m2, r1, r2, t in roadmap_prior_check():
        print(f"| {c} | {m1:.3f} | {m2:.3f} | {r1:.3f} | {r2:.3f} | {t:g} |")
    print()
    print(
        "| model | seen x new genes | unseen x known genes | unseen x new genes | fit s | atlas used |"
    )
    print("|---|---|---|---|---|---|", flush=True)
    with torch_threads(1):
        for name, a, b, c, s, u in demo_table(args.quick, only):
            print(f"| {name} | {a:.3f} | {b:.3f} | {c:.3f} | {s:.1f} | {u} |", flush=True)


if __name__ == "__main__":
    main()
