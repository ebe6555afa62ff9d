"""Backward-compatible alias: the neural estimator lives in :mod:`histexpr.estimators.neural`."""

from histexpr.estimators.neural import NeuralEstimator
from histexpr.training.config import TrainConfig

__all__ = ["NeuralEstimator", "TrainConfig"]
