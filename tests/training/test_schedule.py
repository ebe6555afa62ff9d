"""Learning-rate schedules: the factor per step, the config check, a schedule in a real fit."""

from itertools import pairwise

import numpy as np
import pytest
import torch

from histexpr.errors import ConfigError
from histexpr.training.config import SCHEDULES, OptimConfig
from histexpr.training.plan import WARMUP, TrainingPlan, lr_factor


def test_constant_is_one():
    assert all(lr_factor("constant", s, 100) == 1.0 for s in range(0, 120, 7))


def test_cosine_decays_from_one_to_zero():
    f = [lr_factor("cosine", s, 100) for s in range(101)]
    assert f[0] == pytest.approx(1.0)
    assert f[50] == pytest.approx(0.5)
    assert f[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in pairwise(f))


def test_onecycle_warms_up_then_decays():
    total = 200
    peak = int(WARMUP * total)
    f = [lr_factor("onecycle", s, total) for s in range(total + 1)]
    assert f[0] == pytest.approx(0.04)
    assert max(f) == pytest.approx(1.0)
    assert int(np.argmax(f)) == peak
    assert all(a <= b for a, b in pairwise(f[: peak + 1]))
    assert all(a >= b for a, b in pairwise(f[peak:]))
    assert f[-1] == pytest.approx(0.0, abs=1e-12)


def test_steps_past_the_plan_stay_at_the_end():
    assert lr_factor("cosine", 150, 100) == lr_factor("cosine", 100, 100)


def test_schedule_validated():
    assert OptimConfig().schedule == "constant"
    for name in SCHEDULES:
        OptimConfig(schedule=name)
    with pytest.raises(ConfigError, match="schedule"):
        OptimConfig(schedule="linear")


def test_fit_follows_the_schedule():
    from lightning.pytorch import Trainer

    torch.manual_seed(0)
    X, y = torch.randn(64, 3), torch.randn(64)
    model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0))
    plan = TrainingPlan(model, "mse", 1e-2, 0.0, seed=0, schedule="cosine")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    trainer = Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(plan, loader)
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(0.0, abs=1e-12)  # 8 of 8 planned steps done
