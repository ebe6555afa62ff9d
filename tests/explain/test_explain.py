"""Attributions: known answers on a linear model, completeness of integrated gradients."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from histexpr import estimators
from histexpr.data.dataset import MARKS, HistoneDataset
from histexpr.errors import DataError, HistexprError
from histexpr.estimators.bundle import write_header
from histexpr.explain import (
    METHODS,
    AttentionModel,
    attention_maps,
    attribute,
    load_attributions,
    load_gene_attributions,
    mean_attribution_by_cell,
    save_attributions,
)
from histexpr.workflows.explain import explain_run

torch.set_num_threads(1)
N_MARKS, N_BINS = 5, 100


class Linear(nn.Module):
    """f(x) = sum(w * x) + b, so every attribution is known in closed form."""

    def __init__(self, seed: int = 0, column: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(N_MARKS, N_BINS, generator=g))
        self.b = nn.Parameter(torch.tensor(0.7))
        self.column = column

    def forward(self, x):
        out = (x * self.w).sum(dim=(1, 2)) + self.b
        return out[:, None] if self.column else out


class Nonlinear(nn.Module):
    """A small convnet with dropout; dropout must be off while attributing."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv1d(N_MARKS, 4, 5, padding=2)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(4 * N_BINS, 1)

    def forward(self, x):
        h = self.drop(torch.tanh(self.conv(torch.log1p(x))))
        return self.out(h.flatten(1))


class Attentive(nn.Module):
    """Attention is a softmax over bins of mark-wise scores; marks weighted by mean signal."""

    def __init__(self):
        super().__init__()
        self.score = nn.Parameter(torch.linspace(-1, 1, N_BINS))

    def attention(self, x):
        bins = torch.softmax(x * self.score, dim=2)
        marks = torch.softmax(x.mean(dim=2), dim=1)
        return bins, marks

    def forward(self, x):
        bins, marks = self.attention(x)
        return ((bins * x).sum(2) * marks).sum(1)


def _X(n=12, seed=0):
    return np.random.default_rng(seed).poisson(3.0, size=(n, N_MARKS, N_BINS)).astype(np.float32)


def _w(model):
    return model.w.detach().numpy()


def test_linear_model_attributions_are_known():
    model, X = Linear(), _X()
    sal = attribute(model, X, "saliency")
    ixg = attribute(model, X, "input_x_gradient")
    ig = attribute(model, X, "integrated_gradients", n_steps=8)
    assert sal.shape == ixg.shape == ig.shape == X.shape
    # signed gradient = weights for every example
    np.testing.assert_allclose(sal, np.broadcast_to(_w(model), X.shape), rtol=1e-6)
    np.testing.assert_allclose(ixg, X * _w(model), rtol=1e-5, atol=1e-6)
    # a straight path through a linear model: IG from zeros is exactly w * x
    np.testing.assert_allclose(ig, X * _w(model), rtol=1e-4, atol=1e-4)


def test_column_output_and_multi_output_target():
    X = _X(4)
    np.testing.assert_allclose(
        attribute(Linear(column=True), X, "saliency"), attribute(Linear(), X, "saliency")
    )

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = Linear(0), Linear(1)

        def forward(self, x):
            return torch.stack([self.a(x), self.b(x)], dim=1)

    two = Two()
    np.testing.assert_allclose(attribute(two, X, target=1)[0], _w(two.b), rtol=1e-6)
    mean = attribute(two, X)[0]  # no target: the mean of the outputs (an ensemble's prediction)
    np.testing.assert_allclose(mean, (_w(two.a) + _w(two.b)) / 2, rtol=1e-5, atol=1e-6)


def test_integrated_gradients_completeness_on_nonlinear_model():
    model, X = Nonlinear(), _X(6)
    baseline = np.full(X.shape[1:], 0.5, np.float32)
    ig = attribute(model, X, "integrated_gradients", n_steps=64, baseline=baseline)
    with torch.no_grad():
        model.eval()
        fx = model(torch.as_tensor(X))[:, 0].numpy()
        fb = model(torch.as_tensor(np.broadcast_to(baseline, X.shape).copy()))[:, 0].numpy()
    total = ig.reshape(len(X), -1).sum(axis=1)
    np.testing.assert_allclose(total, fx - fb, rtol=2e-2, atol=2e-3)


def test_attribution_is_deterministic_batch_invariant_and_restores_mode():
    model, X = Nonlinear(), _X(10)
    model.train()
    a = attribute(model, X, "input_x_gradient", batch_size=3)
    b = attribute(model, X, "input_x_gradient", batch_size=100)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # dropout was off in both
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_unknown_method_is_a_user_error():
    with pytest.raises(HistexprError, match="unknown attribution method"):
        attribute(Linear(), _X(2), "deeplift")


def _dataset(cells=("E003", "E071"), n=8):
    X = np.concatenate([_X(n, seed=i) * (i + 1) for i in range(len(cells))])
    cell = np.repeat(cells, n)
    gene = np.tile([f"G{i}" for i in range(n)], len(cells))
    return HistoneDataset(X, np.zeros(len(X)), cell, gene)


def test_mean_attribution_by_cell_matches_manual_means():
    model, ds = Linear(), _dataset()
    res = mean_attribution_by_cell(model, ds, "input_x_gradient", ["E071", "E003"])
    assert res.cells == ("E071", "E003") and res.signed.shape == (2, N_MARKS, N_BINS)
    for i, cell in enumerate(res.cells):
        x = ds.X[ds.cell == cell]
        np.testing.assert_allclose(res.signed[i], (x * _w(model)).mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(res.abs[i], np.abs(x * _w(model)).mean(0), rtol=1e-5, atol=1e-5)
    assert res.n.tolist() == [8, 8]
    assert mean_attribution_by_cell(model, ds, "saliency", ["E003"], max_per_cell=3).n[0] == 3
    with pytest.raises(DataError, match="E999"):
        mean_attribution_by_cell(model, ds, "saliency", ["E999"])


def test_save_and_load_attributions_without_pickles(tmp_path):
    res = mean_attribution_by_cell(Linear(), _dataset(), "saliency")
    path = tmp_path / "explain" / "attributions_saliency.npz"
    save_attributions(path, res)
    with np.load(path, allow_pickle=False) as z:
        assert z["E003"].shape == (N_MARKS, N_BINS) and "E071_abs" in z.files
    back = load_attributions(path)
    assert back.method == "saliency" and back.cells == res.cells and back.marks == MARKS
    np.testing.assert_array_equal(back.signed, res.signed)
    np.testing.assert_array_equal(back.abs, res.abs)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.npz"):
        load_attributions(tmp_path / "junk.npz")


def test_attention_maps_shapes_and_normalisation():
    model, X = Attentive(), _X(7)
    assert isinstance(model, AttentionModel) and not isinstance(Linear(), AttentionModel)
    att = attention_maps(model, X, batch_size=3)
    assert att.bins.shape == X.shape and att.marks.shape == (7, N_MARKS)
    np.testing.assert_allclose(att.bins.sum(axis=2), 1.0, rtol=1e-5)
    np.testing.assert_allclose(att.marks.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(HistexprError, match="no attention"):
        attention_maps(Linear(), X)


class _FakeNeural:
    """Stands in for a loaded NeuralEstimator: exposes ``.module`` (raw counts in)."""

    def __init__(self, module):
        self.module = module

    def model_input(self, data):
        return data.X  # no depth_norm: the counts as they are


def _fake_run(tmp_path, kinds):
    run = tmp_path / "run"
    for name, kind in kinds.items():
        d = run / "models" / name
        d.mkdir(parents=True)
        write_header(d, kind, {}, MARKS, N_BINS)
    run.joinpath("run.json").write_text(
        json.dumps({"data": {"train_cells": ["E003"], "unseen_cells": ["E071"]}})
    )
    return run


def test_explain_run_writes_npz_figures_and_summary(tmp_path, monkeypatch):
    run = _fake_run(tmp_path, {"ridge": "ridge", "attentivechrome": "attentivechrome"})
    monkeypatch.setattr(estimators, "load_estimator", lambda d: _FakeNeural(Attentive()))
    res = explain_run(run, _dataset(), ["E003", "E071"], methods=METHODS, n_steps=4, n_genes=3)
    assert res.model_kind == "attentivechrome"
    assert any("ridge" in note for note in res.notes)
    out = run / "explain"
    for method in METHODS:
        assert load_attributions(out / f"attributions_{method}.npz").cells == ("E003", "E071")
        assert (out / f"attributions_{method}.png").read_bytes()[:4] == b"\x89PNG"
    with np.load(out / "attention.npz", allow_pickle=False) as z:
        assert z["E071"].shape == (N_MARKS, N_BINS) and z["E071_marks"].shape == (N_MARKS,)
    summary = json.loads((out / "explain.json").read_text())
    assert summary["model"] == "attentivechrome" and summary["attention"] is True
    # per-gene maps: the first n_genes of each cell type, attributions shaped like the input
    genes = load_gene_attributions(out / "genes_saliency.npz")
    assert (
        genes.values.shape == (2 * 3, N_MARKS, N_BINS)
        and list(genes.cell) == ["E003"] * 3 + ["E071"] * 3
    )
    np.testing.assert_allclose(
        genes.values.mean(axis=0), res.genes["saliency"].values.mean(axis=0), rtol=1e-6
    )
    assert res.hints == [f"histexpr report {run}"]


def test_explain_run_refuses_baselines_and_missing_models(tmp_path):
    run = _fake_run(tmp_path, {"ridge": "ridge"})
    with pytest.raises(HistexprError, match="only baselines"):
        explain_run(run, _dataset(), ["E003"])
    with pytest.raises(HistexprError, match="no gradients"):
        explain_run(run, _dataset(), ["E003"], model_kind="ridge")
    with pytest.raises(HistexprError, match="no model 'convnet'"):
        explain_run(run, _dataset(), ["E003"], model_kind="convnet")
    with pytest.raises(HistexprError, match="neither a run directory"):
        explain_run(tmp_path / "empty", _dataset(), ["E003"])
    with pytest.raises(HistexprError, match="a ridge baseline has no gradients"):
        explain_run(run / "models" / "ridge", _dataset(), ["E003"])  # a model directory
    with pytest.raises(HistexprError, match="n_steps"):
        explain_run(run, _dataset(), ["E003"], n_steps=0)
    with pytest.raises(HistexprError, match="unknown attribution method"):
        explain_run(run, _dataset(), ["E003"], methods=["deeplift"])


def test_explain_run_with_a_trained_neural_estimator(tmp_path):
    """The real loader path: a saved NeuralEstimator bundle is loaded and attributed."""
    from conftest import make_planted

    data = make_planted(n_genes=80, cells=("E003", "E071"))
    est = estimators.make_estimator(
        "convnet", ["epochs=2", "threads=1", "channels=8,8,8,8,8,8,8,8"]
    )
    est.fit(data.select_cells(["E003"]))
    model = tmp_path / "convnet"
    est.save(model)
    res = explain_run(model, data, ["E071"], methods=["integrated_gradients"], n_steps=16)
    assert res.model_kind == "convnet" and res.attention is None
    assert res.out_dir == tmp_path / "convnet.explain"  # next to the model, not inside it
    ig = res.attributions["integrated_gradients"].signed[0]
    assert ig.shape == (N_MARKS, N_BINS) and np.isfinite(ig).all() and np.abs(ig).sum() > 0
