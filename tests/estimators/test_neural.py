"""Tests of neural training, the estimator surface, saving and resuming."""

import json

import numpy as np
import pytest
from lightning.pytorch import Callback
from sklearn.metrics import roc_auc_score

from conftest import FAST, TINY, make_graded_planted, make_planted
from histexpr.data.dataset import MARKS, HistoneDataset
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import load_estimator, make_estimator
from histexpr.estimators.neural import NeuralEstimator, TrainConfig
from histexpr.models import ConvNetConfig


@pytest.fixture(scope="module")
def data():
    return make_graded_planted(), make_graded_planted(seed=1, cells=("U",))


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory):
    train, valid = data
    est = NeuralEstimator.create("convnet", {**FAST, "epochs": 8})
    return est.fit(train, valid, run_dir=tmp_path_factory.mktemp("run"))


def test_short_run_beats_global_mean_on_unseen_cell(fitted, data):
    train, valid = data
    mse = np.mean((fitted.predict(valid) - valid.y) ** 2)
    baseline = np.mean((train.y.mean() - valid.y) ** 2)
    assert mse < 0.6 * baseline
    assert fitted.metrics_["valid_mse"] == pytest.approx(mse, rel=1e-4)


def test_history_has_every_split_per_epoch(fitted, tmp_path):
    rows = fitted.history_
    epochs = sorted({r["epoch"] for r in rows})
    assert epochs == list(range(len(epochs))) and len(epochs) >= 2
    for e in epochs:
        assert {r["split"] for r in rows if r["epoch"] == e} == {"train", "valid", "trainval"}
    first = {r["split"]: r["loss"] for r in rows if r["epoch"] == 0}
    last = {r["split"]: r["loss"] for r in rows if r["epoch"] == epochs[-1]}
    assert last["trainval"] < first["trainval"]


def test_save_load_round_trip(fitted, data, tmp_path):
    _, valid = data
    path = fitted.save(tmp_path / "model")
    names = {p.name for p in path.iterdir()}
    assert {
        "model.json",
        "weights.safetensors",
        "normalization.json",
        "metrics.json",
        "history.csv",
    } <= names
    loaded = load_estimator(path)
    assert isinstance(loaded, NeuralEstimator) and loaded.kind == "convnet"
    np.testing.assert_array_equal(loaded.predict(valid), fitted.predict(valid))
    assert loaded.model_cfg == fitted.model_cfg and loaded.train_cfg == fitted.train_cfg
    norm = json.loads((path / "normalization.json").read_text())
    np.testing.assert_allclose(norm["mean"], fitted.model_.normalizer.stats().mean, rtol=1e-6)
    assert len(loaded.history_) == len(fitted.history_)


def test_batch_size_invariant_predictions(fitted, data):
    _, valid = data
    small = valid.subset(np.arange(15))
    full = fitted.predict(small, batch_size=len(small))
    for bs in (1, 7):
        np.testing.assert_allclose(fitted.predict(small, batch_size=bs), full, atol=1e-5)


def test_wrong_marks_bins_or_bin_size_refused(fitted, data):
    _, valid = data
    four = HistoneDataset(valid.X[:, :4], None, valid.cell, valid.gene, marks=MARKS[:4])
    with pytest.raises(HistexprError, match=MARKS[4]):
        fitted.predict(four)
    short = HistoneDataset(valid.X[:, :, :50], None, valid.cell, valid.gene)
    with pytest.raises(HistexprError, match="bins"):
        fitted.predict(short)
    wide = HistoneDataset(valid.X, None, valid.cell, valid.gene, meta={"bin_size": 200})
    with pytest.raises(HistexprError, match="200-bp bins, the model was trained on 100-bp"):
        fitted.predict(wide)


def test_same_seed_gives_identical_predictions(data):
    train, valid = data
    small = train.subset(np.arange(0, len(train), 3))
    runs = [NeuralEstimator.create("convnet", {**FAST, "epochs": 2}).fit(small) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].predict(valid), runs[1].predict(valid))
    other = NeuralEstimator.create("convnet", {**FAST, "epochs": 2, "seed": 1}).fit(small)
    assert not np.array_equal(other.predict(valid), runs[0].predict(valid))


class Interrupt(Callback):
    """Crash after the given epoch, once its checkpoint is written."""

    def __init__(self, after_epoch):
        self.after_epoch = after_epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.after_epoch:
            raise RuntimeError("simulated interruption")


@pytest.mark.parametrize("kind", ["convnet", "ensemble"])
def test_resume_matches_uninterrupted_run(kind, data, tmp_path):
    train, valid = data
    small = train.subset(np.arange(0, len(train), 2))
    opts = {**FAST, "epochs": 4, "patience": 10}
    whole = NeuralEstimator.create(kind, opts).fit(small, valid, run_dir=tmp_path / "a")
    crash_member = 1 if kind == "ensemble" else 0
    est = NeuralEstimator.create(kind, opts)

    class CrashIn(Interrupt):
        count = 0

        def on_train_end(self, trainer, pl_module):
            CrashIn.count += 1

        def on_train_epoch_end(self, trainer, pl_module):
            if CrashIn.count == crash_member:
                super().on_train_epoch_end(trainer, pl_module)

    with pytest.raises(RuntimeError, match="simulated"):
        est.fit(small, valid, run_dir=tmp_path / "b", callbacks=[CrashIn(1)])
    resumed = NeuralEstimator.create(kind, opts).fit(
        small, valid, run_dir=tmp_path / "b", resume=True
    )
    np.testing.assert_array_equal(resumed.predict(valid), whole.predict(valid))
    assert resumed.history_ == whole.history_
    members = {r["member"] for r in resumed.history_}
    assert members == ({"fold0", "fold1", "fold2"} if kind == "ensemble" else {"model"})


def test_classification_separates_median_split(data):
    train, valid = data
    est = NeuralEstimator.create("convnet", {**FAST, "epochs": 6, "task": "classification"})
    est.fit(train, valid)
    p = est.predict(valid)
    assert ((p >= 0) & (p <= 1)).all()
    labels = valid.y > np.median(valid.y)
    assert roc_auc_score(labels, p) > 0.75
    assert est.metrics_["valid_auc"] == pytest.approx(roc_auc_score(labels, p), rel=1e-4)


@pytest.mark.parametrize("kind", ["ensemble", "celltype-weighted", "deepchrome", "attentivechrome"])
def test_every_kind_fits_saves_and_loads(kind, data, tmp_path):
    train, valid = data
    small = train.subset(np.arange(0, len(train), 5))
    opts = {"epochs": 1, "progress": False, "threads": 1}
    if kind in ("ensemble", "celltype-weighted"):
        opts["channels"] = TINY
    if kind == "attentivechrome":
        opts.update(bin_hidden=3, mark_hidden=2)
    est = make_estimator(kind, opts).fit(small, run_dir=tmp_path / "run")
    pred = est.predict(valid)
    assert pred.shape == (len(valid),) and np.isfinite(pred).all()
    loaded = load_estimator(est.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(valid), pred)
    if kind == "celltype-weighted":
        assert {r["member"] for r in est.history_} == {"gate", "cell-A", "cell-B", "cell-C"}
    if kind == "attentivechrome":
        from histexpr.explain import attention_maps

        bins, marks = attention_maps(loaded.model_, valid.X[:4])
        assert bins.shape == (4, 5, 100) and marks.shape == (4, 5)


def test_create_routes_overrides():
    est = NeuralEstimator.create("ensemble", ["epochs=3", "channels=16,16,32,32,64,64,128,128"])
    assert est.train_cfg.optim.epochs == 3 and est.model_cfg.channels[-1] == 128
    assert NeuralEstimator.create("convnet").model_cfg == ConvNetConfig()
    assert NeuralEstimator.create("convnet").train_cfg == TrainConfig()
    assert TrainConfig().runner.progress and TrainConfig().optim.epochs >= 100
    assert NeuralEstimator.create("ensemble").model_cfg.n_folds == 3
    with pytest.raises(ConfigError, match="nonsense"):
        NeuralEstimator.create("convnet", {"nonsense": 1})


def test_bad_task_and_too_few_cells(data):
    train, _ = data
    with pytest.raises(ConfigError, match="task"):
        NeuralEstimator.create("convnet", {**FAST, "task": "ranking"}).fit(train)
    with pytest.raises(ConfigError, match="folds"):
        NeuralEstimator.create("ensemble", {**FAST, "n_folds": 5}).fit(train)


def test_inference_precision_bf16_close_to_fp32(tmp_path):
    from histexpr.estimators import load_estimator, make_estimator

    ds = make_planted(n_genes=60, cells=("E003", "E004"))
    small = ["channels=8,8,8,8,8,8,8,8", "epochs=1", "progress=false", "threads=1"]
    est = make_estimator("convnet", small).fit(ds)
    est.save(tmp_path / "m")
    fp32 = est.predict(ds)
    est_bf16 = make_estimator("convnet", [*small, "inference_precision=bf16"])
    bf16_model = load_estimator(tmp_path / "m")
    bf16_model.inference_cfg = est_bf16.inference_cfg
    bf16 = bf16_model.predict(ds)
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, fp32, atol=0.05 * np.abs(fp32).max())
    assert not np.array_equal(bf16, fp32)  # bf16 really used
