"""Batch-norm folding for inference and the precision options of ``predict``."""

import numpy as np
import pytest
import torch
from torch import nn

from histexpr.errors import ConfigError
from histexpr.models import ConvNetConfig, build_model
from histexpr.models.fuse import fold_batchnorm
from histexpr.predict import autocast_dtype, predict

TINY = ConvNetConfig(channels=(4, 4, 8, 8, 8, 8, 8, 8))


def _trained_like(kind="ensemble", seed=0):
    torch.manual_seed(seed)
    m = build_model(kind, TINY, 5, 100)
    m.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial running statistics
            m(torch.rand(32, 5, 100) * 20)
    return m


@pytest.mark.parametrize("kind", ["convnet", "ensemble", "celltype-weighted"])
def test_folded_copy_matches_eval_forward_and_leaves_original(kind):
    kwargs = {"n_cells": 3} if kind == "celltype-weighted" else {}
    torch.manual_seed(0)
    m = build_model(kind, TINY, 5, 100, **kwargs)
    m.train()
    with torch.no_grad():
        m(torch.rand(32, 5, 100) * 20)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    folded = fold_batchnorm(m)
    assert not any(isinstance(x, nn.BatchNorm1d | nn.Dropout) for x in folded.modules())
    assert m.training and any(isinstance(x, nn.BatchNorm1d) for x in m.modules())
    X = torch.rand(9, 5, 100) * 5
    m.eval()
    with torch.no_grad():
        np.testing.assert_allclose(folded(X).numpy(), m(X).numpy(), rtol=1e-5, atol=1e-6)
    for k, v in m.state_dict().items():
        assert torch.equal(v, state[k])


def test_fuse_flag_does_not_change_predictions():
    m = _trained_like()
    X = np.random.default_rng(0).poisson(3.0, size=(50, 5, 100)).astype(np.float32)
    np.testing.assert_allclose(
        predict(m, X, fuse=True), predict(m, X, fuse=False), rtol=1e-5, atol=1e-6
    )


def test_bf16_predictions_are_close_and_float32():
    m = _trained_like("convnet")
    X = np.random.default_rng(1).poisson(3.0, size=(40, 5, 100)).astype(np.float32)
    ref = predict(m, X)
    out = predict(m, X, precision="bf16-mixed")
    assert out.dtype == np.float32 and out.shape == ref.shape
    # bfloat16 keeps 8 significant bits: about 2-3 significant digits.
    np.testing.assert_allclose(out, ref, rtol=0.05, atol=0.05 * np.abs(ref).max())


def test_precision_names():
    assert autocast_dtype(None) is None and autocast_dtype("32-true") is None
    assert autocast_dtype("BF16") is torch.bfloat16
    with pytest.raises(ConfigError, match="precision"):
        predict(_trained_like("convnet"), np.zeros((2, 5, 100), np.float32), precision="fp8")
