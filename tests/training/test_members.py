"""Member plans: which rows each member of a model trains and validates on."""

import numpy as np
import pytest

from conftest import TINY, make_planted
from histexpr.estimators.neural import neural_configs
from histexpr.models import build_model
from histexpr.training.members import member_specs
from histexpr.training.runners import member_seed

CELLS = ("E003", "E004", "E005", "E006", "E007")


@pytest.fixture(scope="module")
def data():
    return make_planted(60, cells=CELLS)


def _specs(kind, data, valid=None, **sets):
    cfgs = neural_configs(kind, {"channels": TINY, **sets} if kind != "deepchrome" else sets)
    model = build_model(kind, cfgs["model"], 5, 100, n_cells=len(data.cells))
    return model, member_specs(kind, model, data, valid, cfgs["train"], data.cells)


def _genes(data, rows):
    return set(data.gene[rows.index])


def test_folds_never_train_on_their_own_cells(data):
    model, specs = _specs("ensemble", data, n_folds=3)
    assert [s.name for s in specs] == ["fold0", "fold1", "fold2"]
    assert [s.path for s in specs] == [f"net.{p}" for p in model.net.member_paths()]
    held = []
    for s in specs:
        train_cells = set(data.cell[s.train.index])
        valid_cells = set(data.cell[s.valid.index])
        assert train_cells and valid_cells and not train_cells & valid_cells
        assert train_cells | valid_cells == set(CELLS)
        held.append(valid_cells)
    # every cell type is held out by exactly one fold
    assert sorted(c for h in held for c in h) == sorted(CELLS)


def test_experts_see_one_cell_and_validate_on_other_genes(data):
    model, specs = _specs("celltype-weighted", data)
    gate, experts = specs[0], specs[1:]
    assert gate.name == "gate" and gate.loss == "ce" and gate.path == "net.gate"
    assert [s.path for s in experts] == [f"net.{p}" for p in model.net.expert_paths()]
    assert not _genes(data, gate.train) & _genes(data, gate.valid)
    for cell, s in zip(data.cells, experts, strict=True):
        assert s.name == f"cell-{cell}"
        assert set(data.cell[s.train.index]) == {cell} == set(data.cell[s.valid.index])
        assert not _genes(data, s.train) & _genes(data, s.valid)
    # the gate's classes are the cells in order
    assert set(gate.train.y) == set(range(len(CELLS)))


def test_single_member_holds_out_genes_or_uses_the_validation_data(data):
    _, (spec,) = _specs("convnet", data, holdout_fraction=0.2)
    assert spec.path == "net" and spec.valid.source == "train"
    assert not _genes(data, spec.train) & _genes(data, spec.valid)
    n_genes = len(np.unique(data.gene))
    assert len(_genes(data, spec.valid)) == round(0.2 * n_genes)
    valid = make_planted(10, cells=("E008",), seed=3)
    _, (spec,) = _specs("convnet", data, valid)
    assert spec.valid.source == "valid" and len(spec.valid.index) == len(valid)
    assert len(spec.train.index) == len(data)


def test_valid_max_caps_every_member(data):
    _, specs = _specs("ensemble", data, valid_max=7)
    assert all(len(s.valid.index) == 7 for s in specs)


def test_member_seeds_differ_and_follow_the_train_seed():
    cfg = neural_configs("ensemble")["train"]
    seeds = [member_seed(cfg, i) for i in range(6)]
    assert len(set(seeds)) == 6 and seeds[0] == cfg.optim.seed
    other = neural_configs("ensemble", {"seed": 5})["train"]
    assert [member_seed(other, i) for i in range(6)] != seeds


def test_fold_assignment_is_deterministic_for_a_seed(data):
    folds = []
    for seed in (0, 0, 1):
        _, specs = _specs("ensemble", data, seed=seed)
        folds.append([sorted(set(data.cell[s.valid.index])) for s in specs])
    assert folds[0] == folds[1]
    assert sorted(c for f in folds[2] for c in f) == sorted(CELLS)
