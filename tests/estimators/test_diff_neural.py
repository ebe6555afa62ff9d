"""diff-convnet: exact antisymmetry, planted signal on seen and unseen pairs, save/load,
attributions that add up, one-line config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY, make_planted
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import load_estimator, make_estimator, settings
from histexpr.evaluate import diff_metrics
from histexpr.models.siamese import DiffConvNet, DiffConvNetConfig

TRAIN_CELLS = ("E003", "E004", "E005")
FAST = [
    f"channels={TINY}",
    "head_width=16",
    "progress=false",
    "threads=1",
    "epochs=12",
    "patience=4",
    "batch_size=64",
    "lr=3e-3",
]


@pytest.fixture(scope="module")
def split():
    ds = make_planted(300, (*TRAIN_CELLS, "E006"), seed=3)
    genes = np.unique(ds.gene)
    train = ds.select_genes(genes[:220]).select_cells(list(TRAIN_CELLS))
    return train, ds.select_genes(genes[:220], exclude=True)


@pytest.fixture(scope="module")
def fitted(split):
    train, _ = split
    return make_estimator("diff-convnet", FAST).fit(train)


def test_network_is_exactly_antisymmetric_and_swaps_its_aux_heads():
    torch.manual_seed(0)
    cfg = DiffConvNetConfig(channels=tuple(int(c) for c in TINY.split(",")), head_width=8)
    net = DiffConvNet(cfg, n_marks=5, n_bins=40).eval()
    a, b = torch.randn(6, 5, 40), torch.randn(6, 5, 40)
    with torch.no_grad():
        ab, ba = net(a, b), net(b, a)
        same = net(a, a)
    assert ab.shape == (6, 3)
    assert torch.equal(ab[:, 0], -ba[:, 0]) and torch.equal(ab[:, 1:], ba[:, [2, 1]])
    assert torch.all(same[:, 0] == 0)
    no_aux = DiffConvNet(DiffConvNetConfig(channels=cfg.channels, aux=False), 5, 40).eval()
    assert no_aux(a, b).shape == (6, 1)


def test_learns_the_planted_change_on_seen_and_unseen_pairs(fitted, split):
    _, test = split
    assert fitted.pairs_ == [("E003", "E004"), ("E003", "E005"), ("E004", "E005")]
    for a, b in (("E003", "E004"), ("E006", "E003")):  # E006 was never trained on
        p = fitted.predict_pair(test, a, b)
        q = fitted.predict_pair(test, b, a)
        np.testing.assert_array_equal(p.predicted, -q.predicted)  # exact
        # held-out genes; the zero-skill floor is "no change": MSE = mean(lfc^2)
        assert diff_metrics(p.observed, p.predicted).pearson > 0.5
        assert np.mean((p.predicted - p.observed) ** 2) < 0.8 * np.mean(p.observed**2)
    m = fitted.metrics_
    assert m["n_pair_rows"] == 2 * 3 * (220 - m["n_heldout_genes"])
    assert m["target"].startswith("log fold change of")


def test_save_load_gives_identical_predictions(fitted, split, tmp_path):
    _, test = split
    fitted.save(tmp_path / "m")
    back = load_estimator(tmp_path / "m")
    assert back.kind == "diff-convnet" and back.pairs_ == fitted.pairs_
    assert back.config == fitted.config
    p, q = fitted.predict_pair(test, "E004", "E006"), back.predict_pair(test, "E004", "E006")
    np.testing.assert_array_equal(p.predicted, q.predicted)
    files = {f.name for f in (tmp_path / "m").iterdir()}
    assert "weights.safetensors" in files and not any(f.endswith((".pkl", ".pt")) for f in files)
    with pytest.raises(HistexprError, match="--pair"):
        back.predict(test)


def test_attributions_have_the_input_shape_and_add_up_to_the_change(fitted, split):
    _, test = split
    sub = test.select_genes(np.unique(test.gene)[:30])
    att = fitted.attribute_pair(sub, "E003", "E006")
    assert att.attribution.shape == (30, sub.X.shape[1], sub.X.shape[2])
    assert att.base == 0.0  # the midpoint of the two cells predicts no change
    gap = np.abs(att.attribution.sum((1, 2)) + att.base - att.predicted)
    # integrated gradients: exact up to the Riemann error of ig_steps steps
    assert gap.max() <= 0.02 * np.abs(att.predicted).max() + 1e-3
    rev = fitted.attribute_pair(sub, "E006", "E003")
    np.testing.assert_allclose(rev.attribution, -att.attribution, atol=1e-5)
    # the planted marks (H3K4me3 at the TSS, H3K27me3) carry the change, not the noise marks
    share = np.abs(att.attribution).sum((0, 2))
    assert share[[0, 3]].sum() > share[[1, 2, 4]].sum()


def test_without_aux_heads_it_trains_on_the_change_alone(split):
    train, test = split
    est = make_estimator("diff-convnet", [*FAST, "aux=false", "epochs=2", "max_rows=400"])
    est.fit(train)
    assert est.metrics_["loss"] == "mse" and est.metrics_["n_pair_rows"] == 400
    assert est.predict_pair(test, "E003", "E004").predicted.shape == (80,)


@pytest.mark.parametrize(
    "bad",
    [["head_width=0"], ["max_rows=-1"], ["task=classification"], ["mark_dropout=0.2"],
     ["nosuch=1"], ["pairs=E003"], ["dropout=1.5"]],
)  # fmt: skip
def test_config_errors_are_one_line(bad):
    with pytest.raises(ConfigError) as info:
        make_estimator("diff-convnet", bad)
    assert "\n" not in str(info.value)


def test_settings_list_every_group():
    names = {s.name for s in settings("diff-convnet")}
    assert {"diff.max_rows", "model.aux", "train.optim.lr", "train.device.precision"} <= names


def test_trains_through_the_runners_with_run_dir_valid_and_resume(split, tmp_path):
    train, test = split
    fast = [*FAST, "epochs=2", "max_rows=300"]
    run = tmp_path / "run"
    est = make_estimator("diff-convnet", fast).fit(train, test, run_dir=run)
    # the runner's files in run_dir: checkpoints of the one member and the history
    assert (run / "checkpoints" / "model" / "done.json").is_file()
    assert (run / "history.csv").is_file() and est.history_
    m = est.metrics_
    # valid honoured: early stopping on its pairs (no genes held out of train), scored on it
    assert m["n_heldout_genes"] == 0 and m["n_pair_rows"] == 300
    assert m["n_valid_rows"] == 2 * 3 * len(np.unique(test.gene))
    assert m["n_valid"] == 3 * len(np.unique(test.gene)) and np.isfinite(m["valid_mse"])
    # resume: the finished member is loaded, not trained again, and predicts the same
    again = make_estimator("diff-convnet", fast).fit(train, test, run_dir=run, resume=True)
    p = est.predict_pair(test, "E003", "E006").predicted
    np.testing.assert_array_equal(again.predict_pair(test, "E003", "E006").predicted, p)
    other = make_estimator("diff-convnet", [*fast, "head_width=8"])
    with pytest.raises(HistexprError, match="cannot resume"):
        other.fit(train, test, run_dir=run, resume=True)
