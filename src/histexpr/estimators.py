"""One fit/predict surface for every model kind, and the registry of kinds.

Every model, baseline or neural, is wrapped in an *estimator* with this surface::

    est = make_estimator("ridge")                 # or "ensemble", ...
    est.fit(train, valid=None, run_dir=None)      # HistoneDataset -> self
    yhat = est.predict(ds)                        # HistoneDataset -> (n,) float32
    est.save("model_dir")                         # a bundle, see histexpr.bundle
    est = load_estimator("model_dir")

Neural estimators live in :mod:`histexpr.train`; baselines in
:mod:`histexpr.models.baselines`. Kinds are imported lazily so that importing
histexpr stays fast.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from histexpr.bundle import read_header
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import HistexprError


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
    "global-mean": "histexpr.models.baselines:GlobalMean",
    "gene-mean": "histexpr.models.baselines:GeneMean",
    "ridge": "histexpr.models.baselines:RidgeBaseline",
    "random-forest": "histexpr.models.baselines:RandomForestBaseline",
    "lightgbm": "histexpr.models.baselines:LightGBMBaseline",
    "convnet": "histexpr.train:NeuralEstimator",
    "ensemble": "histexpr.train:NeuralEstimator",
    "celltype-weighted": "histexpr.train:NeuralEstimator",
    "deepchrome": "histexpr.train:NeuralEstimator",
    "attentivechrome": "histexpr.train:NeuralEstimator",
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
