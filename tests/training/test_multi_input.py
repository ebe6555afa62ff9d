"""Networks of several inputs (histone signal + side features, the two cells of a pair):
training, validation and the predict primitive take tuples of row-aligned inputs."""

import numpy as np
import pytest
import torch
from torch import nn

from histexpr.config import resolve_overrides
from histexpr.predict import predict
from histexpr.training.config import TrainConfig
from histexpr.training.fit import fit_member
from histexpr.training.members import Member
from histexpr.training.plan import Gathered, TensorBatches, make_loader, n_examples, take


class SideNet(nn.Module):
    """y = mean of the signal + a linear function of the side features."""

    def __init__(self, n_side):
        super().__init__()
        self.side = nn.Linear(n_side, 1)
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, x, side):
        return self.scale * x.mean(dim=(1, 2)) + self.side(side)[:, 0]


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2, 8)).astype(np.float32)
    S = rng.normal(size=(n, 3)).astype(np.float32)
    y = (2.0 * X.mean(axis=(1, 2)) + S @ np.array([1.0, -0.5, 0.25]) + 0.3).astype(np.float32)
    return torch.from_numpy(X), torch.from_numpy(S), torch.from_numpy(y)


def test_batches_of_a_tuple_stay_aligned():
    X, S, y = _data(50)
    ds = TensorBatches((X, S), y)
    assert len(ds) == 50 and n_examples((X, S)) == 50
    (xb, sb), yb = ds.__getitems__([3, 7, 11])
    assert torch.equal(xb, X[[3, 7, 11]]) and torch.equal(sb, S[[3, 7, 11]])
    assert torch.equal(yb, y[[3, 7, 11]])
    batches = list(make_loader((X, S), y, 16, shuffle=True, seed=1))
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == sorted(y.tolist())  # every example once per epoch


def test_gathered_view_matches_materialised_rows():
    base = torch.arange(30, dtype=torch.float32).reshape(10, 3)
    index = torch.tensor([9, 0, 0, 4])
    view = Gathered(base, index)
    assert len(view) == 4 and view.shape == (4, 3)
    assert torch.equal(take(view, torch.tensor([1, 3])), base[[0, 4]])
    assert torch.equal(view[1:3], base[[0, 0]])


def test_fit_member_learns_from_side_features(tmp_path):
    X, S, y = _data(600)
    net = SideNet(3)
    sets = {"epochs": 40, "batch_size": 64, "lr": 0.05, "patience": 40, "progress": False}
    cfg = resolve_overrides({"train": TrainConfig()}, sets)["train"]
    train, valid = ((X[:500], S[:500]), y[:500]), ((X[500:], S[500:]), y[500:])
    member = Member("model", net, "mse", train, valid)
    result, _rows = fit_member(member, cfg, 0, tmp_path / "ck")
    pred = predict(net, (X[500:].numpy(), S[500:].numpy()), batch_size=17)
    mse = float(np.mean((pred - y[500:].numpy()) ** 2))
    assert mse < 0.05 * float(y[500:].var())  # the planted linear side signal is learned
    assert result.n_train == 500 and result.n_valid == 100


@pytest.mark.parametrize("batch_size", [1, 7, 1024])
def test_predict_of_a_tuple_is_batch_size_invariant(batch_size):
    X, S, _ = _data(40)
    net = SideNet(3)
    ref = (0.0 * X.mean(dim=(1, 2)) + net.side(S)[:, 0]).detach().numpy()
    out = predict(net, (X, S), batch_size=batch_size)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    empty = predict(net, (X[:0], S[:0]))
    assert empty.shape == (0,)
