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


class Linear3(nn.Module):
    """y = sum(w * x * scale) + v . side: two further inputs, both held fixed."""

    def __init__(self, w, v):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w))
        self.v = nn.Parameter(torch.as_tensor(v))

    def forward(self, x, side, scale):
        return (x * self.w).sum(dim=(1, 2)) * scale[:, 0] + side @ self.v


def test_tuple_inputs_attribute_the_first_and_hold_the_others_fixed():
    rng = np.random.default_rng(1)
    X = rng.poisson(3.0, size=(6, 2, 5)).astype(np.float32)
    w = rng.normal(size=(2, 5)).astype(np.float32)
    model = Linear3(w, np.array([1.0, -2.0], np.float32))
    side = rng.normal(size=(6, 2)).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, size=(6, 1)).astype(np.float32)
    expected = X * w * scale[:, :, None]
    for method in ("input_x_gradient", "integrated_gradients"):
        a = attribute(model, (X, side, scale), method, batch_size=4, n_steps=8)
        np.testing.assert_allclose(a, expected, rtol=1e-4, atol=1e-5)
        # the same as the fixed inputs given as a tuple of side inputs
        b = attribute(model, X, method, batch_size=4, n_steps=8, side=(side, scale))
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_riemann_midpoints_match_a_hand_written_integral():
    # f(x) = sum(x^2): IG from 0 with midpoints t_k is x * mean_k(2 t_k x) = x^2 exactly
    class Square(nn.Module):
        def forward(self, x):
            return (x**2).sum(dim=(1, 2))

    X = np.random.default_rng(2).normal(size=(3, 2, 4)).astype(np.float32)
    a = attribute(Square(), X, "integrated_gradients", n_steps=5, ig_method="riemann_middle")
    np.testing.assert_allclose(a, X**2, rtol=1e-5, atol=1e-6)
