import json
import shutil

import numpy as np
import pytest

from conftest import TINY, make_planted
from histexpr.data.dataset import MARKS
from histexpr.errors import HistexprError
from histexpr.estimators import load_estimator, make_estimator
from histexpr.estimators.bundle import (
    BUNDLE_FORMAT_VERSION,
    InputContract,
    check_input,
    read_header,
    write_header,
)


def test_header_round_trip_records_versions(tmp_path):
    write_header(tmp_path, "ridge", {"alpha": 1.0}, MARKS, 100)
    h = read_header(tmp_path)
    assert h.kind == "ridge" and h.config == {"alpha": 1.0} and h.marks == MARKS and h.n_bins == 100
    assert h.format_version == BUNDLE_FORMAT_VERSION
    assert {"python", "numpy", "torch"} <= set(h.versions)


def test_newer_format_gives_clear_message(tmp_path):
    write_header(tmp_path, "ridge", {}, MARKS, 100)
    data = json.loads((tmp_path / "model.json").read_text())
    data["format_version"] = BUNDLE_FORMAT_VERSION + 1
    (tmp_path / "model.json").write_text(json.dumps(data))
    with pytest.raises(HistexprError, match="newer histexpr"):
        read_header(tmp_path)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(HistexprError, match="not a model directory"):
        read_header(tmp_path)
    (tmp_path / "model.json").write_text("{")
    with pytest.raises(HistexprError, match="unreadable"):
        read_header(tmp_path)


def test_check_input_refuses_missing_marks_or_other_bins(tmp_path):
    h = write_header(tmp_path, "ridge", {}, MARKS, 100)
    check_input(h, MARKS, 100)
    with pytest.raises(HistexprError, match=MARKS[0]):
        check_input(h, MARKS[1:], 100)
    with pytest.raises(HistexprError, match="bins"):
        check_input(h, MARKS, 50)


# ------------------------------------------------------------------ format version 2


V1_TRAIN = {  # the flat TrainConfig of format version 1, with non-default values
    "task": "regression",
    "epochs": 1,
    "patience": 10,
    "batch_size": 32,
    "lr": 0.01,
    "weight_decay": 0.0001,
    "seed": 3,
    "threads": 1,
    "n_folds": 3,
    "valid_fraction": 0.2,
    "trainval_max": 50000,
    "accelerator": "cpu",
    "devices": 1,
    "num_nodes": 1,
    "strategy": "auto",
    "precision": "32-true",
    "valid_max": 0,
    "epoch_fraction": 1.0,
    "max_minutes": 0.0,
    "workers": 0,
    "scheduler": "",
    "inference_precision": "32",
    "progress": False,
}


@pytest.fixture(scope="module")
def planted_small():
    return make_planted(40, cells=("E003", "E004", "E005"))


@pytest.fixture(scope="module")
def ensemble_dir(planted_small, tmp_path_factory):
    opts = {"channels": TINY, "epochs": 1, "progress": False, "threads": 1, "seed": 3}
    est = make_estimator("ensemble", opts).fit(planted_small)
    return est, est.save(tmp_path_factory.mktemp("ens") / "m")


def test_v2_header_records_the_full_contract_and_checksums(ensemble_dir, planted_small):
    _, path = ensemble_dir
    h = read_header(path)
    assert h.format_version == 2 == BUNDLE_FORMAT_VERSION
    assert h.marks == MARKS and h.n_bins == 100 and h.bin_size == 100
    assert h.target == "log2(RPKM+1)" and h.task == "regression"
    assert h.train_cells == ("E003", "E004", "E005")
    assert set(h.train_genes) == set(planted_small.gene)
    files = {p.name for p in path.iterdir()} - {"model.json"}
    assert set(h.checksums) == files and "genes.txt" in files
    assert h.config["model"]["n_folds"] == 3 and "optim" in h.config["train"]


@pytest.mark.parametrize("kind", ["global-mean", "ridge"])
def test_baselines_record_cells_genes_and_target(kind, planted_small, tmp_path):
    est = make_estimator(kind).fit(planted_small)
    h = read_header(est.save(tmp_path / "m"))
    assert h.train_cells == ("E003", "E004", "E005") and len(h.train_genes) == 40
    assert h.target == "log2(RPKM+1)" and h.bin_size == 100
    assert est.contract_ == load_estimator(tmp_path / "m").contract_


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_damaged_or_missing_file_is_one_line_naming_it(damage, ensemble_dir, tmp_path):
    _, path = ensemble_dir
    model = tmp_path / "m"
    shutil.copytree(path, model)
    weights = model / "weights.safetensors"
    if damage == "delete":
        weights.unlink()
    else:
        raw = bytearray(weights.read_bytes())
        if damage == "flip":
            raw[len(raw) // 2] ^= 0xFF
        else:
            raw = raw[: len(raw) // 2]
        weights.write_bytes(bytes(raw))
    with pytest.raises(HistexprError, match=r"weights\.safetensors") as err:
        load_estimator(model)
    assert len(str(err.value).splitlines()) == 1
    assert ("missing" if damage == "delete" else "damaged") in str(err.value)


def test_a_damaged_lightgbm_model_never_reaches_lightgbm(planted_small, tmp_path, monkeypatch):
    import lightgbm

    path = make_estimator("lightgbm", {"n_estimators": 5}).fit(planted_small).save(tmp_path / "m")
    text = (path / "model.txt").read_text()
    (path / "model.txt").write_text(text.replace("tree", "tr3e", 1))

    def refuse(*args, **kwargs):
        raise AssertionError("a damaged model.txt reached lightgbm")

    monkeypatch.setattr(lightgbm, "Booster", refuse)
    with pytest.raises(HistexprError, match=r"model\.txt: damaged"):
        load_estimator(path)


def _as_version_1(path):
    """Rewrite a v2 neural model directory the way format version 1 laid it out."""
    h = json.loads((path / "model.json").read_text())
    model = dict(h["config"]["model"])
    model.pop("n_folds", None)
    old = {
        "kind": h["kind"],
        "format_version": 1,
        "config": {"model": model, "train": V1_TRAIN},
        "marks": h["marks"],
        "n_bins": h["n_bins"],
        "histexpr_version": "0.1.0",
        "versions": h["versions"],
        "created": h["created"],
        "extra": {"cells": h["cells"], "task": "regression"},
    }
    (path / "model.json").write_text(json.dumps(old))
    (path / "genes.txt").unlink()


def test_a_version_1_model_directory_still_loads(ensemble_dir, planted_small, tmp_path):
    est, path = ensemble_dir
    model = tmp_path / "m"
    shutil.copytree(path, model)
    _as_version_1(model)
    loaded = load_estimator(model)
    assert loaded.model_cfg == est.model_cfg  # n_folds moved from train to model
    t = loaded.train_cfg
    assert t.optim.lr == 0.01 and t.optim.seed == 3 and t.optim.batch_size == 32
    assert t.validation.holdout_fraction == 0.2  # was valid_fraction
    assert t.device.precision == "32-true" and loaded.inference_cfg.precision == "32"
    assert loaded.contract_.cells == ("E003", "E004", "E005")
    assert loaded.contract_.bin_size is None  # unknown in version 1: not checked
    np.testing.assert_array_equal(loaded.predict(planted_small), est.predict(planted_small))


def test_check_input_refuses_other_bin_size_or_target(planted_small):
    from dataclasses import replace

    contract = InputContract.of(planted_small)
    check_input(contract, planted_small, targets=True)
    wide = replace(planted_small, meta={"bin_size": 200})
    with pytest.raises(HistexprError, match="200-bp bins, the model was trained on 100-bp"):
        check_input(contract, wide, source="wide.h5")
    labels = replace(planted_small, target="label(RPKM > cell median)")
    check_input(contract, labels)  # predicting does not use the target
    with pytest.raises(HistexprError, match=r"label\(RPKM > cell median\).*log2\(RPKM\+1\)"):
        check_input(contract, labels, targets=True)
    given = replace(planted_small, target="as-given")
    check_input(contract, given, targets=True)  # a file that does not say is not compared
