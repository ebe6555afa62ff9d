"""The ConvNet's ridge skip path and its data-size-aware widths."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from histexpr.errors import ConfigError
from histexpr.models import ConvNetConfig
from histexpr.models.convnet import SEED_CHANNELS, ConvNet, sized_for
from histexpr.models.linear_skip import LinearSkip
from histexpr.models.normalize import InputNormalizer, Predictor
from histexpr.training.skip import fit_linear_skips, fit_skip


def test_skip_recovers_a_planted_linear_signal():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(400, 3, 20)), dtype=torch.float32)
    skip = LinearSkip(3, 4)
    pooled = skip.features(x).numpy()
    w = rng.normal(size=pooled.shape[1])
    y = pooled @ w + 2.0 + 0.05 * rng.normal(size=len(pooled))
    fit_skip(skip, pooled, y)
    resid = skip(x).squeeze(1).numpy() - y
    assert np.mean(resid**2) < 0.05 * np.var(y)


def test_fit_starts_the_network_at_the_ridge_fit():
    rng = np.random.default_rng(1)
    X = torch.as_tensor(rng.poisson(3.0, size=(200, 5, 100)), dtype=torch.float32)
    y = torch.log1p(X[:, 2, 40:60]).mean(1) * 2.0 + 0.1 * torch.randn(200)
    net = ConvNet(ConvNetConfig(channels=(4,) * 8), 5, 100)
    model = Predictor(InputNormalizer(5), net).eval()
    assert fit_linear_skips(model, X, y.numpy())
    with torch.no_grad():
        out = model(X).reshape(-1)
        skip = net.head.skip(model.normalizer(X)).reshape(-1)
    assert torch.allclose(out, skip)  # the conv read-out starts at zero
    assert torch.mean((out - y) ** 2) < 0.5 * torch.var(y)


def test_weights_saved_without_a_skip_load_as_no_skip():
    old = ConvNet(ConvNetConfig(channels=(4,) * 8, linear_skip=0), 5, 100).eval()
    new = ConvNet(ConvNetConfig(channels=(4,) * 8), 5, 100).eval()
    new.load_state_dict(old.state_dict())
    x = torch.randn(7, 5, 100)
    assert torch.equal(old(x), new(x))


def test_widths_grow_with_data_to_the_seeds():
    cfg = ConvNetConfig()
    widths = [sized_for(cfg, n).channels for n in (100, 1_000, 10_000, 100_000, 10**6)]
    for small, large in itertools.pairwise(widths):
        assert all(a <= b for a, b in zip(small, large, strict=True))
    assert widths[-1] == widths[-2] == SEED_CHANNELS
    assert min(widths[0]) >= cfg.min_width
    assert sized_for(cfg, 100).width_examples == 0  # final: a second fit keeps them


def test_explicit_widths_and_zero_width_examples_are_kept():
    explicit = ConvNetConfig(channels=(4,) * 8)
    assert sized_for(explicit, 100) == explicit
    off = ConvNetConfig(width_examples=0)
    assert sized_for(off, 100).channels == SEED_CHANNELS


@pytest.mark.parametrize("bad", [{"linear_skip": -1}, {"min_width": 0}, {"width_examples": -1}])
def test_bad_skip_or_width_settings_refused(bad):
    with pytest.raises(ConfigError):
        ConvNet(ConvNetConfig(**bad), 5, 100)
