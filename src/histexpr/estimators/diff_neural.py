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
``max_rows`` random examples are fitted. Early stopping watches held-out *genes*
(``validation.holdout_fraction`` of them, seeded by ``optim.seed``; no gene is in both):
the ``valid`` data given to :meth:`fit` is not used for it, so a workflow's scores on it
stay untouched by model selection. Targets: ``(lfc, yA, yB)`` with the auxiliary heads
(loss "mse_aux": MSE of the change + 0.5 x MSE of the two expressions), else ``lfc``.

Explanations (:meth:`attribute_pair`): integrated gradients in the normalised input
space along the path from the midpoint ``M = (zA + zB) / 2`` of the two cells, where
the model predicts exactly 0 (antisymmetry), to ``(zA, zB)``: ``zA(t) = M + t d``,
``zB(t) = M - t d`` with ``d = (zA - zB) / 2``. The attribution of (mark, bin) is
``d * mean_t(dF/dzA - dF/dzB)`` (``ig_steps`` midpoints), i.e. gradient x input
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

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from histexpr._runtime import preserved_mode, quiet_lightning, torch_threads
from histexpr.config import check_range, from_dict, resolve_overrides, to_dict
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import bundle
from histexpr.estimators.diff import _Diff, pair_rows, parse_pairs, training_pairs
from histexpr.estimators.neural import read_network_files, write_network_files
from histexpr.models.normalize import InputNormalizer, norm_stats
from histexpr.models.siamese import DiffConvNet, DiffConvNetConfig, PairPredictor
from histexpr.predict import predict as predict_batched
from histexpr.training.config import ALIASES, TrainConfig
from histexpr.training.fit import fit_member
from histexpr.training.members import Member
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
        if self.train.world_size > 1 or self.train.parallel:
            raise ConfigError("diff-convnet trains one model in this process (devices=1, no Dask)")


class DiffConvNetEstimator(_Diff):
    """``diff-convnet``: the surface of :class:`histexpr.estimators.diff._Diff`, a siamese net.

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
        super().__init__(config)
        self.model_: PairPredictor | None = None
        self.pairs_: list[tuple[str, str]] = []
        self.history_: list[dict] = []

    @classmethod
    def create(cls, kind: str, overrides=None):
        """A new estimator with ``--set`` overrides: flat (``lr``) or dotted (``model.aux``)."""
        base = DiffConvNetSettings()
        groups = {"diff": base.diff, "model": base.model, "train": base.train}
        return cls(DiffConvNetSettings(**resolve_overrides(groups, overrides, ALIASES)))

    def _build(self) -> PairPredictor:
        c = self.contract_
        net = DiffConvNet(self.config.model, len(c.marks), c.n_bins)
        return PairPredictor(InputNormalizer(len(c.marks)), net)

    def _examples(self, data, genes, pairs, cap, rng):
        """Row indices (ia, ib) and targets of every pair on ``genes``, both orientations."""
        keep = np.isin(data.gene, genes)
        ias, ibs = [], []
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
        return ia, ib, torch.from_numpy(np.stack(cols, axis=1))

    def fit(self, train, valid=None, run_dir=None):
        """Train on pairs of ``train``'s cell types; early stopping on held-out genes.

        ``valid`` and ``run_dir`` are accepted for the common surface and not used
        (see the module docstring; checkpoints live in a temporary directory).
        """
        self._require_target(train)
        c, t = self.config, self.config.train
        seed = t.optim.seed
        self.pairs_ = training_pairs(train.cells, c.diff.pairs, c.diff.max_pairs, seed)
        genes = np.unique(train.gene)
        if len(genes) < 2:
            raise HistexprError("diff-convnet needs at least two training genes")
        rng = np.random.default_rng(seed)
        n_held = min(len(genes) - 1, max(1, round(t.validation.holdout_fraction * len(genes))))
        held = rng.choice(genes, n_held, replace=False)
        fit_genes = np.setdiff1d(genes, held)
        ia, ib, y = self._examples(train, fit_genes, self.pairs_, c.diff.max_rows, rng)
        va, vb, vy = self._examples(train, held, self.pairs_, t.validation.valid_max, rng)
        torch.manual_seed(seed)
        model = self._build()
        model.normalizer.set_stats(norm_stats(train.X))
        if model.net.aux is not None:
            # the own-expression heads start at the mean expression, not 0
            with torch.no_grad():
                model.net.aux.bias.fill_(float(np.mean(train.y)))
        base = torch.from_numpy(np.ascontiguousarray(train.X, dtype=np.float32))
        loss = "mse_aux" if c.model.aux else "mse"
        member = Member(
            "model",
            model,
            loss,
            ((Gathered(base, ia), Gathered(base, ib)), y),
            ((Gathered(base, va), Gathered(base, vb)), vy),
        )
        # Checkpoints in a temporary directory: the differential workflow passes the
        # model directory itself as run_dir, which save() must find empty or ours.
        with tempfile.TemporaryDirectory() as tmp, torch_threads(t.device.threads):
            with quiet_lightning():
                result, rows = fit_member(
                    member, t, seed, Path(tmp) / "model", max_minutes=t.optim.max_minutes
                )
        self.model_ = model.cpu().eval()
        self.history_ = rows
        self.metrics_ = {
            "kind": self.kind,
            "members": [result._asdict()],
            "pairs": [f"{a}:{b}" for a, b in self.pairs_],
            "n_pair_rows": len(ia),
            "n_valid_rows": len(va),
            "n_heldout_genes": int(n_held),
            "loss": loss,
            "target": f"log fold change of {train.target}",
        }
        return self

    def _require_model(self) -> PairPredictor:
        if self.model_ is None:
            raise HistexprError(f"{self.kind}: model is not fitted")
        return self.model_

    def _predict_pair_rows(self, XA, XB, sign: int = 0):
        # antisymmetric by construction: the orientation is not needed
        out = predict_batched(self._require_model(), (XA, XB))
        return out[:, 0]

    def _contributions(self, XA, XB, sign: int = 0, chunk: int = 256):
        """Integrated gradients on the midpoint path (module docstring); base 0."""
        model = self._require_model()
        steps = self.config.diff.ig_steps
        ts = (np.arange(steps) + 0.5) / steps
        out = np.zeros(XA.shape, dtype=np.float32)
        # eval mode for the passes, every module's flag restored afterwards
        with preserved_mode(model), torch.enable_grad():
            for start in range(0, len(XA), chunk):
                sl = slice(start, start + chunk)
                with torch.no_grad():
                    za = model.normalizer(torch.as_tensor(XA[sl], dtype=torch.float32))
                    zb = model.normalizer(torch.as_tensor(XB[sl], dtype=torch.float32))
                mid, d = 0.5 * (za + zb), 0.5 * (za - zb)
                total = torch.zeros_like(d)
                for t in ts:
                    pa = (mid + float(t) * d).requires_grad_(True)
                    pb = (mid - float(t) * d).requires_grad_(True)
                    lfc = model.net(pa, pb)[:, 0]
                    ga, gb = torch.autograd.grad(lfc.sum(), (pa, pb))
                    total += ga - gb
                out[sl] = (d * total / steps).numpy()
        return out.reshape(len(XA), -1), 0.0

    def save(self, directory) -> Path:
        model = self._require_model()
        extra = {
            "target": self.metrics_.get("target", f"log fold change of {self.contract_.target}"),
            "pairs": [f"{a}:{b}" for a, b in self.pairs_],
            "outputs": COLUMNS[self.config.model.aux],
        }
        with bundle.bundle_dir(directory) as tmp:
            # the normaliser (its statistics in normalization.json) serves both cells
            marks = self.contract_.marks
            write_network_files(tmp, model, marks, self.metrics_, self.history_)
            bundle.write_header(
                tmp,
                self.kind,
                to_dict(self.config),
                extra=extra,
                contract=self.contract_,
                genes=self.genes_,
            )
        return Path(directory)

    @classmethod
    def load(cls, directory):

        directory = Path(directory)
        header = bundle.read_header(directory)
        try:
            est = cls(from_dict(DiffConvNetSettings, header.config))
            pairs = list(parse_pairs(header.extra["pairs"]))
        except (KeyError, TypeError, ConfigError) as exc:
            raise HistexprError(f"{directory / bundle.HEADER}: malformed config ({exc})") from None
        est.contract_, est.genes_ = header.contract, list(header.train_genes or ())
        est.pairs_ = pairs
        model = est._build()
        est.metrics_, est.history_ = read_network_files(directory, model)
        est.model_ = model.eval()
        return est
