"""Model directories saved before the estimator redesign still load and predict the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from histexpr.data.convert import load_dataset
from histexpr.estimators import load_estimator

HERE = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "legacy_models"
EXPECTED = np.load(HERE / "expected.npz", allow_pickle=False)
KINDS = sorted(p.name for p in (HERE / "models").iterdir())
NEURAL = {"convnet", "ensemble", "celltype-weighted", "deepchrome", "attentivechrome"}
NEURAL |= {"atlas-convnet", "diff-convnet"}


@pytest.fixture(scope="module")
def data():
    return load_dataset(HERE / "data.npz")


def _check(kind: str, got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if kind in NEURAL:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    else:  # non-neural kinds: bit-identical
        np.testing.assert_array_equal(got.astype(np.float32), want)


def test_every_kind_has_a_fixture():
    from histexpr.estimators import KINDS as ALL

    assert set(KINDS) == set(ALL), "add a legacy directory for a new kind in make.sh"


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("kind", KINDS)
def test_old_directory_predicts_as_before(kind, data):
    est = load_estimator(HERE / "models" / kind)
    if f"{kind}:reversed" in EXPECTED:  # a differential kind: both orientations
        got = est.predict_pair(data, "E003", "E123").predicted
        _check(kind, np.asarray(got), EXPECTED[kind])
        back = est.predict_pair(data, "E123", "E003").predicted
        _check(kind, np.asarray(back), EXPECTED[f"{kind}:reversed"])
    else:
        _check(kind, np.asarray(est.predict(data)), EXPECTED[kind])
