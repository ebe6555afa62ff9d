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
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from histexpr.config import Setting, describe
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import HistexprError
from histexpr.estimators.bundle import HEADER, read_header
from histexpr.estimators.kinds import KIND_TABLE, Kind, kind_names, kind_of

__all__ = [
    "KINDS",
    "KIND_TABLE",
    "Estimator",
    "Kind",
    "check_trainable",
    "fit_estimator",
    "kind_names",
    "kind_of",
    "load_estimator",
    "make_estimator",
    "min_genes",
    "settings",
]


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


class _Kinds(Mapping):
    """kind -> "module:Class" of its estimator, read from the one table of kinds."""

    def __getitem__(self, kind: str) -> str:
        return KIND_TABLE[kind].estimator

    def __iter__(self):
        return iter(KIND_TABLE)

    def __len__(self) -> int:
        return len(KIND_TABLE)


#: kind -> "module:Class"; each class has ``create(kind, overrides)`` and ``load(directory)``.
#: A view of :data:`histexpr.estimators.kinds.KIND_TABLE` (adding a network adds a kind).
KINDS: Mapping[str, str] = _Kinds()


def _class_for(kind: str):
    module, name = kind_of(kind).estimator.split(":")
    return getattr(importlib.import_module(module), name)


def make_estimator(kind: str, overrides: dict | list[str] | None = None) -> Estimator:
    """A new, unfitted estimator of ``kind`` with config fields overridden."""
    return _class_for(kind).create(kind, overrides)


def min_genes(kind: str) -> int:
    """Fewest distinct training genes ``kind`` trains on (:data:`MIN_GENES`, ``Network.min_genes``)."""
    return kind_of(kind).min_genes


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


def defines(kind: str, name: str) -> bool:
    """Whether ``name`` (flat, dotted or an alias) is a ``--set`` setting of ``kind``."""
    if kind_of(kind).family == "network":
        from histexpr.estimators.neural import defines as neural_defines

        return neural_defines(kind, name)
    # every other estimator class answers for its own settings (grouped ones resolve aliases)
    return _class_for(kind).defines(name)


def settings(kind: str) -> list[Setting]:
    """Every setting of ``kind`` (what ``--set`` takes) with its default and meaning.

    Neural kinds list the architecture (``model.*``), training (``train.*``) and
    inference (``inference.*``) fields; a flat name works with ``--set`` as long as
    it is unambiguous.
    """
    if kind_of(kind).family == "network":
        from histexpr.estimators.neural import neural_configs

        return [
            s._replace(name=f"{group}.{s.name}")
            for group, cfg in neural_configs(kind).items()
            for s in describe(cfg)
        ]
    cls = _class_for(kind)
    return describe(cls.config_cls())
