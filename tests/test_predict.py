"""Tests of the batched prediction primitive."""

import numpy as np
import pytest
import torch

from histexpr.models import ConvNetConfig, build_model
from histexpr.predict import predict


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = build_model("convnet", ConvNetConfig(channels=(4, 4, 8, 8, 8, 8, 8, 8)), 5, 100)
    # Give batch norm non-trivial running statistics.
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.rand(32, 5, 100) * 20)
    return m


def test_batch_size_does_not_change_predictions(model):
    X = np.random.default_rng(0).poisson(3.0, size=(23, 5, 100)).astype(np.float32)
    full = predict(model, X, batch_size=len(X))
    for bs in (1, 7):
        np.testing.assert_allclose(predict(model, X, batch_size=bs), full, rtol=1e-5, atol=1e-6)
    assert full.shape == (23,) and full.dtype == np.float32


def test_restores_training_mode_and_flags(model):
    model.train()
    model.net.trunk.layers[1].eval()  # a caller-frozen batch norm must stay frozen
    before = [m.training for m in model.modules()]
    predict(model, np.zeros((3, 5, 100), np.float32))
    assert [m.training for m in model.modules()] == before
    model.eval()
    predict(model, torch.zeros(3, 5, 100))
    assert not any(m.training for m in model.modules())


def test_restores_device_and_leaves_no_gradients(model):
    device = next(model.parameters()).device
    out = predict(model, torch.zeros(4, 5, 100), device="cpu")
    assert next(model.parameters()).device == device
    assert all(p.grad is None for p in model.parameters())
    assert isinstance(out, np.ndarray)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_another_device_and_moves_back(model):
    X = torch.rand(5, 5, 100)
    cpu = predict(model, X)
    gpu = predict(model, X, device="cuda")
    assert next(model.parameters()).device.type == "cpu"
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_eval_mode_matches_manual_forward(model):
    X = torch.rand(6, 5, 100) * 4
    model.eval()
    with torch.no_grad():
        manual = model(X).numpy()
    model.train()
    np.testing.assert_allclose(predict(model, X), manual, rtol=1e-6)


def test_empty_input(model):
    out = predict(model, np.zeros((0, 5, 100), np.float32))
    assert out.shape == (0,)
    assert model.training
