"""Evaluation groups: seen/unseen cell types x known/new genes, training genes flagged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_planted
from histexpr.data.hdf5 import write_h5
from histexpr.errors import HistexprError
from histexpr.evaluate import GROUPS, TRAINING_GROUP, assign_groups, evaluate_predictions
from histexpr.workflows.evaluate import evaluate_model, per_cell_path, training_record

TRAIN_CELLS = ("E003", "E004")
ALL_CELLS = ("E003", "E004", "E005")
N_GENES, N_TRAIN_GENES = 150, 100


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A ridge model trained on E003, E004 x the first 100 genes; data with E005 and 50 more."""
    from histexpr.estimators import make_estimator

    d = tmp_path_factory.mktemp("groups")
    data = make_planted(n_genes=N_GENES, cells=ALL_CELLS)
    genes = np.unique(data.gene)[:N_TRAIN_GENES]
    train = data.select_cells(TRAIN_CELLS).select_genes(genes)
    est = make_estimator("ridge")
    est.fit(train)
    est.save(d / "model")  # records the training cell types and genes
    write_h5(data, d / "all.h5")
    return d, data, set(genes.tolist())


def test_assign_groups_known_answers():
    cell = np.array(["A", "A", "C", "C"])
    gene = np.array(["g1", "g2", "g1", "g2"])
    g = assign_groups(cell, gene, train_cells=["A", "B"], train_genes=["g1"])
    assert g.tolist() == [TRAINING_GROUP, "seen/new", "unseen/known", "unseen/new"]
    # without training genes: cell types only; without training cells: --unseen decides
    assert assign_groups(cell, train_cells=["A"]).tolist() == ["seen", "seen", "unseen", "unseen"]
    assert assign_groups(cell, unseen_cells=["A"]).tolist() == ["unseen"] * 2 + ["seen"] * 2
    assert set(GROUPS) == {"seen/new", "unseen/known", "unseen/new", TRAINING_GROUP}


def test_training_rows_are_never_pooled():
    rng = np.random.default_rng(0)
    cell = np.repeat(["A", "C"], 100)
    gene = np.tile([f"g{i}" for i in range(100)], 2)
    y = rng.normal(size=200)
    pred = y + rng.normal(size=200)
    pred[(cell == "A") & np.isin(gene, [f"g{i}" for i in range(50)])] = 99.0  # absurd on train
    ev = evaluate_predictions(
        y, cell, {"m": pred}, gene=gene, train_cells=["A"], train_genes=[f"g{i}" for i in range(50)]
    )
    t = ev.table.set_index("group")
    assert t.loc["all", "n"] == 150 and t.loc[TRAINING_GROUP, "n"] == 50
    # the absurd training-gene predictions reach only the flagged group
    for group in ("all", "seen/new", "unseen/known", "unseen/new"):
        assert t.loc[group, "mse"] < 5
    assert t.loc[TRAINING_GROUP, "mse"] > 1000
    assert ev.notes and "seen/train" in ev.notes[0]
    pc = ev.per_cell.set_index(["cell", "group"])
    assert pc.loc[("A", "seen"), "n"] == 50 and pc.loc[("A", TRAINING_GROUP), "n"] == 50
    assert pc.loc[("C", "unseen"), "n"] == 100


def test_legacy_groups_without_record_unchanged():
    y = np.arange(6.0)
    cell = np.array(["A", "A", "B", "B", "C", "C"])
    ev = evaluate_predictions(y, cell, {"m": y}, unseen_cells=["C"])
    assert ev.table.group.tolist() == ["all", "seen", "unseen"]
    assert ev.table.n.tolist() == [6, 4, 2] and not ev.notes


def test_evaluate_model_groups_have_the_right_sizes(files, tmp_path):
    d, data, _ = files
    out = tmp_path / "ev.csv"
    ev = evaluate_model(d / "model", d / "all.h5", out=out)
    n = ev.table.set_index("group")["n"]
    n_new = N_GENES - N_TRAIN_GENES
    assert n["seen/new"] == 2 * n_new
    assert n["unseen/known"] == N_TRAIN_GENES
    assert n["unseen/new"] == n_new
    assert n[TRAINING_GROUP] == 2 * N_TRAIN_GENES
    assert n["all"] == len(data) - 2 * N_TRAIN_GENES
    assert any("training genes" in note for note in ev.notes)
    # both tables written, and equal to what was returned
    pd.testing.assert_frame_equal(pd.read_csv(out), ev.table, check_dtype=False)
    per_cell = pd.read_csv(per_cell_path(out))
    assert set(per_cell.cell) == set(ALL_CELLS)
    assert per_cell_path(out).name == "ev.per_cell.csv"


def test_unseen_must_be_known_and_not_a_training_cell(files):
    d, _, _ = files
    with pytest.raises(HistexprError, match=r"E003 is a training cell type.*E003, E004"):
        evaluate_model(d / "model", d / "all.h5", unseen_cells=["E003"])
    with pytest.raises(
        HistexprError, match=r"unknown cell type\(s\) E999; known: E003, E004, E005"
    ):
        evaluate_model(d / "model", d / "all.h5", unseen_cells=["E999"])
    # a true unseen cell type is accepted and changes nothing: the record decides
    a = evaluate_model(d / "model", d / "all.h5", unseen_cells=["E005"]).table
    b = evaluate_model(d / "model", d / "all.h5").table
    pd.testing.assert_frame_equal(a, b)


def test_training_record_fallback(tmp_path, monkeypatch):
    """Older model directories: the record in ``extra``, in a genes file, or none at all."""
    from histexpr.estimators.bundle import BundleHeader
    from histexpr.workflows import evaluate as module

    headers = {
        "none": BundleHeader("ridge", {}, ("H3K4me3",), 100),
        "extra": BundleHeader("ridge", {}, ("H3K4me3",), 100, extra={"cells": ["E003"]}),
    }
    for name in headers:
        (tmp_path / name).mkdir()
    monkeypatch.setattr(module, "read_header", lambda d: headers[Path(d).name])
    assert training_record(tmp_path / "none") == (None, None)
    assert training_record(tmp_path / "extra") == (["E003"], None)
    (tmp_path / "extra" / "genes.txt").write_text("3\nENSG00000000005\n")
    # gene ids in the one canonical form, whatever the file said
    assert training_record(tmp_path / "extra")[1] == ["ENSG00000000003", "ENSG00000000005"]
