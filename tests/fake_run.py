"""A small synthetic run directory for the report tests (no training involved)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr.data.dataset import MARKS, N_BINS, HistoneDataset
from histexpr.estimators.bundle import record_auto, write_header
from histexpr.explain import CellAttributions, save_attributions
from histexpr.report import write_data_summary
from histexpr.runs import write_run

TRAIN = ["E003", "E004"]
UNSEEN = ["E071"]
CELLS = TRAIN + UNSEEN
MODELS = ["ridge", "ensemble"]


def synthetic_data(n_genes: int = 40, seed: int = 0) -> HistoneDataset:
    """Counts with a planted H3K4me3 peak at the TSS whose height follows expression."""
    rng = np.random.default_rng(seed)
    n = n_genes * len(CELLS)
    y = rng.gamma(2.0, 1.5, n).astype(np.float32)
    X = rng.poisson(1.0, (n, len(MARKS), N_BINS)).astype(np.float32)
    X[:, 3, 45:55] += rng.poisson(np.repeat(y[:, None], 10, axis=1) * 2)
    cell = np.repeat(CELLS, n_genes)
    gene = np.tile([f"ENSG{i:011d}" for i in range(n_genes)], len(CELLS))
    return HistoneDataset(X, y, cell, gene)


def make_fake_run(root: Path, data_path: str | None = None, summary: bool = True) -> Path:
    """Write every file of the run-directory contract under ``root`` and return it.

    The run files go through :func:`histexpr.runs.write_run`; models are headers only.
    """
    rng = np.random.default_rng(1)
    run = Path(root)
    run.mkdir(parents=True, exist_ok=True)
    data = synthetic_data()
    preds = {
        model: data.y + rng.normal(scale=1.0 / (i + 1), size=len(data))
        for i, model in enumerate(MODELS)
    }
    preds["oracle"] = data.y
    rows, per_cell = [], []
    for model in MODELS:
        for group in ("seen", "unseen", "all"):
            rows.append(
                {
                    "model": model,
                    "group": group,
                    "mse": 0.5,
                    "pearson": 0.8123,
                    "spearman": 0.7,
                    "r2": 0.6,
                    "auc": 0.9,
                    "mse_over_oracle": np.nan,
                    "n": 40,
                }
            )
        for cell in CELLS:
            per_cell.append(
                {
                    "model": model,
                    "cell": cell,
                    "seen": cell in TRAIN,
                    "mse": 0.5,
                    "pearson": 0.8,
                    "spearman": 0.7,
                    "r2": 0.6,
                    "auc": 0.9,
                    "n": 40,
                }
            )
    write_run(
        run,
        results=pd.DataFrame(rows),
        per_cell=pd.DataFrame(per_cell),
        cell=data.cell,
        gene=data.gene,
        y=data.y,
        predictions=preds,
        config={"seed": 0, "models": MODELS, "epochs": 5},
        n_examples=len(data),
        cells=CELLS,
        train_cells=TRAIN,
        unseen_cells=UNSEEN,
        target=data.target,
        data_path=data_path,
        command="demo",
    )
    for model, kind in (("ridge", "ridge"), ("ensemble", "ensemble")):
        d = run / "models" / model
        d.mkdir(parents=True, exist_ok=True)
        write_header(d, kind, {"lr": 1e-3}, MARKS, N_BINS)
    history = pd.DataFrame(
        [
            {"member": m, "epoch": e, "split": s, "loss": 2.0 / (e + 1) + 0.1 * m + (s != "train")}
            for m in range(2)
            for s in ("train", "valid", "trainval")
            for e in range(5)
        ]
    )
    history.to_csv(run / "models" / "ensemble" / "history.csv", index=False)
    signed = rng.normal(size=(2, len(MARKS), N_BINS)).astype(np.float32)
    attrs = CellAttributions(
        "saliency", ("E003", "E071"), MARKS, signed, np.abs(signed), np.array([40, 40])
    )
    save_attributions(run / "explain" / "attributions_saliency.npz", attrs)
    (run / "explain" / "explain.json").write_text(
        json.dumps(
            {
                "format": "histexpr-explain",
                "format_version": 1,
                "model": "ensemble",
                "model_dir": str((run / "models" / "ensemble").resolve()),
                "methods": ["saliency"],
                "marks": list(MARKS),
                "baseline": "zeros",
                "max_per_cell": 2000,
                "attention": True,
            }
        )
    )
    attention = rng.dirichlet(np.ones(N_BINS), size=len(MARKS)).astype(np.float32)
    np.savez(run / "explain" / "attention.npz", E003=attention, E003_marks=attention.sum(1) / 5)
    if summary:
        write_data_summary(data, run)
    return run


def make_scored_run(root: Path, intervals: bool = True, auto: bool = True) -> Path:
    """A run scored by :func:`histexpr.evaluate.evaluate_predictions` with four groups.

    Models: ``ridge`` and ``convnet`` (informative), ``global-mean`` (one value everywhere),
    ``gene-mean`` (each training gene's mean; the global mean on new genes) and the
    ``oracle``. With ``intervals``, ``intervals.csv``; with ``auto``, an automatic model
    choice in ``models/convnet/model.json`` (key ``auto``, :func:`bundle.record_auto`).
    """
    from histexpr.evaluate import assign_groups, evaluate_predictions

    rng = np.random.default_rng(2)
    run = Path(root)
    data = synthetic_data()
    genes = np.unique(data.gene)
    train_genes = genes[: len(genes) // 2]
    truth = data.y + rng.normal(scale=0.3, size=len(data))
    known = np.isin(data.gene, train_genes)
    gene_means = pd.Series(data.y).groupby(data.gene).transform("mean").to_numpy()
    preds = {
        "ridge": truth + rng.normal(scale=1.2, size=len(data)),
        "convnet": truth + rng.normal(scale=0.7, size=len(data)),
        "global-mean": np.full(len(data), float(data.y.mean())),
        "gene-mean": np.where(known, gene_means, float(data.y.mean())),
        "oracle": truth,
    }
    group = assign_groups(data.cell, data.gene, train_cells=TRAIN, train_genes=train_genes)
    ev = evaluate_predictions(
        data.y, data.cell, preds, gene=data.gene, train_cells=TRAIN, train_genes=train_genes
    )
    write_run(
        run,
        results=ev.table,
        per_cell=ev.per_cell,
        cell=data.cell,
        gene=data.gene,
        y=data.y,
        predictions=preds,
        config={"seed": 0, "models": list(preds)},
        n_examples=len(data),
        cells=CELLS,
        train_cells=TRAIN,
        unseen_cells=UNSEEN,
        target=data.target,
        command="experiment",
        group=group,
    )
    for model in ("ridge", "convnet"):
        d = run / "models" / model
        d.mkdir(parents=True, exist_ok=True)
        write_header(d, model, {"lr": 1e-3}, MARKS, N_BINS)
        if auto and model == "convnet":
            record_auto(
                d,
                [
                    {"candidate": c, "score": s, "spread": 0.02, "fit_seconds": t, "chosen": k}
                    for c, s, t, k in (
                        ("convnet", 0.61, 42.0, True),
                        ("ridge", 0.55, 1.5, False),
                        ("lightgbm", 0.58, 8.25, False),
                    )
                ],
            )
    if intervals:
        rows = [
            {"group": g, "model": m, "level": 0.9, "coverage": c, "width": w, "n": 40}
            for g in ("all", "seen/new", "unseen/new")
            for m, c, w in (("ridge", 0.93, 4.1), ("convnet", 0.88, 2.6))
        ]
        pd.DataFrame(rows).to_csv(run / "intervals.csv", index=False)
    return run
