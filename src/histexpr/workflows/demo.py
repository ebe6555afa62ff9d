"""Workflow of ``histexpr demo``: the main job on the embedded simulated data set."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr._runtime import Steps
from histexpr.atomic import atomic_path
from histexpr.data.convert import load_dataset
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import HistexprError
from histexpr.estimators import kind_of, make_estimator
from histexpr.runs import DIFFERENTIAL
from histexpr.workflows.experiment import (
    DEFAULT_MODELS,
    ExperimentConfig,
    ExperimentResult,
    check_models,
    model_weights,
    run_experiment,
)
from histexpr.workflows.explain_target import explain_candidates
from histexpr.workflows.pairs import SCORE_COLUMNS, PairEvaluation, pair_prediction, pair_scores

#: Neural settings of the demo only: smaller widths and few epochs keep it within
#: a few minutes on 2 CPU cores. The default configs remain the seed's. The eval-mode
#: loss on the training data (the loss curves of the report) is taken on 2,000
#: examples, not all (it is only logged: the weights do not change). Patience 3: in the
#: demo's atlas-convnet no member improved more than 2 epochs after its previous best,
#: so stopping 3 epochs after the best keeps the same weights and saves one epoch each.
DEMO_NEURAL = (
    "channels=32,32,64,64,128,128,256,256",
    "epochs=12",
    "patience=3",
    "trainval_max=2000",
)
#: The ensemble trains three epochs under a cosine learning rate (from lr down to 0)
#: instead of up to 12 at a constant one: its members' validation loss was best after
#: 2-4 epochs and rose by up to 12 % from one epoch to the next at the constant rate; annealed,
#: it ends lower in all three groups in a quarter of the time. atlas-convnet keeps the
#: constant rate: annealed over 4 or 6 epochs its unseen/known MSE was 11 % and 3 %
#: worse (docs/benchmarks.md, "The demo in minutes").
DEMO_NEURAL_KIND = ("ensemble:epochs=3", "ensemble:schedule=cosine")
#: The demo's models: the defaults and the three atlas kinds (the other cell types'
#: expression as a prior; scored in the same three groups). atlas-convnet takes the
#: demo's neural settings above, like the ensemble.
DEMO_MODELS = (*DEFAULT_MODELS, "atlas-ridge", "atlas-lightgbm", "atlas-convnet")


def run_demo(
    run_dir,
    models: Sequence[str] | None = None,
    report: bool = True,
    differential: bool = True,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> ExperimentResult:
    """The main job on the embedded simulated data set (generated once, then cached).

    ``log`` gets the data summary, the differential table and, with ``progress``, one
    line per step (step, elapsed time, time left). With ``differential`` a short
    differential section follows (two pairs of cell types,
    :func:`run_diff_demo`), written to ``RUN_DIR/differential.csv``.
    """
    from histexpr.simulator import default_dataset

    config = ExperimentConfig(
        models=tuple(models or DEMO_MODELS),
        neural=DEMO_NEURAL,
        neural_kind=tuple(
            k for k in DEMO_NEURAL_KIND if k.split(":")[0] in (models or DEMO_MODELS)
        ),
    )
    check_models(config.models)  # before the data set is made or read
    path = default_dataset()
    log(f"data: {path}")
    data = load_dataset(path)
    neural = explain_candidates({m: m for m in config.models})  # the model explained
    extra = [differential, report and bool(neural), report]
    steps = Steps(model_weights(config.models) + [1.0] * sum(extra), emit=log, enabled=progress)
    result = run_experiment(
        data, run_dir, config, data_path=str(path), log=log, steps=steps, progress=progress
    )
    if differential and len(result.train_cells) >= 2:
        steps.begin("differential section ...")
        run_differential(data, result, config, log)
    if report:
        from histexpr.report import write_data_summary, write_report

        write_data_summary(data, result.run_dir)
        if neural:
            from histexpr.workflows.explain import explain_run

            # one seen and one unseen cell type, as the seed's Fig. 4 compares
            cells = result.train_cells[:1] + result.unseen_cells[:1]
            steps.begin(f"explaining {neural[0]} on {', '.join(cells)} ...")
            explain_run(
                result.run_dir,
                data.select_cells(cells),
                cells,
                model_kind=neural[0],
                max_per_cell=200,
                n_steps=32,
                show_progress=False,
            )
        steps.begin("writing the report ...")
        html = write_report(result.run_dir)
        log(f"report: {html}")
    return result


def run_differential(data, result: ExperimentResult, config: ExperimentConfig, log=print):
    """The demo's differential section, scored on the genes the experiment held out.

    Writes ``RUN_DIR/differential.csv`` (:data:`histexpr.runs.DIFFERENTIAL`) and logs it.
    """
    from histexpr.workflows.experiment import split_examples

    train, _, _ = split_examples(data, config, result.unseen_cells)
    held_out = np.setdiff1d(np.unique(data.gene), np.unique(train.gene))
    ev = run_diff_demo(
        data, result.run_dir, result.train_cells, result.unseen_cells, held_out, log=log
    )
    cols = [c for c in ("model", "pair", "cells", "n", "pearson", "auc") if c in ev.table]
    log(ev.table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return ev


def run_diff_demo(
    data: HistoneDataset,
    out_dir,
    train_cells: Sequence[str],
    unseen_cells: Sequence[str],
    test_genes: Sequence[str] | None = None,
    max_pairs: int = 6,
    log: Callable[[str], None] = print,
) -> PairEvaluation:
    """The demo's differential section: ``diff-ridge`` vs the ridge difference on two pairs.

    Both models train on ``train_cells`` x the genes not in ``test_genes``; the pairs are
    two training cell types (seen) and an unseen cell type vs a training one, scored on
    ``test_genes`` (default: every gene). Writes ``OUT_DIR/differential.csv``.
    """
    train_cells, unseen_cells = list(train_cells), list(unseen_cells)
    if len(train_cells) < 2:
        raise HistexprError("the differential demo needs two training cell types")
    test_genes = np.unique(data.gene) if test_genes is None else np.asarray(test_genes)
    fit_genes = np.setdiff1d(np.unique(data.gene), test_genes)
    train = data.select_cells(train_cells)
    train = train.select_genes(fit_genes) if len(fit_genes) else train
    pairs = [(train_cells[0], train_cells[1])]
    if unseen_cells:
        pairs.append((unseen_cells[0], train_cells[0]))
    test = data.select_cells(sorted({c for p in pairs for c in p})).select_genes(test_genes)
    names = ", ".join(f"{a}:{b}" for a, b in pairs)
    log(f"differential: diff-ridge on {len(train.cells)} cell types, pairs {names}")
    rows = []
    for kind, over in (("diff-ridge", [f"max_pairs={max_pairs}"]), ("ridge", None)):
        est = make_estimator(kind, over).fit(train)
        label = kind if kind_of(kind).pairs else f"{kind} difference"
        preds = [pair_prediction(est, test, a, b) for a, b in pairs]
        rows += pair_scores(label, preds, set(train.cells))
    table = pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
    out = Path(out_dir) / DIFFERENTIAL
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return PairEvaluation(table, [f"wrote {out}"])
