"""Packaged real data and the simulated benchmark data, in one namespace.

A facade for users: the packaged Roadmap tables live in
:mod:`histexpr.data.reference`, the simulator in :mod:`histexpr.simulator`.
"""

from histexpr.data.reference import (
    DEEPCHROME_CELLS,
    TRAIN_CELLS,
    UNSEEN_CELLS,
    deepchrome_genes,
    deepchrome_split,
    load_epigenomes,
    load_expression,
    load_rpkm,
    load_tss,
)
from histexpr.simulator import (
    DEFAULT_TRAIN_CELLS,
    DEFAULT_UNSEEN_CELLS,
    SimulatorConfig,
    default_config,
    default_dataset,
    oracle_for_dataset,
    oracle_predict,
    simulate,
)

__all__ = [
    "DEEPCHROME_CELLS",
    "DEFAULT_TRAIN_CELLS",
    "DEFAULT_UNSEEN_CELLS",
    "TRAIN_CELLS",
    "UNSEEN_CELLS",
    "SimulatorConfig",
    "deepchrome_genes",
    "deepchrome_split",
    "default_config",
    "default_dataset",
    "load_epigenomes",
    "load_expression",
    "load_rpkm",
    "load_tss",
    "oracle_for_dataset",
    "oracle_predict",
    "simulate",
]
