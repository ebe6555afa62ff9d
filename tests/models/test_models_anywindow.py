"""Any marks, any window: every network for 10-400 bins, and the mark-dropout mask."""

import numpy as np
import pytest
import torch
from torch import nn

from histexpr.errors import ConfigError
from histexpr.models import (
    AttentiveChrome,
    AttentiveChromeConfig,
    ConvNet,
    ConvNetConfig,
    DeepChromeCNN,
    DeepChromeConfig,
    InputNormalizer,
    build_model,
    conv_lengths,
)
from histexpr.models.convnet import padded_layers
from histexpr.models.markmask import MarkMask, check_mark_dropout, mark_missing
from histexpr.models.peers import deepchrome_pool

BINS = [10, 20, 40, 99, 100, 101, 200, 400]
TINY_CONV = ConvNetConfig(channels=(4, 4, 8, 8, 8, 8, 8, 8))


def _n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_seed_layout_is_kept_at_100_bins():
    net = ConvNet()
    assert net.n_padded == 0 and net.out_length == 1
    assert _n_params(net) == 1_567_809
    assert all(m.padding == (0,) for m in net.trunk.layers if isinstance(m, nn.Conv1d))


@pytest.mark.parametrize("n_bins", BINS)
def test_convnet_any_bins(n_bins):
    net = ConvNet(n_bins=n_bins).eval()
    # Padding adds no weights: the same parameter count for every window.
    assert _n_params(net) == 1_567_809
    k = padded_layers(n_bins, 3, net.cfg.strides)
    lengths = conv_lengths(n_bins, 3, net.cfg.strides, k)
    assert min(lengths) >= 1 and net.out_length == lengths[-1]
    # The rule: the fewest padded (last) layers; one fewer would leave no position.
    if k > 0:
        assert min(conv_lengths(n_bins, 3, net.cfg.strides, k - 1)) < 1
    pads = [m.padding[0] for m in net.trunk.layers if isinstance(m, nn.Conv1d)]
    assert pads == [0] * (8 - k) + [1] * k
    assert net(torch.randn(2, 5, n_bins)).shape == (2, 1)


def test_convnet_padding_rule_known_answers():
    strides = ConvNetConfig().strides
    assert padded_layers(100, 3, strides) == 0
    assert padded_layers(91, 3, strides) == 0 and padded_layers(90, 3, strides) > 0
    assert padded_layers(40, 3, strides) == 3
    assert conv_lengths(40, 3, strides, 3) == [40, 19, 17, 8, 6, 2, 2, 1, 1]
    assert padded_layers(10, 3, strides) == 6
    assert conv_lengths(400, 3, strides)[-1] == 20  # averaged over 20 positions


@pytest.mark.parametrize("n_bins", BINS)
def test_deepchrome_any_bins(n_bins):
    cfg = DeepChromeConfig(n_filters=4, hidden=(8,))
    net = DeepChromeCNN(cfg, n_marks=7, n_bins=n_bins).eval()
    assert net(torch.randn(3, 7, n_bins)).shape == (3, 1)


def test_deepchrome_pool_rule():
    cfg = DeepChromeConfig()
    assert deepchrome_pool(cfg, 100) == 5  # the paper's layout
    assert [deepchrome_pool(cfg, n) for n in (10, 40, 200, 400)] == [1, 2, 10, 20]
    # The pooled length stays near the paper's 18.
    for n in (40, 100, 200, 400):
        assert 14 <= (n - cfg.kernel + 1) // deepchrome_pool(cfg, n) <= 20
    with pytest.raises(ConfigError, match="too few"):
        DeepChromeCNN(cfg, n_bins=9)


@pytest.mark.parametrize("n_bins", [10, 40, 400])
def test_attentivechrome_any_bins_and_marks(n_bins):
    net = AttentiveChrome(AttentiveChromeConfig(bin_hidden=2, mark_hidden=2), 7, n_bins).eval()
    x = torch.randn(2, 7, n_bins)
    assert net(x).shape == (2, 1)
    maps = net.attention(x)
    assert maps.bins.shape == (2, 7, n_bins) and maps.marks.shape == (2, 7)


def test_mark_mask_zeroes_missing_and_appends_mask():
    mask = MarkMask(3, 0.5).eval()
    z = torch.randn(4, 3, 6)
    z[1, 2] = float("nan")
    out = mask(z)
    assert out.shape == (4, 6, 6)
    assert torch.equal(out[0, :3], z[0]) and (out[0, 3:] == 1).all()
    assert (out[1, 2] == 0).all() and (out[1, 5] == 0).all() and (out[1, 3:5] == 1).all()


def test_mark_mask_training_drops_at_rate_p_and_keeps_one():
    torch.manual_seed(0)
    mask = MarkMask(4, 0.3).train()
    out = mask(torch.randn(4000, 4, 2))
    present = out[:, 4:, 0]
    assert present.sum(dim=1).min() >= 1
    assert abs(1 - present.mean().item() - 0.3) < 0.03
    # Masked marks carry zeros, the mask is constant over bins.
    assert torch.all(out[:, :4][present[:, :, None].expand(-1, -1, 2) == 0] == 0)


def test_mark_dropout_bounds_and_missing_fill():
    with pytest.raises(ConfigError, match="mark_dropout"):
        check_mark_dropout(1.0)
    X = np.ones((2, 3, 4), np.float32)
    out = mark_missing(X, ("a", "b", "c"), ["b"])
    assert np.isnan(out[:, 1]).all() and np.isfinite(out[:, [0, 2]]).all()
    assert mark_missing(X, ("a", "b", "c"), []) is X


@pytest.mark.parametrize("kind", ["convnet", "deepchrome", "attentivechrome"])
def test_build_model_with_mark_dropout(kind):
    torch.manual_seed(0)
    cfgs = {
        "convnet": TINY_CONV,
        "deepchrome": DeepChromeConfig(n_filters=4, hidden=(8,)),
        "attentivechrome": AttentiveChromeConfig(bin_hidden=2, mark_hidden=2),
    }
    model = build_model(kind, cfgs[kind], 7, 40, mark_dropout=0.2).eval()
    assert isinstance(model.normalizer, InputNormalizer) and model.normalizer.n_outputs == 14
    x = torch.rand(3, 7, 40) * 5
    full = model(x)
    x[:, 5] = float("nan")  # a missing mark
    partial = model(x)
    assert full.shape == partial.shape == (3,)
    assert torch.isfinite(partial).all() and not torch.allclose(full, partial)
