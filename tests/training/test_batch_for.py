"""OptimConfig.batch_for: the batch shrinks on small data so an epoch has min_steps steps."""

import pytest

from histexpr.errors import ConfigError
from histexpr.training.config import MIN_BATCH, OptimConfig


def test_large_data_keeps_batch_size():
    cfg = OptimConfig()
    assert cfg.batch_for(800_000) == cfg.batch_size
    assert cfg.batch_for(cfg.batch_size * cfg.min_steps) == cfg.batch_size


@pytest.mark.parametrize("n", [17, 216, 648, 1000, 4095])
def test_small_data_gets_min_steps(n):
    cfg = OptimConfig()
    b = cfg.batch_for(n)
    assert MIN_BATCH <= b <= cfg.batch_size
    assert -(-n // b) >= cfg.min_steps or b == MIN_BATCH


def test_never_below_min_batch_and_zero_disables():
    assert OptimConfig().batch_for(20) == MIN_BATCH
    assert OptimConfig(min_steps=0).batch_for(20) == 256
    assert OptimConfig(batch_size=8).batch_for(10_000) == 8


def test_min_steps_validated():
    with pytest.raises(ConfigError, match="min_steps"):
        OptimConfig(min_steps=-1)
