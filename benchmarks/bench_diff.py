"""Differential models vs the difference of two single-cell predictions, on simulated pairs.

Demo data (``histexpr.simulator.default_dataset()``: 12 training + 3 unseen cell types
x 2,000 genes; its targets are real Roadmap expression, so a pair's log fold change
``yA - yB`` is a real expression difference). Genes are split 80/20 (seed 0); every
model trains on the 12 training cell types x the 80% genes and is scored by the
Pearson r (and AUC of up vs down among |LFC| >= 1) of the fold change on the 20%
held-out genes, for

- seen pairs: both cell types trained on;
- unseen pairs: at least one cell type never trained on.

Models: ``diff-ridge``, ``diff-lightgbm`` and ``diff-convnet`` (one model for all pairs,
trained on ``max_pairs`` random pairs of the training cell types) against the difference
of two predictions of single-cell ``ridge``, ``lightgbm`` and ``convnet`` models. The two
neural kinds run with small settings (:data:`NEURAL`: narrow channels, few epochs, one
thread) so the whole benchmark takes minutes; they are not tuned.

DeepDiff section: the seen/unseen cells of one seen and one unseen pair are written
as a DeepDiff folder (:func:`histexpr.data.deepdiff.write_deepdiff`, split train/test
by the gene split), read back through ``load_dataset`` and checked equal, then
``diff-ridge`` trains on its train files and is scored on its test files through the
workflow functions. We do not have DeepDiff's real sample data here: this checks the
format path, not DeepDiff's numbers.

Single-pair section (``--single``, DeepDiffChrome's setting): one model per pair, trained
on that pair's first 300 or 1,600 training genes alone, scored on the held-out genes.

Usage: ``python benchmarks/bench_diff.py [--quick] [--single] [--kinds K1,K2] [--no-deepdiff]``
(``--quick``: 300 genes, few pairs; ``--kinds``: a subset of the models).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import demo_split

from histexpr._runtime import torch_threads
from histexpr.data.convert import load_dataset
from histexpr.estimators import kind_of, make_estimator
from histexpr.estimators.diff import diff_from_model
from histexpr.evaluate import diff_metrics

SEEN_PAIRS = (("E003", "E004"), ("E005", "E066"), ("E027", "E116"), ("E050", "E122"))
UNSEEN_PAIRS = (("E071", "E003"), ("E096", "E005"), ("E113", "E066"), ("E071", "E113"))


#: Small neural settings shared by diff-convnet and the single-cell convnet baseline.
NEURAL = [
    "channels=8,8,16,16,32,32,32,32",
    "batch_size=128",
    "lr=3e-3",
    "patience=4",
    "threads=1",
    "progress=false",
]
KINDS = ("diff-ridge", "diff-lightgbm", "diff-convnet", "ridge", "lightgbm", "convnet")


def settings(quick: bool) -> dict[str, list[str]]:
    trees = ["n_estimators=100"] if quick else []
    pairs = ["max_pairs=4"] if quick else []
    epochs = ["epochs=6"] if quick else ["epochs=20"]
    return {
        "diff-ridge": pairs,
        "diff-lightgbm": [*pairs, *trees, "n_jobs=2"],
        "diff-convnet": [*pairs, *NEURAL, *epochs, "head_width=32", "max_rows=20000"],
        "ridge": [],
        "lightgbm": [*trees, "n_jobs=2"],
        "convnet": [*NEURAL, *epochs],
    }


def split_data(quick: bool):
    """The demo data, its training part, the held-out genes of every cell type, the split."""
    data, train, split, _ = demo_split(quick)
    return data, train, data.select_genes(split.test), split


def score(predict, test) -> dict[str, tuple[float, float]]:
    """Mean Pearson r and AUC of up vs down over the seen and the unseen pairs."""
    out = {}
    for group, pairs in (("seen", SEEN_PAIRS), ("unseen", UNSEEN_PAIRS)):
        ms = [
            diff_metrics(p.observed, p.predicted) for p in (predict(test, a, b) for a, b in pairs)
        ]
        out[group] = (
            float(np.mean([m.pearson for m in ms])),
            float(np.nanmean([m.auc for m in ms])),
        )
    return out


def model_rows(quick: bool, kinds=KINDS):
    _, train, test, _ = split_data(quick)
    sets = settings(quick)
    for kind in kinds:
        t = time.perf_counter()
        est = make_estimator(kind, sets[kind]).fit(train)
        fit_s = time.perf_counter() - t
        if kind_of(kind).pairs:
            name = kind
            rows = score(est.predict_pair, test)
        else:
            name = f"{kind} difference"
            rows = score(lambda d, a, b, e=est: diff_from_model(e, d, a, b), test)
        yield name, rows, fit_s


def single_pair_rows(kinds, sizes=(300, 1600)):
    """DeepDiffChrome's setting: one model per pair, trained on that pair's genes alone.

    Yields ``(pair, n_genes, {model: Pearson r on the held-out genes})``; single-cell
    kinds train on the pair's two cell types and are scored by their difference.
    """
    _, train, test, _ = split_data(False)
    sets = settings(False)
    for a, b in SEEN_PAIRS:
        for n in sizes:
            part = train.select_cells([a, b]).select_genes(np.unique(train.gene)[:n])
            out = {}
            for kind in kinds:
                overrides = [*sets[kind], *([f"pairs={a}:{b}"] if kind_of(kind).pairs else [])]
                est = make_estimator(kind, overrides).fit(part)
                p = (
                    est.predict_pair(test, a, b)
                    if kind_of(kind).pairs
                    else diff_from_model(est, test, a, b)
                )
                out[kind if kind_of(kind).pairs else f"{kind} difference"] = diff_metrics(
                    p.observed, p.predicted
                ).pearson
            yield f"{a}:{b}", n, out


def deepdiff_section(quick: bool) -> str:
    """Write a DeepDiff folder, read it back, train and score diff-ridge through it."""
    from histexpr.data.dataset import HistoneDataset
    from histexpr.data.deepdiff import write_deepdiff
    from histexpr.workflows.evaluate import evaluate_model
    from histexpr.workflows.train import train_model

    data, _, _, split = split_data(quick)
    cells = ["E003", "E004", "E005", "E071"]
    part = data.select_cells(cells)
    s = np.where(np.isin(part.gene, split.test), "test", "train")
    part = HistoneDataset(part.X, part.y, part.cell, part.gene, marks=part.marks, split=s)
    with tempfile.TemporaryDirectory() as tmp:
        folder, model = Path(tmp) / "dd", Path(tmp) / "model"
        t = time.perf_counter()
        write_deepdiff(part, folder)
        back = load_dataset(folder)
        io_s = time.perf_counter() - t
        a = part.subset(np.lexsort((part.gene, part.cell)))
        b = back.subset(np.lexsort((back.gene, back.cell)))
        same = bool(np.array_equal(a.X, b.X) and np.abs(a.y - b.y).max() < 1e-4)
        train_model(
            folder, model, "diff-ridge", cells=["E003", "E004", "E005"], valid_fraction=0.0,
            train_split="train", log=lambda _: None,
        )  # fmt: skip
        ev = evaluate_model(model, folder, split="test", pair="E003:E004,E071:E003")
    lines = [
        f"DeepDiff folder: {len(cells)} cell types x {len(np.unique(part.gene))} genes, "
        f"written + read back in {io_s:.1f} s, arrays equal: {same}",
        "| pair | cells | n | Pearson r | AUC up vs down | n changed |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in ev.table.itertuples():
        lines.append(
            f"| {r.pair} | {r.cells} | {r.n} | {r.pearson:.3f} | {r.auc:.3f} | {r.n_changed} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 genes, few pairs and trees")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}"
    )
    parser.add_argument("--no-deepdiff", action="store_true", help="skip the DeepDiff section")
    parser.add_argument(
        "--single",
        action="store_true",
        help="only the one-model-per-pair section (DeepDiff's setting)",
    )
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    with torch_threads(1):
        if args.single:
            for i, (pair, n, row) in enumerate(single_pair_rows(kinds)):
                if i == 0:
                    print("| pair | genes | " + " | ".join(row) + " |")
                    print("|---|---:|" + "---:|" * len(row))
                print(f"| {pair} | {n} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |")
            return
        print("| model | seen pairs r | unseen pairs r | seen AUC | unseen AUC | fit s |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, rows, fit_s in model_rows(args.quick, kinds):
            (rs, auc_s), (ru, auc_u) = rows["seen"], rows["unseen"]
            print(f"| {name} | {rs:.3f} | {ru:.3f} | {auc_s:.3f} | {auc_u:.3f} | {fit_s:.0f} |")
        if not args.no_deepdiff:
            print()
            print(deepdiff_section(args.quick))


if __name__ == "__main__":
    main()
