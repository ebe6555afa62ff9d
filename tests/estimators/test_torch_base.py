"""Every torch kind is one TorchEstimator: shared fit, metrics, save and load."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from conftest import FAST, make_planted
from histexpr.errors import HistexprError
from histexpr.estimators import make_estimator
from histexpr.estimators.kinds import kind_names, kind_of
from histexpr.estimators.neural import NeuralEstimator
from histexpr.estimators.torch_base import TorchEstimator


def _estimator_class(kind: str) -> type:
    module, name = kind_of(kind).estimator.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("kind", kind_names(network=True))
def test_each_network_kind_trains_saves_and_loads_through_the_base(kind):
    cls = _estimator_class(kind)
    assert issubclass(cls, TorchEstimator)
    # the shared parts are the base's, not a copy per kind
    assert cls.fit is TorchEstimator.fit and cls.save is TorchEstimator.save
    assert cls.load.__func__ is TorchEstimator.load.__func__


def test_metrics_cap_and_a_directory_of_another_kind(tmp_path):
    data = make_planted(60, ("E003", "E004"), seed=5)
    est = make_estimator("convnet", {**FAST, "epochs": 1, "trainval_max": 50}).fit(data)
    m = est.metrics_
    assert m["n_train"] == 120 and m["n_train_metrics"] == 50
    assert np.isfinite(m["train_mse"]) and m["members"][0]["name"] == "model"
    ridge = make_estimator("ridge").fit(data).save(tmp_path / "ridge")
    with pytest.raises(HistexprError, match="not a NeuralEstimator model") as info:
        NeuralEstimator.load(ridge)
    assert "\n" not in str(info.value)
