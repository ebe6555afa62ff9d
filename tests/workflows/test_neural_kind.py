"""ExperimentConfig.neural_kind: ``kind:field=value`` settings for one neural kind only."""

import pytest

from histexpr.errors import ConfigError
from histexpr.workflows import demo
from histexpr.workflows.experiment import ExperimentConfig, _neural_overrides


def test_kind_setting_replaces_the_shared_one_for_that_kind_only():
    config = ExperimentConfig(
        models=("ensemble", "atlas-convnet", "ridge"),
        neural=("epochs=12", "patience=4"),
        neural_kind=("ensemble:epochs=3", "ensemble:schedule=cosine"),
    )
    over = _neural_overrides(config)
    assert over["ensemble"] == ["epochs=3", "patience=4", "schedule=cosine"]
    assert over["atlas-convnet"] == ["epochs=12", "patience=4"]


@pytest.mark.parametrize("item", ["convnet:epochs=3", "ensemble:nonsense=1", "ridge:alpha=1"])
def test_kind_setting_must_name_a_requested_kind_and_its_field(item):
    config = ExperimentConfig(models=("ensemble", "ridge"), neural_kind=(item,))
    with pytest.raises(ConfigError, match="neural override"):
        _neural_overrides(config)


def test_demo_kind_settings_name_demo_kinds():
    config = ExperimentConfig(
        models=demo.DEMO_MODELS, neural=demo.DEMO_NEURAL, neural_kind=demo.DEMO_NEURAL_KIND
    )
    over = _neural_overrides(config)
    assert "schedule=cosine" in over["ensemble"] and "epochs=3" in over["ensemble"]
    assert "epochs=12" in over["atlas-convnet"]
