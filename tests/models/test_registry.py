"""The network registry: one entry per kind is all a new network needs."""

from dataclasses import dataclass

import numpy as np
import pytest
from torch import nn

from conftest import make_planted
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import KINDS, kind_names, load_estimator, make_estimator, settings
from histexpr.models import (
    NETWORKS,
    ConvNetConfig,
    Network,
    build_net,
    network,
    register,
    unregister,
)


@dataclass(frozen=True)
class LinearConfig:
    """A throwaway network: one linear layer over all mark-bins.

    Attributes
    ----------
    bias : bool
        Whether the layer has a bias.
    """

    bias: bool = True


def _linear(cfg, n_marks, n_bins, **_):
    return nn.Sequential(nn.Flatten(), nn.Linear(n_marks * n_bins, 1, bias=cfg.bias))


@pytest.fixture
def linear_kind():
    register(Network("tiny-linear", LinearConfig, _linear, "single", description="test"))
    yield "tiny-linear"
    unregister("tiny-linear")


def test_builtin_kinds_are_registered_with_their_plans():
    plans = {k: NETWORKS[k].plan for k in NETWORKS}
    assert plans == {
        "convnet": "single",
        "ensemble": "folds",
        "celltype-weighted": "experts",
        "deepchrome": "single",
        "attentivechrome": "single",
    }
    assert [k for k in NETWORKS if NETWORKS[k].attention] == ["attentivechrome"]
    assert all(KINDS[k].endswith(":NeuralEstimator") for k in NETWORKS)
    assert kind_names(family="network") == tuple(NETWORKS)


def test_a_registered_kind_trains_saves_and_loads_with_no_other_edit(linear_kind, tmp_path):
    assert linear_kind in KINDS and linear_kind in kind_names(family="network")
    data = make_planted(40, cells=("E003", "E004"))
    opts = {"epochs": 2, "progress": False, "threads": 1, "batch_size": 32, "bias": False}
    est = make_estimator(linear_kind, opts).fit(data, run_dir=tmp_path / "run")
    assert est.model_cfg == LinearConfig(bias=False)
    pred = est.predict(data)
    assert pred.shape == (len(data),) and np.isfinite(pred).all()
    loaded = load_estimator(est.save(tmp_path / "m"))
    assert loaded.kind == linear_kind and loaded.model_cfg == LinearConfig(bias=False)
    np.testing.assert_array_equal(loaded.predict(data), pred)
    assert {s.name for s in settings(linear_kind)} >= {"model.bias", "train.optim.lr"}
    assert [s.help for s in settings(linear_kind) if s.name == "model.bias"] == [
        "Whether the layer has a bias"
    ]


def test_unregistered_kind_is_one_clear_line(linear_kind, tmp_path):
    data = make_planted(30, cells=("E003", "E004"))
    opts = {"epochs": 1, "progress": False, "threads": 1}
    path = make_estimator(linear_kind, opts).fit(data).save(tmp_path / "m")
    unregister(linear_kind)
    with pytest.raises(HistexprError, match="unknown model kind 'tiny-linear'"):
        load_estimator(path)
    with pytest.raises(ConfigError, match="unknown neural model kind"):
        network(linear_kind)


def test_an_incomplete_or_wrong_entry_fails_loudly():
    with pytest.raises(TypeError, match="plan"):
        Network("x", LinearConfig, _linear)  # no member plan
    with pytest.raises(ConfigError, match="plan must be one of single, folds, experts"):
        Network("x", LinearConfig, _linear, "bagging")
    with pytest.raises(ConfigError, match="config_cls must be a dataclass"):
        Network("x", dict, _linear, "single")
    with pytest.raises(ConfigError, match="build must be callable"):
        Network("x", LinearConfig, None, "single")
    with pytest.raises(ConfigError, match="already registered"):
        register(Network("convnet", ConvNetConfig, _linear, "single"))
    assert NETWORKS["convnet"].build is not _linear


def test_a_folds_kind_whose_network_has_no_member_paths_fails_at_fit(tmp_path):
    register(Network("bad-folds", LinearConfig, _linear, "folds"))
    try:
        data = make_planted(30, cells=("E003", "E004", "E005"))
        est = make_estimator("bad-folds", {"epochs": 1, "progress": False, "threads": 1})
        with pytest.raises(HistexprError, match="member_paths"):
            est.fit(data)
    finally:
        unregister("bad-folds")


def test_build_net_reads_the_registry():
    small = ConvNetConfig(channels=(4, 4, 8, 8, 8, 8, 8, 8))
    ens = build_net("ensemble", small, 5, 100, n_folds=4)
    assert ens.member_paths() == [f"members.{k}" for k in range(4)]
    mix = build_net("celltype-weighted", small, 5, 100, n_cells=2)
    assert mix.gate_path() == "gate" and mix.expert_paths() == ["experts.0", "experts.1"]
    with pytest.raises(ConfigError, match="unknown neural model kind 'nope'"):
        build_net("nope", small, 5, 100)
