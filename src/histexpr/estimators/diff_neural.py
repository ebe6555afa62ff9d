"""``diff-convnet``: a siamese ConvNet for the change of expression between two cell types.

One model for every pair, like the other differential kinds
(:mod:`histexpr.estimators.diff`): it trains on pairs of the training cell types (all,
up to ``max_pairs``, or the ``pairs`` given), each in both orientations, and applies to
any pair, cell types never trained on included. The network is
:class:`histexpr.models.siamese.DiffConvNet` behind the shared input normaliser; its
predicted change is antisymmetric by construction, ``f(B, A) = -f(A, B)`` exactly.

Training examples are (gene, pair, orientation) rows given as
:class:`~histexpr.training.plan.Gathered` views of the training ``X`` (two row indices
per example), so memory stays at the size of ``X`` whatever the number of pairs; at most
``max_rows`` random examples are fitted. They train through the shared runner
(:class:`~histexpr.estimators.torch_base.TorchEstimator`: checkpoints and
``history.csv`` in ``run_dir``, ``--resume``). Early stopping watches the pairs of the
``valid`` data given to :meth:`fit` (the training pairs whose two cell types it has),
else held-out *genes* of the training data (``validation.holdout_fraction`` of them,
:func:`histexpr.data.splits.holdout_mask`; no gene is in both). Targets: ``(lfc, yA, yB)`` with the auxiliary heads
(loss "mse_aux": MSE of the change + 0.5 x MSE of the two expressions), else ``lfc``.

Explanations (:meth:`attribute_pair`): integrated gradients in the normalised input
space along the path from the midpoint ``M = (zA + zB) / 2`` of the two cells, where
the model predicts exactly 0 (antisymmetry), to ``(zA, zB)``: ``zA(t) = M + t d``,
``zB(t) = M - t d`` with ``d = (zA - zB) / 2``. The attribution of (mark, bin) is
``d * mean_t(dF/dzA - dF/dzB)`` (``ig_steps`` midpoints): the integrated gradients of
:func:`histexpr.explain.attribution.attribute` of
:class:`~histexpr.models.siamese.MidpointPath` with respect to ``d`` from 0, ``M`` held
fixed, i.e. gradient x input
difference of both cells summed per position: positive where the signal raises A over
B. ``base`` is 0 and ``attribution.sum + base`` equals the prediction up to the
Riemann error of ``ig_steps`` steps (the network is piecewise linear in its input, so
the error comes only from the steps crossing a kink); :attr:`metrics_` is not updated
by it.

Saved as a directory (:mod:`histexpr.estimators.bundle`): ``model.json`` (configs,
contract, ``extra``: target note, pairs, output columns), ``weights.safetensors``
(normaliser statistics included), ``normalization.json``, ``metrics.json``,
``history.csv``; no pickles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from histexpr.config import check_range, from_dict, resolve_overrides, to_dict
from histexpr.data.splits import holdout_mask
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators.diff import PairModel, pair_rows, parse_pairs, training_pairs
from histexpr.estimators.torch_base import FitInputs, TorchEstimator
from histexpr.evaluate import fit_metrics
from histexpr.explain.attribution import attribute
from histexpr.models.normalize import InputNormalizer
from histexpr.models.siamese import DiffConvNet, DiffConvNetConfig, MidpointPath, PairPredictor
from histexpr.predict import predict as predict_batched
from histexpr.training.config import ALIASES, TrainConfig
from histexpr.training.members import MemberSpec, Rows
from histexpr.training.plan import Gathered

__all__ = ["DiffConvNetEstimator", "DiffConvNetSettings", "PairSettings"]

#: Output columns of the network (the first is the predicted change).
COLUMNS = {True: ["lfc", "y_a", "y_b"], False: ["lfc"]}


@dataclass(frozen=True)
class PairSettings:
    """Which pair examples ``diff-convnet`` trains on, and how it explains.

    Attributes
    ----------
    pairs : tuple of str
        ``"A:B"`` pairs to train on (default: pairs of the training cell types).
    max_pairs : int
        At most this many random pairs when ``pairs`` is empty (0: all).
    max_rows : int
        At most this many random (gene, pair, orientation) training examples (0: all);
        bounds the time of an epoch.
    ig_steps : int
        Integration steps of the attributions (integrated gradients).
    """

    pairs: tuple[str, ...] = ()
    max_pairs: int = 10
    max_rows: int = 100_000
    ig_steps: int = 64

    def __post_init__(self):
        parse_pairs(self.pairs)
        check_range("max_pairs", self.max_pairs, 0)
        check_range("max_rows", self.max_rows, 0)
        check_range("ig_steps", self.ig_steps, 1)


@dataclass(frozen=True)
class DiffConvNetSettings:
    """Every setting of ``diff-convnet``: pairs, architecture, training."""

    diff: PairSettings = field(default_factory=PairSettings)
    model: DiffConvNetConfig = field(default_factory=DiffConvNetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.train.task != "regression":
            raise ConfigError("diff-convnet fits the log fold change: task must be regression")
        if self.train.optim.mark_dropout > 0:
            raise ConfigError("diff-convnet does not support mark_dropout (it must be 0)")
        if self.train.optim.depth_norm != "none":
            raise ConfigError("diff-convnet does not support depth_norm (it must be none)")
        if self.train.world_size > 1 or self.train.parallel:
            raise ConfigError("diff-convnet trains one model in this process (devices=1, no Dask)")


class DiffConvNetEstimator(TorchEstimator, PairModel):
    """``diff-convnet``: a siamese net behind the pair surface of
    :class:`histexpr.estimators.diff.PairModel`, trained by
    :class:`~histexpr.estimators.torch_base.TorchEstimator`.

    Attributes
    ----------
    config : DiffConvNetSettings
    model_ : PairPredictor or None
    pairs_ : list of (str, str)
    history_ : list of dict
    """

    kind = "diff-convnet"
    config_cls = DiffConvNetSettings

    def __init__(self, config=None):
        TorchEstimator.__init__(self)
        self.config = config if config is not None else DiffConvNetSettings()
        self.pairs_: list[tuple[str, str]] = []

    @property
    def model_cfg(self) -> DiffConvNetConfig:
        return self.config.model

    @property
    def train_cfg(self) -> TrainConfig:
        return self.config.train

    @classmethod
    def create(cls, kind: str = "diff-convnet", overrides=None):
        """A new estimator with ``--set`` overrides: flat (``lr``) or dotted (``model.aux``)."""
        base = DiffConvNetSettings()
        groups = {"diff": base.diff, "model": base.model, "train": base.train}
        return cls(DiffConvNetSettings(**resolve_overrides(groups, overrides, ALIASES)))

    def arch(self) -> dict:
        return {"kind": self.kind, "config": to_dict(self.config.model), "diff": self.pairs_}

    def _build(self) -> PairPredictor:
        c = self.contract_
        net = DiffConvNet(self.config.model, len(c.marks), c.n_bins)
        return PairPredictor(InputNormalizer(len(c.marks)), net)

    def _examples(self, data, genes, pairs, cap, rng):
        """Row indices (ia, ib) and targets (m, k) of every pair on ``genes``, both orientations."""
        keep = np.isin(data.gene, genes)
        ias, ibs = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for a, b in pairs:
            _, ia, ib = pair_rows(data, a, b)
            ok = keep[ia]
            ias += [ia[ok], ib[ok]]
            ibs += [ib[ok], ia[ok]]
        ia, ib = np.concatenate(ias), np.concatenate(ibs)
        if 0 < cap < len(ia):
            rows = np.sort(rng.choice(len(ia), cap, replace=False))
            ia, ib = ia[rows], ib[rows]
        y = data.y.astype(np.float32)
        cols = [y[ia] - y[ib], y[ia], y[ib]] if self.config.model.aux else [y[ia] - y[ib]]
        return ia, ib, np.stack(cols, axis=1)

    # -- the hooks of TorchEstimator -------------------------------------------------
    def _prepare(self, train) -> None:
        c = self.config
        self.pairs_ = training_pairs(
            train.cells, c.diff.pairs, c.diff.max_pairs, c.train.optim.seed
        )
        if len(np.unique(train.gene)) < 2:
            raise HistexprError("diff-convnet needs at least two training genes")

    def _fit_inputs(self, train, valid) -> FitInputs:
        """Pair rows as Gathered views of each data set's ``X``; early stopping on the
        pairs of ``valid`` where it has any, else on held-out genes of ``train``."""
        c, t = self.config, self.config.train
        rng = np.random.default_rng(t.optim.seed)
        vpairs = [] if valid is None or not valid.has_target else self._valid_pairs(valid)
        held = np.zeros(0, train.gene.dtype)
        fit_genes = np.unique(train.gene)
        if not vpairs:
            # the networks' early-stopping draw of the one gene hold-out, from the
            # stream that then samples the pair rows (as diff-convnet always drew)
            out = holdout_mask(fit_genes, t.validation.holdout_fraction, rng, draw="choice")
            if out.any() and (~out).any():
                fit_genes, held = fit_genes[~out], fit_genes[out]
        ia, ib, y = self._examples(train, fit_genes, self.pairs_, c.diff.max_rows, rng)
        n, cap = len(ia), t.validation.valid_max
        if vpairs:
            va, vb, vy = self._examples(valid, np.unique(valid.gene), vpairs, cap, rng)
            sources = {"train": _views(train, ia, ib), "valid": _views(valid, va, vb)}
            vrows = Rows("valid", np.arange(len(va)), vy)
        else:
            va, vb, vy = self._examples(train, held, self.pairs_, cap, rng)
            both = (np.concatenate([ia, va]), np.concatenate([ib, vb]))
            sources = {"train": _views(train, *both), "valid": None}
            # too few genes to hold any out: validate on the training rows
            vrows = (
                Rows("train", n + np.arange(len(va)), vy)
                if len(va)
                else Rows("train", np.arange(n), y)
            )
        loss = "mse_aux" if c.model.aux else "mse"
        spec = MemberSpec("model", "net", loss, Rows("train", np.arange(n), y), vrows)
        metrics = {
            "pairs": [f"{a}:{b}" for a, b in self.pairs_],
            "n_pair_rows": n,
            "n_valid_rows": len(va),
            "n_heldout_genes": len(held),
            "loss": loss,
            "target": f"log fold change of {train.target}",
        }
        return FitInputs(train, valid if vpairs else None, sources, [spec], metrics)

    def _valid_pairs(self, valid) -> list[tuple[str, str]]:
        """The training pairs whose two cell types ``valid`` has (none without its rows)."""
        if not len(valid):
            return []
        return [(a, b) for a, b in self.pairs_ if a in valid.cells and b in valid.cells]

    def _init_weights(self, model, fit) -> None:
        if model.net.head.aux is not None:
            # the own-expression outputs start at the mean expression, not 0
            with torch.no_grad():
                model.net.head.aux.bias.fill_(float(np.mean(fit.train.y)))

    def _scores(self, train, valid) -> dict:
        """Metrics of the predicted change on the pairs of ``valid`` (none without)."""
        pairs = [] if valid is None or not valid.has_target else self._valid_pairs(valid)
        if not pairs:
            return {}
        preds = [self.predict_pair(valid, a, b) for a, b in pairs]
        lfc = np.concatenate([p.observed for p in preds])
        pred = np.concatenate([p.predicted for p in preds])
        return {"n_valid": len(lfc), **fit_metrics(lfc, pred, "regression", "valid")}

    # -- the pair surface ------------------------------------------------------------
    def _predict_pair_rows(self, XA, XB, sign: int = 0):
        # antisymmetric by construction: the orientation is not needed
        out = predict_batched(self._require_fitted(), (XA, XB))
        return out[:, 0]

    def _contributions(self, XA, XB, sign: int = 0):
        """Integrated gradients on the midpoint path (module docstring); base 0."""
        model = self._require_fitted()
        with torch.no_grad():
            za = model.normalizer(torch.as_tensor(XA, dtype=torch.float32))
            zb = model.normalizer(torch.as_tensor(XB, dtype=torch.float32))
        mid, d = 0.5 * (za + zb), 0.5 * (za - zb)
        out = attribute(
            MidpointPath(model.net),
            d.numpy(),
            "integrated_gradients",
            target=0,
            n_steps=self.config.diff.ig_steps,
            side=mid.numpy(),
            ig_method="riemann_middle",
        )
        return out.reshape(len(XA), -1), 0.0

    # -- saving ----------------------------------------------------------------------
    def config_dict(self) -> dict:
        return to_dict(self.config)

    def _header_extra(self) -> dict:
        return {
            "target": self.metrics_.get("target", f"log fold change of {self.contract_.target}"),
            "pairs": [f"{a}:{b}" for a, b in self.pairs_],
            "outputs": COLUMNS[self.config.model.aux],
        }

    @classmethod
    def _from_header(cls, header):
        est = cls(from_dict(DiffConvNetSettings, header.config))
        est.pairs_ = list(parse_pairs(header.extra["pairs"]))
        return est


def _views(data, ia: np.ndarray, ib: np.ndarray) -> tuple[Gathered, Gathered]:
    """Pair examples ``(ia[i], ib[i])`` of ``data`` as (cell A, cell B) views of its ``X``,
    so memory stays at the size of ``X`` whatever the number of pairs."""
    base = torch.from_numpy(np.ascontiguousarray(data.X, dtype=np.float32))
    return Gathered(base, ia), Gathered(base, ib)
