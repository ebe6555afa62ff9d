"""Trunk + head networks: one trunk module, the heads on it, old parameter names on load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from histexpr.models import ConvNet, ConvNetConfig, DeepChromeCNN, DeepChromeConfig
from histexpr.models.atlasnet import AtlasConvNet, AtlasConvNetConfig, build_atlas_net
from histexpr.models.convnet import ConvTrunk
from histexpr.models.ensemble import FoldEnsemble
from histexpr.models.heads import rename_legacy_keys
from histexpr.models.siamese import DiffConvNet, DiffConvNetConfig, MidpointPath

TINY = (4, 4, 8, 8, 8, 8, 16, 16)


def test_every_network_is_one_conv_trunk_plus_a_head():
    nets = [
        ConvNet(ConvNetConfig(channels=TINY)),
        AtlasConvNet(AtlasConvNetConfig(channels=TINY), 5, 100, 6),
        DiffConvNet(DiffConvNetConfig(channels=TINY, head_width=8)),
    ]
    for net in nets:
        assert isinstance(net.trunk, ConvTrunk)
        inner = [m for m in net.modules() if m is not net]
        assert not any(isinstance(m, ConvNet) for m in inner)  # no whole ConvNet inside
        kinds = [type(m) for m in net.trunk.layers]
        assert kinds[:4] == [nn.Conv1d, nn.BatchNorm1d, nn.Dropout, nn.LeakyReLU]
        assert net.trunk.out_channels == 16


def test_the_atlas_head_adds_the_prior_inside_forward():
    net = AtlasConvNet(AtlasConvNetConfig(channels=TINY), 5, 40, 6).eval()
    x = torch.randn(7, 5, 40)
    side = torch.randn(7, 6)
    prior = torch.linspace(-3, 3, 7)[:, None]
    with torch.no_grad():
        base = net(x, torch.cat([side, torch.zeros(7, 1)], dim=1))
        moved = net(x, torch.cat([side, prior], dim=1))
    torch.testing.assert_close(moved, base + prior)
    # the histone gradients do not depend on the prior (what explain attributes)
    xg = x.clone().requires_grad_(True)
    g0 = torch.autograd.grad(net(xg, torch.cat([side, prior], 1)).sum(), xg)[0]
    g1 = torch.autograd.grad(net(xg, torch.cat([side, 2 * prior], 1)).sum(), xg)[0]
    torch.testing.assert_close(g0, g1)


def test_one_fold_ensemble_serves_every_head():
    cfg = AtlasConvNetConfig(channels=TINY, n_folds=3)
    ens = build_atlas_net(cfg, 5, 40, 4).eval()
    assert isinstance(ens, FoldEnsemble) and ens.member_paths() == [
        f"members.{k}" for k in range(3)
    ]
    x, atlas = torch.randn(5, 5, 40), torch.randn(5, 5)
    with torch.no_grad():
        mean = torch.cat([m(x, atlas) for m in ens.members], dim=1).mean(dim=1, keepdim=True)
        torch.testing.assert_close(ens(x, atlas), mean)


def test_midpoint_path_is_zero_at_the_midpoint_and_the_pair_at_one():
    net = DiffConvNet(DiffConvNetConfig(channels=TINY, head_width=8), 5, 100).eval()
    za, zb = torch.randn(4, 5, 100), torch.randn(4, 5, 100)
    m, d = (za + zb) / 2, (za - zb) / 2
    path = MidpointPath(net)
    with torch.no_grad():
        assert torch.equal(path(torch.zeros_like(d), m)[:, 0], torch.zeros(4))
        torch.testing.assert_close(path(d, m), net(m + d, m - d))


def test_old_convnet_parameter_names_load_into_the_new_layout():
    torch.manual_seed(0)
    net = ConvNet(ConvNetConfig(channels=TINY)).eval()
    new = net.state_dict()
    old = {}
    for k, v in new.items():
        k = k.replace("trunk.layers.", "features.").replace("head.out.", "head.")
        old[k.replace("head.skip.", "skip.")] = v
    assert "features.0.weight" in old and "head.weight" in old and "skip.weight" in old
    renamed = rename_legacy_keys(old, new.keys())
    assert set(renamed) == set(new)
    fresh = ConvNet(ConvNetConfig(channels=TINY)).eval()
    fresh.load_state_dict(renamed)
    x = torch.randn(3, 5, 100)
    with torch.no_grad():
        assert torch.equal(fresh(x), net(x))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("net.members.1.features.4.weight", "net.members.1.trunk.layers.4.weight"),
        ("net.gate.head.bias", "net.gate.head.out.bias"),
        ("net.experts.0.skip.weight", "net.experts.0.head.skip.weight"),
        ("net.members.0.trunk.0.weight", "net.members.0.trunk.layers.0.weight"),  # atlas
        ("net.side.3.bias", "net.head.side.3.bias"),
        ("net.fuse.0.weight", "net.head.fuse.0.weight"),
        ("net.head.weight", "net.head.out.weight"),
        ("net.head.3.weight", "net.head.fc.3.weight"),  # siamese
        ("net.aux.bias", "net.head.aux.bias"),
    ],
)
def test_each_old_name_maps_to_its_new_name(old, new):
    assert rename_legacy_keys({old: 1}, {new, "normalizer.mean"}) == {new: 1}


def test_names_that_fit_as_they_are_are_left_alone():
    # DeepChrome's layers are called features too: they must not be renamed
    net = DeepChromeCNN(DeepChromeConfig(), 5, 100)
    state = net.state_dict()
    assert any(k.startswith("features.") for k in state)
    assert rename_legacy_keys(state, state.keys()).keys() == state.keys()
    # an unknown key is kept as it is (load_state_dict then names it)
    assert rename_legacy_keys({"odd.features.0.weight": 1}, state.keys()) == {
        "odd.features.0.weight": 1
    }


def test_old_atlas_and_siamese_layouts_round_trip():
    torch.manual_seed(1)
    for net in (
        AtlasConvNet(AtlasConvNetConfig(channels=TINY), 5, 100, 6),
        DiffConvNet(DiffConvNetConfig(channels=TINY, head_width=8)),
    ):
        new = net.state_dict()
        old = {}
        for k, v in new.items():
            k = k.replace("trunk.layers.", "trunk.").replace("head.out.", "head.")
            k = k.replace("head.side.", "side.").replace("head.fuse.", "fuse.")
            old[k.replace("head.fc.", "head.").replace("head.aux.", "aux.")] = v
        renamed = rename_legacy_keys(old, new.keys())
        assert set(renamed) == set(new)
        assert all(np.array_equal(renamed[k], new[k]) for k in new)
