"""One fit/predict surface for every model kind, and the registry of kinds.

Every model, baseline or neural, is wrapped in an *estimator* with this surface::

    est = make_estimator("ridge")                 # or "ensemble", ...
    est.fit(train, valid=None, run_dir=None)      # HistoneDataset -> self
    yhat = est.predict(ds)                        # HistoneDataset -> (n,) float32
    est.save("model_dir")                         # a bundle, see histexpr.estimators.bundle
    est = load_estimator("model_dir")

Neural estimators live in :mod:`histexpr.estimators.neural`; baselines in
:mod:`histexpr.estimators.baselines`. Kinds are imported lazily so that importing
histexpr stays fast.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from histexpr.data.dataset import HistoneDataset
from histexpr.errors import HistexprError
from histexpr.estimators.bundle import read_header


@runtime_checkable
class Estimator(Protocol):
    """The surface shared by all model kinds."""

    kind: str

    def fit(
        self,
        train: HistoneDataset,
        valid: HistoneDataset | None = None,
        run_dir: Path | None = None,
    ) -> Estimator: ...

    def predict(self, data: HistoneDataset, batch_size: int | None = None) -> np.ndarray: ...

    def save(self, directory) -> Path: ...


#: kind -> "module:Class"; each class has ``create(kind, overrides)`` and ``load(directory)``.
KINDS: dict[str, str] = {
    "global-mean": "histexpr.estimators.baselines:GlobalMean",
    "gene-mean": "histexpr.estimators.baselines:GeneMean",
    "ridge": "histexpr.estimators.baselines:RidgeBaseline",
    "random-forest": "histexpr.estimators.baselines:RandomForestBaseline",
    "lightgbm": "histexpr.estimators.baselines:LightGBMBaseline",
    "convnet": "histexpr.estimators.neural:NeuralEstimator",
    "ensemble": "histexpr.estimators.neural:NeuralEstimator",
    "celltype-weighted": "histexpr.estimators.neural:NeuralEstimator",
    "deepchrome": "histexpr.estimators.neural:NeuralEstimator",
    "attentivechrome": "histexpr.estimators.neural:NeuralEstimator",
}
BASELINE_KINDS = ("global-mean", "gene-mean", "ridge", "random-forest", "lightgbm")
NEURAL_KINDS = ("convnet", "ensemble", "celltype-weighted", "deepchrome", "attentivechrome")


def _class_for(kind: str):
    if kind not in KINDS:
        raise HistexprError(f"unknown model kind {kind!r}; choose from {', '.join(KINDS)}")
    module, name = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def make_estimator(kind: str, overrides: dict | list[str] | None = None) -> Estimator:
    """A new, unfitted estimator of ``kind`` with config fields overridden."""
    return _class_for(kind).create(kind, overrides)


def load_estimator(directory) -> Estimator:
    """Load any saved model directory (dispatches on ``model.json``'s kind)."""
    header = read_header(directory)
    return _class_for(header.kind).load(directory)
