"""Tests of the DeepChrome CNN and AttentiveChrome re-implementations."""

import torch
from torch import nn

from histexpr.models import AttentiveChrome, AttentiveChromeConfig, DeepChromeCNN, build_model


def test_deepchrome_architecture_follows_the_paper():
    net = DeepChromeCNN().eval()
    conv = net.features[0]
    assert conv.out_channels == 50 and conv.kernel_size == (10,)
    assert net.features[2].kernel_size == 5 and net.features[3].p == 0.5
    linears = [m for m in net.classifier if isinstance(m, nn.Linear)]
    # (100 - 10 + 1) // 5 = 18 pooled positions of 50 filters.
    assert [(m.in_features, m.out_features) for m in linears] == [(900, 625), (625, 125), (125, 1)]
    assert net(torch.randn(4, 5, 100)).shape == (4, 1)


def test_attentivechrome_shapes_and_attention_maps():
    torch.manual_seed(0)
    net = AttentiveChrome(AttentiveChromeConfig(bin_hidden=4, mark_hidden=3), n_bins=20).eval()
    assert len(net.bin_lstms) == 5  # one bin-level encoder per mark
    x = torch.randn(6, 5, 20)
    out = net(x)
    maps = net.attention(x)
    assert out.shape == (6, 1)
    assert maps.bins.shape == (6, 5, 20) and maps.marks.shape == (6, 5)
    assert torch.allclose(maps.bins.sum(dim=2), torch.ones(6, 5), atol=1e-5)
    assert torch.allclose(maps.marks.sum(dim=1), torch.ones(6), atol=1e-5)
    assert (maps.bins >= 0).all()


def test_attention_depends_on_input():
    torch.manual_seed(1)
    net = AttentiveChrome(AttentiveChromeConfig(bin_hidden=4, mark_hidden=3), n_bins=10).eval()
    a = net.attention(torch.randn(1, 5, 10)).bins
    b = net.attention(torch.randn(1, 5, 10)).bins
    assert not torch.allclose(a, b)


def test_peers_behind_normaliser():
    for kind in ("deepchrome", "attentivechrome"):
        from histexpr.models import MODEL_CONFIGS

        model = build_model(kind, MODEL_CONFIGS[kind](), 5, 100).eval()
        assert model(torch.rand(3, 5, 100) * 5).shape == (3,)
