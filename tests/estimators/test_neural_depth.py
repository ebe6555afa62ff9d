"""Networks with ``depth_norm="cell"``: each cell type's counts at one depth.

Known answers: the prediction of a new cell type does not change when its counts are
scaled per mark (its depth is measured on its own genes); a training cell keeps the
depth of its training genes, so a subset of its genes predicts as in the whole;
streamed blocks, a saved model and one training cell change nothing.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import FAST, make_planted
from histexpr.data.depth import MIN_DEPTH_GENES, DepthNotice
from histexpr.errors import ConfigError
from histexpr.estimators import load_estimator, make_estimator

SETS = {**FAST, "epochs": 3, "depth_norm": "cell"}


@pytest.fixture(scope="module")
def data():
    full = make_planted(n_genes=MIN_DEPTH_GENES + 40, cells=("E003", "E004", "E005", "E006"))
    return full.subset(full.cell != "E006"), full.subset(full.cell == "E006")


@pytest.fixture(scope="module")
def fitted(data):
    return make_estimator("convnet", SETS).fit(data[0])


def _scaled(d, factors):
    return dataclasses.replace(d, X=d.X * np.asarray(factors, np.float32)[None, :, None])


def test_a_new_cell_type_predicts_the_same_at_any_depth(fitted, data):
    new = data[1]
    base = fitted.predict(new)
    deeper = fitted.predict(_scaled(new, [3.0, 0.5, 2.0, 1.5, 4.0]))
    np.testing.assert_allclose(deeper, base, rtol=1e-4, atol=1e-4)
    plain = make_estimator("convnet", {**SETS, "depth_norm": "none"}).fit(data[0])
    assert not np.allclose(plain.predict(_scaled(new, [3.0] * 5)), plain.predict(new), atol=1e-3)


def test_training_cells_keep_their_depth_and_few_new_genes_are_read_as_they_are(fitted, data):
    train, new = data
    whole = fitted.predict(train)
    some = np.flatnonzero(train.cell == "E004")[:7]
    # equal up to the float rounding of another batch size
    np.testing.assert_allclose(fitted.predict(train.subset(some)), whole[some], atol=1e-5)
    with pytest.warns(DepthNotice, match="E006"):
        fitted.predict(new.subset(np.arange(10)))


def test_streamed_blocks_predict_as_the_whole_input(fitted, data):
    new = data[1]
    whole = fitted.predict(new)
    blocks = [new.subset(rows) for rows in np.array_split(np.arange(len(new)), 4)]
    fitted.prepare_cells(iter(blocks))
    try:
        parts = np.concatenate([fitted.predict(b) for b in blocks])
    finally:
        fitted.prepare_cells(None)
    np.testing.assert_allclose(parts, whole, rtol=1e-6, atol=1e-6)


def test_saved_model_keeps_the_depths(fitted, data, tmp_path):
    path = fitted.save(tmp_path / "m")
    assert (path / "depth.npz").is_file()
    back = load_estimator(path)
    np.testing.assert_array_equal(back.predict(data[1]), fitted.predict(data[1]))
    assert fitted.metrics_["depth_reference"] == pytest.approx(list(back.depth_reference_))


def test_one_training_cell_is_read_as_it_is(data):
    one = data[0].subset(data[0].cell == "E004")
    a = make_estimator("convnet", SETS).fit(one)
    b = make_estimator("convnet", {**SETS, "depth_norm": "none"}).fit(one)
    np.testing.assert_allclose(a.predict(one), b.predict(one), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["atlas-convnet", "diff-convnet"])
def test_kinds_with_their_own_inputs_refuse_it(kind):
    with pytest.raises(ConfigError, match="depth_norm"):
        make_estimator(kind, {"depth_norm": "cell"})
