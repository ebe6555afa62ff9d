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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from histexpr.config import Setting, describe
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import HistexprError
from histexpr.estimators.bundle import HEADER, read_header
from histexpr.models import NETWORKS


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


#: Baseline kind -> "module:Class".
BASELINES: dict[str, str] = {
    "global-mean": "histexpr.estimators.baselines:GlobalMean",
    "gene-mean": "histexpr.estimators.baselines:GeneMean",
    "ridge": "histexpr.estimators.baselines:RidgeBaseline",
    "random-forest": "histexpr.estimators.baselines:RandomForestBaseline",
    "lightgbm": "histexpr.estimators.baselines:LightGBMBaseline",
    "atlas-ridge": "histexpr.estimators.atlas:AtlasRidge",
    "atlas-lightgbm": "histexpr.estimators.atlas:AtlasLightGBM",
    "atlas-convnet": "histexpr.estimators.atlas_neural:AtlasConvNetEstimator",
}
#: Differential kinds (log fold change between two cell types; predict_pair, not predict).
DIFF_KINDS: dict[str, str] = {
    "diff-ridge": "histexpr.estimators.diff_levels:DiffRidge",
    "diff-lightgbm": "histexpr.estimators.diff_levels:DiffLightGBM",
    "diff-convnet": "histexpr.estimators.diff_neural:DiffConvNetEstimator",
}
#: Fewest distinct training genes of each kind outside the network registry (a
#: registered network declares its own, ``Network.min_genes``): below it a model is a
#: constant, or its fit fails, so :func:`check_trainable` refuses in one line.
MIN_GENES: dict[str, int] = {
    "global-mean": 1,
    "gene-mean": 1,
    "ridge": 5,  # the penalty is cross-validated over genes, 5 folds by default
    "random-forest": 5,
    "lightgbm": 20,  # leaves hold at least 20 examples: fewer genes give one constant
    "atlas-ridge": 5,
    "atlas-lightgbm": 20,
    "atlas-convnet": 10,
    "diff-ridge": 5,
    "diff-lightgbm": 20,
    "diff-convnet": 10,
}
NEURAL_ESTIMATOR = "histexpr.estimators.neural:NeuralEstimator"
#: Kinds outside the network registry whose networks train with the neural training
#: settings (``epochs``, ``batch_size``, ... and ``--resume`` for atlas-convnet).
TORCH_KINDS = ("atlas-convnet", "diff-convnet")
BASELINE_KINDS = tuple(BASELINES)


class _NeuralKinds(Sequence):
    """The neural kinds: every entry of :data:`histexpr.models.NETWORKS`, read live."""

    def __getitem__(self, i):
        return tuple(NETWORKS)[i]

    def __len__(self) -> int:
        return len(NETWORKS)

    def __contains__(self, kind) -> bool:
        return kind in NETWORKS

    def __repr__(self) -> str:
        return repr(tuple(NETWORKS))


class _Kinds(Mapping):
    """kind -> "module:Class": the baselines, then every registered network."""

    def __getitem__(self, kind: str) -> str:
        if kind in BASELINES:
            return BASELINES[kind]
        if kind in DIFF_KINDS:
            return DIFF_KINDS[kind]
        if kind in NETWORKS:
            return NEURAL_ESTIMATOR
        raise KeyError(kind)

    def __iter__(self):
        yield from BASELINES
        yield from DIFF_KINDS
        yield from NETWORKS

    def __len__(self) -> int:
        return len(BASELINES) + len(DIFF_KINDS) + len(NETWORKS)


#: kind -> "module:Class"; each class has ``create(kind, overrides)`` and ``load(directory)``.
#: The neural entries come from the network registry: adding a network adds a kind.
KINDS: Mapping[str, str] = _Kinds()
NEURAL_KINDS: Sequence[str] = _NeuralKinds()


def _class_for(kind: str):
    if kind not in KINDS:
        raise HistexprError(f"unknown model kind {kind!r}; choose from {', '.join(KINDS)}")
    module, name = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def make_estimator(kind: str, overrides: dict | list[str] | None = None) -> Estimator:
    """A new, unfitted estimator of ``kind`` with config fields overridden."""
    return _class_for(kind).create(kind, overrides)


def min_genes(kind: str) -> int:
    """Fewest distinct training genes ``kind`` trains on (:data:`MIN_GENES`, ``Network.min_genes``)."""
    if kind in NETWORKS:
        return int(NETWORKS[kind].min_genes)
    _class_for(kind)  # unknown kinds: the usual one-line error
    return int(MIN_GENES.get(kind, 1))


def check_trainable(kind: str, train: HistoneDataset, source: str = "training data") -> None:
    """Refuse, in one line, training data with fewer genes than ``kind`` needs.

    The one size check before any fit (:func:`fit_estimator`): a ridge fitted on one
    gene predicts a constant for every gene, and the tree and neural kinds fail
    deep inside their libraries.
    """
    need = min_genes(kind)
    have = len(np.unique(train.gene)) if len(train) else 0
    if have < need:
        raise HistexprError(
            f"{source}: {have} gene(s) to train on; {kind} needs at least {need} "
            "(after the genes held out for validation)"
        )


def fit_estimator(est: Estimator, train: HistoneDataset, valid=None, run_dir=None, **kwargs):
    """``est.fit(train, valid, run_dir, ...)`` after :func:`check_trainable`; returns ``est``."""
    check_trainable(est.kind, train)
    return est.fit(train, valid, run_dir=run_dir, **kwargs)


def load_estimator(directory) -> Estimator:
    """Load any saved model directory (dispatches on ``model.json``'s kind)."""
    header = read_header(directory)
    try:
        return _class_for(header.kind).load(directory)
    except HistexprError as exc:
        # a bad kind or config of model.json: name the file (errors of other files do)
        if str(directory) in str(exc):
            raise
        raise HistexprError(f"{Path(directory) / HEADER}: {exc}") from None


def trains_network(kind: str) -> bool:
    """Whether ``kind`` trains a torch network (a registered one or a :data:`TORCH_KINDS`)."""
    return kind in NETWORKS or kind in TORCH_KINDS


def defines(kind: str, name: str) -> bool:
    """Whether ``name`` (flat, dotted or an alias) is a ``--set`` setting of ``kind``."""
    if kind in NETWORKS:
        from histexpr.estimators.neural import defines as neural_defines

        return neural_defines(kind, name)
    cls = _class_for(kind)
    if hasattr(cls, "defines"):
        return cls.defines(name)
    return name in {s.name for s in describe(cls.config_cls())}


def settings(kind: str) -> list[Setting]:
    """Every setting of ``kind`` (what ``--set`` takes) with its default and meaning.

    Neural kinds list the architecture (``model.*``), training (``train.*``) and
    inference (``inference.*``) fields; a flat name works with ``--set`` as long as
    it is unambiguous.
    """
    if kind in NETWORKS:
        from histexpr.estimators.neural import neural_configs

        return [
            s._replace(name=f"{group}.{s.name}")
            for group, cfg in neural_configs(kind).items()
            for s in describe(cfg)
        ]
    cls = _class_for(kind)
    return describe(cls.config_cls())
