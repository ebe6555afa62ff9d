"""Attributions of a two-input model (histone signal + fixed side features)."""

import numpy as np
import torch
from torch import nn

from histexpr.explain import attribute


class Linear2(nn.Module):
    """y = sum(w * x) + v . side: the histone attribution (input x gradient) is w * x."""

    def __init__(self, w, v):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w))
        self.v = nn.Parameter(torch.as_tensor(v))

    def forward(self, x, side):
        return (x * self.w).sum(dim=(1, 2)) + side @ self.v


def test_side_features_are_held_fixed_and_get_no_attribution():
    rng = np.random.default_rng(0)
    X = rng.poisson(3.0, size=(9, 2, 5)).astype(np.float32)
    w = rng.normal(size=(2, 5)).astype(np.float32)
    model = Linear2(w, np.array([1.0, -2.0, 0.5], np.float32))
    side = rng.normal(size=(9, 3)).astype(np.float32)
    for method in ("input_x_gradient", "integrated_gradients"):
        a = attribute(model, X, method, batch_size=4, n_steps=8, side=side)
        np.testing.assert_allclose(a, X * w, rtol=1e-4, atol=1e-5)
        # other side values: the same histone attributions (a linear model's are exact)
        b = attribute(model, X, method, batch_size=4, n_steps=8, side=side * 3)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
