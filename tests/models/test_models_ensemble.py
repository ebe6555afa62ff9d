"""Tests of the fold ensemble and the cell-type-weighted mixture (modules only)."""

import torch
from torch import nn

from histexpr.models import CellTypeWeighted, ConvNetConfig, FoldEnsemble, build_net

SMALL = ConvNetConfig(channels=(4, 4, 8, 8, 8, 8, 8, 8))


class Const(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full((x.shape[0], 1), float(self.value))


class FixedGate(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def test_fold_ensemble_is_member_mean():
    ens = FoldEnsemble([Const(1.0), Const(2.0), Const(6.0)])
    assert torch.allclose(ens(torch.zeros(4, 5, 100)), torch.full((4, 1), 3.0))


def test_fold_ensemble_averages_probabilities_for_logits():
    ens = FoldEnsemble([Const(0.0), Const(100.0)], logits=True)
    p = torch.sigmoid(ens(torch.zeros(2, 5, 100)))
    assert torch.allclose(p, torch.full((2, 1), 0.75), atol=1e-5)


def test_celltype_weighted_mixes_experts_by_gate_probabilities():
    experts = [Const(1.0), Const(3.0)]
    even = CellTypeWeighted(FixedGate([0.0, 0.0]), experts)
    assert torch.allclose(even(torch.zeros(3, 5, 100)), torch.full((3, 1), 2.0))
    sure = CellTypeWeighted(FixedGate([50.0, 0.0]), experts)
    assert torch.allclose(sure(torch.zeros(3, 5, 100)), torch.full((3, 1), 1.0))
    w = sure.weights(torch.zeros(3, 5, 100))
    assert torch.allclose(w.sum(dim=1), torch.ones(3))


def test_built_ensembles_have_member_lists_and_shapes():
    ens = build_net("ensemble", SMALL, 5, 100, n_folds=3).eval()
    assert isinstance(ens.members, nn.ModuleList) and len(ens.members) == 3
    assert ens(torch.randn(7, 5, 100)).shape == (7, 1)
    ctw = build_net("celltype-weighted", SMALL, 5, 100, n_cells=4).eval()
    assert isinstance(ctw.experts, nn.ModuleList) and len(ctw.experts) == 4
    assert ctw.gate(torch.randn(7, 5, 100)).shape == (7, 4)
    assert ctw(torch.randn(7, 5, 100)).shape == (7, 1)


def test_members_are_independent_parameters():
    ens = build_net("ensemble", SMALL, 5, 100, n_folds=3)
    ids = [{id(p) for p in m.parameters()} for m in ens.members]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])
