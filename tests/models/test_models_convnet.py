"""Tests of the seed's ConvNet and the input normaliser."""

import numpy as np
import pytest
import torch
from torch import nn

from histexpr.errors import ConfigError
from histexpr.models import (
    ConvNet,
    ConvNetConfig,
    InputNormalizer,
    Predictor,
    build_model,
    conv_lengths,
    norm_stats,
)


def test_default_layers_are_the_seeds():
    net = ConvNet()
    convs = [m for m in net.trunk.layers if isinstance(m, nn.Conv1d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.in_channels for c in convs] == [5, 64, 64, 128, 128, 256, 256, 512]
    assert [c.stride[0] for c in convs] == [2, 1, 2, 1, 2, 1, 2, 1]
    assert all(c.kernel_size == (3,) and c.padding == (0,) for c in convs)
    # Each convolution is followed by BatchNorm -> Dropout -> LeakyReLU.
    kinds = [type(m) for m in net.trunk.layers]
    assert kinds == [nn.Conv1d, nn.BatchNorm1d, nn.Dropout, nn.LeakyReLU] * 8
    assert net.head.out.kernel_size == (1,) and net.head.out.in_channels == 512


def test_hundred_bins_reduce_to_one():
    assert conv_lengths(100, 3, (2, 1, 2, 1, 2, 1, 2, 1)) == [100, 49, 47, 23, 21, 10, 8, 3, 1]
    net = ConvNet()
    assert net.out_length == 1
    net.eval()
    assert net.trunk(torch.zeros(2, 5, 100)).shape == (2, 512, 1)
    assert net(torch.zeros(2, 5, 100)).shape == (2, 1)


def test_parameter_count_matches_formula():
    widths = [64, 64, 128, 128, 256, 256, 512, 512]
    expected, c_in = 0, 5
    for c_out in widths:
        expected += c_in * c_out * 3 + c_out  # conv weight + bias
        expected += 2 * c_out  # batch-norm scale + shift
        c_in = c_out
    expected += 512 * 1 + 1  # kernel-1 output conv
    assert sum(p.numel() for p in ConvNet().parameters()) == expected


def test_configurable_widths_and_outputs():
    cfg = ConvNetConfig(channels=(4, 4, 8, 8, 8, 8, 8, 8), dropout=0.3, negative_slope=0.2)
    net = ConvNet(cfg, n_marks=3, n_outputs=7).eval()
    assert net(torch.randn(5, 3, 100)).shape == (5, 7)
    assert net.trunk.layers[2].p == 0.3 and net.trunk.layers[3].negative_slope == 0.2


def test_longer_remaining_length_is_averaged():
    cfg = ConvNetConfig(channels=(4, 4), strides=(2, 1))
    net = ConvNet(cfg).eval()
    assert net.out_length == 47
    assert net(torch.randn(3, 5, 100)).shape == (3, 1)


@pytest.mark.parametrize(
    "cfg",
    [
        ConvNetConfig(channels=(4, 4), strides=(2,)),
        ConvNetConfig(kernel=0),
        ConvNetConfig(dropout=1.0),
    ],
)
def test_invalid_configs_are_refused(cfg):
    with pytest.raises(ConfigError):
        ConvNet(cfg)


def test_norm_stats_known_answer():
    X = np.zeros((4, 2, 10), dtype=np.float32)
    X[:, 1] = np.e - 1  # log1p -> exactly 1 everywhere
    X[:2, 0] = np.e**2 - 1  # half the entries log1p -> 2, half 0
    stats = norm_stats(X, chunk=3)
    np.testing.assert_allclose(stats.mean, [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(stats.std[0], 1.0, rtol=1e-6)
    assert stats.std[1] > 0  # a constant mark gets a floor, not zero


def test_normalizer_standardises_training_data_and_lives_in_buffers():
    rng = np.random.default_rng(0)
    X = rng.poisson(rng.gamma(1.0, 3.0, size=(50, 5, 100)) * [[1], [2], [4], [8], [16]])
    X = X.astype(np.float32)
    norm = InputNormalizer(5).set_stats(norm_stats(X))
    z = norm(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(z.mean(axis=(0, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(0, 2)), 1.0, atol=1e-3)
    assert set(norm.state_dict()) == {"mean", "std"}
    assert not list(norm.parameters())
    np.testing.assert_allclose(norm.stats().mean, norm_stats(X).mean)


def test_predictor_returns_one_value_per_example():
    model = build_model("convnet", ConvNetConfig(channels=(4,) * 8), 5, 100).eval()
    assert isinstance(model, Predictor)
    assert model(torch.rand(6, 5, 100) * 10).shape == (6,)
    assert "normalizer.mean" in model.state_dict()
