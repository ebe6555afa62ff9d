"""Calibrated REMC simulator with a known Bayes floor.

Real targets (log2(RPKM+1) of real genes and cell types from the packaged
Roadmap matrix) with histone counts drawn from an explicit likelihood
p(X | y, gene class, cell type), so that the Bayes posterior mean
(:func:`oracle_predict`) gives the lowest MSE any model can reach. See
``docs/simulator.md`` for the model and its calibration against real data.

Examples
--------
>>> from histexpr.simulator import SimulatorConfig, simulate, oracle_for_dataset
>>> ds = simulate(SimulatorConfig(cells=("E003",), n_genes=200))  # doctest: +SKIP
>>> floor = ((ds.y - oracle_for_dataset(ds)) ** 2).mean()  # doctest: +SKIP
"""

from histexpr.simulator.config import (
    DEFAULT_TRAIN_CELLS,
    DEFAULT_UNSEEN_CELLS,
    ProfileParams,
    SimulatorConfig,
    default_config,
)
from histexpr.simulator.generate import default_dataset, simulate, simulated_genes
from histexpr.simulator.oracle import (
    Simulator,
    config_from_meta,
    oracle_for_dataset,
    oracle_predict,
)

__all__ = [
    "DEFAULT_TRAIN_CELLS",
    "DEFAULT_UNSEEN_CELLS",
    "ProfileParams",
    "Simulator",
    "SimulatorConfig",
    "config_from_meta",
    "default_config",
    "default_dataset",
    "oracle_for_dataset",
    "oracle_predict",
    "simulate",
    "simulated_genes",
]
