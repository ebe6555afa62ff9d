"""atlas-convnet: save/load identity, no leakage, the atlas helps, genes absent from the atlas."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import FAST, atlas_parts, atlas_with_truth, quiet_predict
from histexpr.data.atlas import AtlasNotice
from histexpr.errors import ConfigError
from histexpr.estimators import load_estimator, make_estimator, settings
from histexpr.models.atlasnet import AtlasConvNet, AtlasConvNetConfig
from histexpr.models.ensemble import FoldEnsemble

CELLS = ("E003", "E004", "E005", "E006", "E007")
SETS = {**FAST, "epochs": 20, "n_folds": 1, "alpha": 10.0}


@pytest.fixture(scope="module")
def parts():
    return atlas_parts(CELLS)


@pytest.fixture(scope="module")
def fitted(parts):
    return make_estimator("atlas-convnet", SETS).fit(parts["train"])


def _mse(pred, data):
    return float(np.mean((pred - data.y) ** 2))


def test_network_shapes_and_fold_members():
    cfg = AtlasConvNetConfig(channels=(4, 4, 8, 8, 8, 8, 16, 16), n_folds=2)
    net = FoldEnsemble([AtlasConvNet(cfg, 5, 40, 7) for _ in range(2)]).eval()
    x, side = (
        np.random.default_rng(0).normal(size=(2, 3, 5, 40)),
        np.ones((3, 8)),
    )  # 7 features, then the prior
    import torch

    out = net(torch.tensor(x[0], dtype=torch.float32), torch.tensor(side, dtype=torch.float32))
    assert out.shape == (3, 1) and net.member_paths() == ["members.0", "members.1"]
    with pytest.raises(ConfigError, match="n_folds"):
        AtlasConvNetConfig(n_folds=0)


def test_save_load_gives_identical_predictions(fitted, parts, tmp_path):
    fitted.save(tmp_path / "m")
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"model.json", "weights.safetensors", "atlas.npz", "state.npz", "scorer"} <= names
    assert not list((tmp_path / "m").rglob("*.pkl"))
    back = load_estimator(tmp_path / "m")
    assert back.kind == "atlas-convnet"
    for d in (parts["unseen_known"], parts["unseen_new"], parts["train"]):
        np.testing.assert_array_equal(quiet_predict(back, d), quiet_predict(fitted, d))
        np.testing.assert_array_equal(back.atlas_used_, fitted.atlas_used_)
        np.testing.assert_array_equal(back.prior_, fitted.prior_)


def test_planted_target_column_has_no_effect_on_its_own_prediction(fitted, parts):
    target = parts["unseen_known"]  # E007 was never trained on
    before = quiet_predict(fitted, target)
    atlas = fitted.atlas_
    fitted.atlas_ = atlas_with_truth(atlas, target)
    try:
        with pytest.warns(
            AtlasNotice, match=r"atlas column\(s\) of E007 excluded while predicting them"
        ):
            after = fitted.predict(target)
    finally:
        fitted.atlas_ = atlas
    np.testing.assert_array_equal(before, after)
    assert fitted.atlas_used_.all()


def test_atlas_helps_on_unseen_cell_and_known_genes(fitted, parts):
    # Known answers on the planted data: the gene mean over the training cells is what
    # the atlas alone says; the same network with the atlas hidden is histone-only.
    known = parts["unseen_known"]
    gene_mean = make_estimator("gene-mean").fit(parts["train"]).predict(known)
    hidden = dataclasses.replace(known, gene=np.char.add("NEW", known.gene.astype(str)))
    with_atlas = _mse(quiet_predict(fitted, known), known)
    assert with_atlas < 0.8 * _mse(gene_mean, known)
    # the histone signal of make_planted is strong on its own, so the margin is smaller
    assert with_atlas < 0.9 * _mse(quiet_predict(fitted, hidden), known)
    assert not fitted.atlas_used_.any()  # the renamed genes are absent from the atlas


def test_genes_absent_from_the_atlas_get_histone_predictions(fitted, parts):
    new = parts["unseen_new"]
    pred = quiet_predict(fitted, new)
    assert np.isfinite(pred).all() and not fitted.atlas_used_.any()
    assert np.isnan(fitted.prior_).all()
    # the fallback reads the histone signal: far better than the training mean
    assert _mse(pred, new) < 0.3 * _mse(np.full(len(new), parts["train"].y.mean()), new)


def test_settings_overrides_and_errors():
    names = {s.name for s in settings("atlas-convnet")}
    assert {"model.n_folds", "train.optim.lr", "features.hide_fraction"} <= names
    est = make_estimator("atlas-convnet", ["lr=0.01", "atlas=roadmap", "n_folds=1"])
    assert est.config.train.optim.lr == 0.01 and est.config.features.atlas == "roadmap"
    with pytest.raises(ConfigError, match="task=regression"):
        make_estimator("atlas-convnet", {"task": "classification"})
    with pytest.raises(ConfigError, match="hide_fraction"):
        make_estimator("atlas-convnet", {"hide_fraction": 1.0})


def test_the_network_adds_the_prior_itself(fitted, parts):
    """The prediction is the network's output on (X, atlas input): nothing is added after
    it, so explain treats it like any network (gradients with the atlas input fixed)."""
    import warnings

    from histexpr.predict import predict

    data = parts["unseen_known"]
    pred = quiet_predict(fitted, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AtlasNotice)
        A = fitted.side_inputs(data)
    used = fitted.atlas_used_
    assert used.any() and A.shape[1] == len(fitted.side_mean_) + 2
    np.testing.assert_array_equal(A[used, -1], fitted.prior_[used].astype(np.float32))
    np.testing.assert_array_equal(A[~used, -1], np.float32(fitted.base_mean_))
    out = predict(fitted.model_, (data.X, A)).reshape(-1)
    np.testing.assert_allclose(out, pred, rtol=0, atol=1e-6)


def test_guard_shrinks_the_correction_towards_the_prior_and_is_saved(fitted, parts, tmp_path):
    """The guard of the other atlas kinds (issue #22): each unseen cell's correction
    (prediction minus prior) scaled by a factor in [0, 1]; a directory without
    ``guard.npz`` (saved before the guard) predicts the network's output as is."""
    target = parts["unseen_known"]
    guarded = quiet_predict(fitted, target)
    prior, scale = fitted.prior_.copy(), fitted.guard_scales_["E007"]
    assert fitted.guard_ is not None and 0.0 <= scale <= 1.0
    guard, fitted.guard_ = fitted.guard_, None
    try:
        raw = quiet_predict(fitted, target)
    finally:
        fitted.guard_ = guard
    np.testing.assert_allclose(guarded, prior + scale * (raw - prior), atol=1e-5)
    path = fitted.save(tmp_path / "m")
    assert (path / "guard.npz").is_file()
    (path / "guard.npz").unlink()
    from histexpr.estimators.atlas_guard import PriorGuard

    assert PriorGuard.load(path) is None


def test_departure_unknown_copies_only_with_an_external_atlas(fitted, parts, tmp_path):
    """With an atlas of the training targets every atlas gene is a training gene, so the
    departure block is always known: no copies. With an external atlas a gene no
    training cell has can be predicted, so some genes' rows are also trained with the
    block blanked (atlas-ridge and atlas-lightgbm fit a second residual model instead)."""
    assert fitted.metrics_["n_departure_copies"] == 0
    import pandas as pd

    train = parts["train"]
    table = pd.DataFrame({"gene": train.gene, "cell": train.cell, "y": train.y})
    table = table.pivot(index="gene", columns="cell", values="y")
    table["E099"] = table.mean(axis=1)  # a reference cell type not trained on
    path = tmp_path / "atlas.tsv"
    table.to_csv(path, sep="\t")
    est = make_estimator(
        "atlas-convnet", {**SETS, "epochs": 2, "atlas": str(path), "atlas_values": "transformed"}
    ).fit(train)
    assert est.features_.atlas.source != "train"
    copies = est.metrics_["n_departure_copies"]
    # a quarter of the genes (half of those whose atlas is not hidden), all their cells
    assert copies == round(0.5 * 45) * len(np.unique(train.cell))
