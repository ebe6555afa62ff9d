"""The NLC training path of ConvStack computes the plain stack's function."""

import pytest
import torch
from torch import nn

from histexpr.models import ConvNetConfig
from histexpr.models.blocks import ConvStack, conv1d_nlc, dropout_mask
from histexpr.models.convnet import ConvNet

SMALL = ConvNetConfig(channels=(6, 6, 8, 8, 12, 12, 16, 16), dropout=0.0, linear_skip=0)


def _pair(cfg, n_bins, seed=0):
    """A ConvNet and a copy whose stack is a plain nn.Sequential (the reference)."""
    torch.manual_seed(seed)
    net = ConvNet(cfg, 5, n_bins).double()
    plain = ConvNet(cfg, 5, n_bins).double()
    plain.load_state_dict(net.state_dict())
    plain.trunk.layers = nn.Sequential(*plain.trunk.layers)
    return net, plain


@pytest.mark.parametrize("n_bins", [100, 40, 10, 130])
def test_training_forward_backward_and_running_stats_match_plain_stack(n_bins):
    net, plain = _pair(SMALL, n_bins)
    assert isinstance(net.trunk.layers, ConvStack)
    x = torch.rand(7, 5, n_bins, dtype=torch.float64) * 4
    outs = []
    for m in (net, plain):
        m.train()
        out = m(x)
        (out**2).sum().backward()
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[1])
    grads = dict(plain.named_parameters())
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, msg=name)
    ref = plain.state_dict()
    for name, value in net.state_dict().items():
        torch.testing.assert_close(value, ref[name], msg=name)


def test_eval_mode_is_the_plain_stack_and_keys_are_unchanged():
    net, plain = _pair(SMALL, 100)
    assert list(net.state_dict()) == list(plain.state_dict())
    x = torch.rand(5, 5, 100, dtype=torch.float64)
    net.eval()
    plain.eval()
    assert torch.equal(net(x), plain(x))


def test_bf16_autocast_training_close_to_fp32():
    net, plain = _pair(SMALL, 100)
    net.float().train()
    plain.float().train()
    x = torch.rand(64, 5, 100) * 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = net(x).float()
    torch.testing.assert_close(fast, plain(x), atol=0.1, rtol=0.05)


def test_conv1d_nlc_matches_conv1d_with_padding_and_stride():
    torch.manual_seed(1)
    for kernel, stride, pad in [(3, 2, 0), (3, 1, 1), (5, 2, 2), (1, 1, 0)]:
        conv = nn.Conv1d(4, 6, kernel, stride=stride, padding=pad).double()
        x = torch.randn(3, 4, 17, dtype=torch.float64)
        ref = conv(x)
        got = conv1d_nlc(x.transpose(1, 2).contiguous(), conv).transpose(1, 2)
        torch.testing.assert_close(got, ref)


def test_dropout_mask_rate_scale_and_seed():
    torch.manual_seed(3)
    m = dropout_mask((1000, 300), 0.1, torch.float32)
    cut = round(256 * 0.1) / 256
    values = torch.unique(m).tolist()
    assert values[0] == 0.0 and values[1:] == [pytest.approx(1 / (1 - cut))]
    assert abs(float((m == 0).float().mean()) - cut) < 0.003
    assert abs(float(m.mean()) - 1.0) < 0.01
    torch.manual_seed(3)
    assert torch.equal(m, dropout_mask((1000, 300), 0.1, torch.float32))


def test_dropout_applies_in_training_only():
    cfg = ConvNetConfig(channels=(6, 6, 8, 8, 12, 12, 16, 16), dropout=0.5, linear_skip=0)
    torch.manual_seed(0)
    net = ConvNet(cfg, 5, 100)
    x = torch.rand(16, 5, 100)
    net.train()
    torch.manual_seed(1)
    a = net(x)
    torch.manual_seed(1)
    assert torch.equal(a, net(x))  # the masks come from the seeded global generator
    torch.manual_seed(2)
    assert not torch.equal(a, net(x))


def test_unknown_layer_falls_back_to_plain_path():
    stack = ConvStack(nn.Conv1d(2, 3, 3), nn.ReLU())
    x = torch.randn(2, 2, 9)
    stack.train()
    assert torch.equal(stack(x), nn.Sequential(*stack)(x))
