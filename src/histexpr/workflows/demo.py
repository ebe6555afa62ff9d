"""Workflow of ``histexpr demo``: the main job on the embedded simulated data set."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from histexpr._runtime import Steps
from histexpr.data.convert import load_dataset
from histexpr.estimators import NEURAL_KINDS
from histexpr.workflows.experiment import (
    DEFAULT_MODELS,
    ExperimentConfig,
    ExperimentResult,
    model_weights,
    run_experiment,
)

#: Neural settings of the demo only: smaller widths and few epochs keep it within
#: a few minutes on 2 CPU cores. The default configs remain the seed's. The eval-mode
#: loss on the training data (the loss curves of the report) is taken on 2,000
#: examples, not all (it is only logged: the weights do not change).
DEMO_NEURAL = (
    "channels=32,32,64,64,128,128,256,256",
    "epochs=12",
    "patience=4",
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
    :func:`histexpr.workflows.diff.run_diff_demo`), written to ``RUN_DIR/differential.csv``.
    """
    from histexpr.simulator import default_dataset

    path = default_dataset()
    log(f"data: {path}")
    data = load_dataset(path)
    config = ExperimentConfig(
        models=tuple(models or DEMO_MODELS),
        neural=DEMO_NEURAL,
        neural_kind=tuple(
            k for k in DEMO_NEURAL_KIND if k.split(":")[0] in (models or DEMO_MODELS)
        ),
    )
    neural = [m for m in config.models if m in NEURAL_KINDS]
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
    import numpy as np

    from histexpr.workflows.diff import run_diff_demo
    from histexpr.workflows.experiment import split_examples

    train, _, _ = split_examples(data, config, result.unseen_cells)
    held_out = np.setdiff1d(np.unique(data.gene), np.unique(train.gene))
    ev = run_diff_demo(
        data, result.run_dir, result.train_cells, result.unseen_cells, held_out, log=log
    )
    cols = [c for c in ("model", "pair", "cells", "n", "pearson", "auc") if c in ev.table]
    log(ev.table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return ev
