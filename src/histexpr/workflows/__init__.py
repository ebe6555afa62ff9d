"""Workflows behind the CLI commands: paths in, result objects out.

Each function takes paths, calls the library and returns a result object; the
CLI only parses options and prints. One module per command, each for every kind
(``--pair A:B`` included: :mod:`~histexpr.workflows.pairs` holds the pair pieces):

- :mod:`~histexpr.workflows.train` -- :func:`train_model`
- :mod:`~histexpr.workflows.evaluate` -- :func:`evaluate_model`
- :mod:`~histexpr.workflows.predict` -- :func:`predict_file` (the streamed reader of
  predict and evaluate: :mod:`~histexpr.workflows.stream`)
- :mod:`~histexpr.workflows.demo` -- :func:`run_demo`
- :mod:`~histexpr.workflows.experiment` -- :func:`run_experiment` (the run directory)
- :mod:`~histexpr.workflows.explain` -- :func:`explain_run`, :func:`explain_path`
"""

from __future__ import annotations

from histexpr.workflows.demo import DEMO_NEURAL, run_demo
from histexpr.workflows.evaluate import evaluate_model
from histexpr.workflows.predict import (
    DEFAULT_MEMORY_BUDGET,
    parse_size,
    predict_file,
    rows_for_budget,
)
from histexpr.workflows.train import TrainResult, train_model

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "DEMO_NEURAL",
    "TrainResult",
    "evaluate_model",
    "parse_size",
    "predict_file",
    "rows_for_budget",
    "run_demo",
    "train_model",
]
