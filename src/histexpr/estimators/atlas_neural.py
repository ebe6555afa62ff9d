"""The "atlas-convnet" kind: the seed's ConvNet plus the atlas features of the atlas kinds.

Inputs per example: the raw histone counts ``X`` (n, n_marks, n_bins), normalised
by the model's :class:`~histexpr.models.normalize.InputNormalizer`, and the atlas
side features ``S`` (n, n_side) of :class:`histexpr.estimators.atlas.AtlasFeatures`
(the same code as atlas-ridge / atlas-lightgbm: departure of the pooled profile
from the gene's reference profile, the gene's atlas statistics, the
similarity-weighted prior and the histone score), standardised with the training
mean and sd, plus one indicator column (1: the atlas knows the gene), and last the
prior (the training mean where the atlas is not used). The network
(:mod:`histexpr.models.atlasnet`) joins the features and the histone embedding
before its output layer and adds the prior to that output inside ``forward``, so
training starts from the prior (and from the training mean where the atlas is
hidden) and learns the correction.

No leakage, as in the other atlas kinds: while training each example's features
come from the atlas without its own cell's column and from reference profiles
without its own cell (leave-one-cell-out); while predicting, a cell's own column
is excluded (with an :class:`~histexpr.data.atlas.AtlasNotice`).

Genes absent from the atlas: the side features are zero (the training mean) and the
indicator 0. The network learns that case from training copies of the examples
of a random ``hide_fraction`` of the genes with the atlas hidden. One network
thus serves both cases and shares its histone trunk between them, instead of a
second, separately trained histone-only model (twice the training time, and a
model directory holding two networks). ``atlas_used_`` and ``prior_``: per example,
after ``predict``. Cell states from all of a cell's genes: as for atlas-ridge.

Never further from the prior than it warrants: as in the other atlas kinds, each
cell type's correction (the prediction minus the prior) is scaled by the guard of
:mod:`histexpr.estimators.atlas_guard` (``guard.npz``; its prior-error factor, the
network's own output being the residual). ``guard_scales_`` after ``predict``.

A saved model is a directory (:mod:`histexpr.estimators.bundle`): ``model.json``
(config groups "model", "train", "inference", "features"), ``weights.safetensors``,
``atlas.npz``, ``state.npz`` (reference profiles, temperature, side-feature mean
and sd), ``scorer/`` (the ridge behind the histone score), ``normalization.json``,
``metrics.json`` and ``history.csv``. No pickles.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from histexpr._runtime import notice
from histexpr.config import check_range, find_setting, from_dict, resolve_overrides, to_dict
from histexpr.data.atlas import AtlasNotice, resolve_atlas
from histexpr.data.dataset import HistoneDataset, canonical_gene_ids, conform_marks
from histexpr.errors import ConfigError
from histexpr.estimators import bundle
from histexpr.estimators.atlas_config import check_atlas_fields
from histexpr.estimators.atlas_features import AtlasFeatures, cell_metrics, fit_scorer
from histexpr.estimators.atlas_guard import PriorGuard, shrink_to_prior
from histexpr.estimators.atlas_prior import STAT_NAMES
from histexpr.estimators.histone_features import pooled_log1p
from histexpr.estimators.torch_base import (
    NEURAL_ALIASES,
    FitInputs,
    InferenceConfig,
    TorchEstimator,
)
from histexpr.models import InputNormalizer, Predictor
from histexpr.models.atlasnet import AtlasConvNetConfig, build_atlas_net
from histexpr.predict import predict as predict_batched
from histexpr.training.config import TrainConfig


@dataclass(frozen=True)
class AtlasFeatureConfig:
    """How the side features are made (fields as in :class:`AtlasRidgeConfig`).

    Attributes
    ----------
    atlas : str
        "" (training targets), "roadmap" or a table path.
    atlas_values : str
        rpkm or transformed (tables only).
    atlas_exclude : tuple of str
        Cell columns always dropped from the atlas.
    temperature : float
        Softmax temperature of the prior (0: chosen per cell type from its genes).
    pool_bins : int
        Bins per mark of the pooled histone profile.
    alpha : float or None
        Ridge penalty of the histone score (None: chosen by CV over genes).
    cv_folds : int
        Gene folds of that CV.
    hide_fraction : float
        Fraction of training genes whose examples are also trained with the atlas
        hidden (how the network learns genes absent from the atlas).
    """

    atlas: str = ""
    atlas_values: str = "rpkm"
    atlas_exclude: tuple[str, ...] = ()
    temperature: float = 0.0
    pool_bins: int = 10
    alpha: float | None = None
    cv_folds: int = 5
    hide_fraction: float = 0.5

    def __post_init__(self):
        check_atlas_fields(self)
        check_range("hide_fraction", self.hide_fraction, 0, 1, high_open=True)


@dataclass(frozen=True)
class AtlasConvNetSettings:
    """Every setting of "atlas-convnet": architecture, training, inference, features."""

    model: AtlasConvNetConfig = field(default_factory=AtlasConvNetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    features: AtlasFeatureConfig = field(default_factory=AtlasFeatureConfig)

    def __post_init__(self):
        if self.train.task != "regression":
            raise ConfigError("atlas-convnet: only task=regression (the prior is an expression)")
        if self.train.optim.mark_dropout > 0:
            raise ConfigError("atlas-convnet: mark_dropout is not supported")
        if self.train.optim.depth_norm != "none":
            raise ConfigError("atlas-convnet: depth_norm is not supported (it must be none)")
        if self.train.parallel:
            raise ConfigError("atlas-convnet: members train in this process (no Dask workers)")


def _base(prior: np.ndarray, used: np.ndarray, mean: float) -> np.ndarray:
    """What the network's output starts from (its last atlas input column): the prior
    where the atlas is used, else the training mean."""
    return np.where(used, prior, mean).astype(np.float32)


class AtlasConvNetEstimator(TorchEstimator):
    """Estimator of "atlas-convnet" (see the module docstring).

    Attributes
    ----------
    config : AtlasConvNetSettings
    model_ : Predictor or None
        Normaliser + :class:`AtlasConvNet` (or a fold ensemble of them).
    features_ : AtlasFeatures or None
    side_mean_, side_sd_ : np.ndarray, shape (n_side - 1,), float32
        Standardisation of the atlas features (training rows that use the atlas).
    atlas_used_ : np.ndarray (n,) bool, after ``predict``
    prior_ : np.ndarray (n,) float32, after ``predict`` (NaN where the atlas is not used)
    """

    kind = "atlas-convnet"
    config_cls = AtlasConvNetSettings

    def __init__(self, config: AtlasConvNetSettings | None = None):
        super().__init__()
        self.config = config if config is not None else AtlasConvNetSettings()
        self.features_: AtlasFeatures | None = None
        self.atlas_used_: np.ndarray | None = None
        self.prior_: np.ndarray | None = None
        self.cell_states_: dict | None = None
        #: Per-cell shrinkage of the correction towards the prior (:mod:`atlas_guard`).
        self.guard_: PriorGuard | None = None
        self.guard_scales_: dict | None = None

    @property
    def model_cfg(self) -> AtlasConvNetConfig:
        return self.config.model

    @property
    def train_cfg(self) -> TrainConfig:
        return self.config.train

    @property
    def inference_cfg(self) -> InferenceConfig:
        return self.config.inference

    @classmethod
    def _groups(cls) -> dict:
        d = cls.config_cls()
        return {f.name: getattr(d, f.name) for f in dataclasses.fields(d)}

    @classmethod
    def create(cls, kind: str = "atlas-convnet", overrides=None) -> AtlasConvNetEstimator:
        """A new estimator with ``--set`` overrides (flat, dotted or neural aliases)."""
        groups = cls._groups()
        return cls(cls.config_cls(**resolve_overrides(groups, overrides, NEURAL_ALIASES)))

    @classmethod
    def defines(cls, name: str) -> bool:
        """Whether ``name`` (flat, dotted or a neural alias) is one of its settings."""
        return find_setting(cls._groups(), name, NEURAL_ALIASES) is not None

    @property
    def atlas_(self):
        return None if self.features_ is None else self.features_.atlas

    @atlas_.setter
    def atlas_(self, atlas) -> None:
        self.features_.atlas = atlas

    # -- the atlas input -------------------------------------------------------------
    def _side(self, data, genes, training, cases=None):
        """The network's atlas input (n, n_side + 1), atlas-use mask and prior."""
        f = self.features_
        P = pooled_log1p(data.X, f.pool_bins)
        states = None if training else self.cell_states_
        F, order, prior, used = f.features(data, genes, training, P, None, cases, states)
        if not self.has_atlas_:  # the network never saw atlas features: all hidden
            used[:], prior[:] = False, np.nan
        return self._atlas_input(F, order, used, prior), used, prior

    def _atlas_input(self, F, order, used, prior):
        """Rows ``order`` of ``F`` standardised (zeros elsewhere), the indicator, then
        the prior the network adds to its output (the training mean where unused)."""
        Z = np.zeros((len(used), len(self.side_mean_) + 2), dtype=np.float32)
        if used.any():
            Z[order, :-2] = (F - self.side_mean_) / self.side_sd_
        Z[:, -2] = used
        Z[:, -1] = _base(prior, used, self.base_mean_)
        return Z

    # -- the hooks of TorchEstimator -------------------------------------------------
    def _prepare(self, train: HistoneDataset) -> None:
        """The atlas, the histone scorer and the atlas features' standardisation."""
        f = self.config.features
        atlas = resolve_atlas(f.atlas, f.atlas_values, train).without(f.atlas_exclude)
        scorer = fit_scorer(train, f.alpha, f.cv_folds)
        P = pooled_log1p(train.X, f.pool_bins)
        self.features_, self._cases = AtlasFeatures.fit(
            train, atlas, scorer, f.pool_bins, f.temperature, P
        )
        genes = canonical_gene_ids(train.gene)
        self._train_side = self.features_.features(train, genes, True, P, None, self._cases)
        F, order = self._train_side[:2]
        self.has_atlas_ = len(order) > 0
        if self.has_atlas_:
            self.side_mean_ = F.mean(axis=0, dtype=np.float64).astype(np.float32)
            self.side_sd_ = (F.std(axis=0, dtype=np.float64) + 1e-6).astype(np.float32)
        else:
            notice(
                f"{self.kind}: no training gene is in the atlas without its own cell; "
                "the network reads the histone signal only",
                AtlasNotice,
                stacklevel=3,
            )
            n_raw = P.shape[1] + len(STAT_NAMES) + 2  # AtlasFeatures.features' width
            self.side_mean_ = np.zeros(n_raw, np.float32)
            self.side_sd_ = np.ones(n_raw, np.float32)
        self.base_mean_ = np.float32(np.mean(train.y))

    def _fit_inputs(self, train, valid) -> FitInputs:
        """Training rows plus hidden-atlas copies of some genes' rows; the members by
        the kind's fold plan."""
        f, cfg = self.config.features, self.config.train
        F, order, prior, used = self._train_side
        self._train_side = None  # only needed here
        # Copies of the examples of some genes with the atlas hidden: the fallback case.
        rng = np.random.default_rng(cfg.optim.seed)
        known = np.unique(train.gene[used])
        hide = rng.permutation(known)[: round(f.hide_fraction * len(known))]
        copies = np.flatnonzero(used & np.isin(train.gene, hide))
        blank, departure = self._blank_copies(F, used, train.gene, np.setdiff1d(known, hide), rng)
        n, m = len(train), len(train) + len(copies)
        rows = np.concatenate([np.arange(n), copies, blank])
        shown = used[rows].copy()
        shown[n:m] = False  # the copies that hide the atlas
        A = self._atlas_input(F, order, used, prior)[rows]
        A[n:m] = 0.0  # hidden: no features, no indicator, the mean as prior
        A[m:, departure] = -self.side_mean_[departure] / self.side_sd_[departure]
        A[:, -1] = _base(prior[rows], shown, self.base_mean_)
        fit_data = train.subset(rows)
        sources = {"train": (fit_data.X, A), "valid": None}
        fit_valid = None
        if valid is not None and valid.has_target and len(valid):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AtlasNotice)
                vA = self._side(valid, canonical_gene_ids(valid.gene), False)[0]
            sources["valid"], fit_valid = (valid.X, vA), valid
        plan = "single" if self.config.model.n_folds == 1 else "folds"
        metrics = {
            "n_hidden_copies": len(copies),
            "n_departure_copies": len(blank),
            "atlas_cells": len(self.features_.atlas.cells),
            "atlas_genes": len(self.features_.atlas.genes),
            "atlas_source": self.features_.atlas.source,
            **cell_metrics(self.features_, self._cases),
            "train_atlas_used": int(used.sum()),
        }
        return FitInputs(fit_data, fit_valid, sources, plan, metrics)

    def _blank_copies(self, F, used, gene, genes, rng):
        """Rows to copy with the departure block unknown (zeros), and the block's columns.

        The departure is unknown for a gene no training cell has (an external atlas can
        hold one); a network that never saw it unknown reads the zeros as "no
        departure" (:mod:`~histexpr.estimators.atlas_residual` says more). So the rows
        of a ``hide_fraction`` of ``genes`` are also trained with the block zeroed; none
        with an atlas of the training targets or without any departure.
        """
        departure = self.features_.departure(F)
        if self.features_.atlas.source == "train" or not F[:, departure].any():
            return np.zeros(0, np.int64), departure
        pick = rng.permutation(genes)[: round(self.config.features.hide_fraction * len(genes))]
        return np.flatnonzero(used & np.isin(gene, pick)), departure

    def _build(self) -> Predictor:
        c = self.contract_
        net = build_atlas_net(self.config.model, len(c.marks), c.n_bins, len(self.side_mean_) + 1)
        return Predictor(InputNormalizer(len(c.marks)), net)

    def _member_spec(self, spec, fit: FitInputs):
        """Each member's correction starts at the mean residual of the prior on its rows."""
        rows = spec.train.index
        resid = torch.from_numpy(fit.train.y[rows] - fit.sources["train"][1][rows, -1])
        return spec._replace(start=float(resid.mean()))

    def arch(self) -> dict:
        return {
            "kind": self.kind,
            "config": to_dict(self.config.model),
            "features": to_dict(self.config.features),
        }

    def _scores(self, train, valid) -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AtlasNotice)
            return super()._scores(train, valid)

    # -- the surface -----------------------------------------------------------------
    def prepare_cells(self, blocks) -> None:
        """First pass over an input read in blocks (see :meth:`AtlasRidge.prepare_cells`)."""
        conform = (conform_marks(b, self.contract_.marks) for b in blocks or ())
        self.cell_states_ = None if blocks is None else self.features_.cell_states(conform)

    def _after_fit(self, train: HistoneDataset) -> dict:
        """The guard from the training cells' states (kept from ``_prepare``)."""
        cases, self._cases = self._cases, None
        if not self.has_atlas_:
            return {}
        self.guard_ = PriorGuard.fit(self.features_.atlas, cases)
        return self.guard_.metrics()

    def predict(self, data: HistoneDataset, batch_size: int | None = None) -> np.ndarray:
        """Predictions, shape (n,) float32; sets ``atlas_used_``, ``prior_`` and
        ``guard_scales_``."""
        model = self._require_fitted()
        data = conform_marks(data, self.contract_.marks)
        bundle.check_input(self.contract_, data)
        genes = canonical_gene_ids(data.gene)
        cases = list(self.features_.cases(data, genes, False, self.cell_states_))
        A, self.atlas_used_, self.prior_ = self._side(data, genes, False, cases)
        out = predict_batched(model, (data.X, A), batch_size=batch_size, precision=self.precision)
        out = out.reshape(len(data)).astype(np.float32)
        self.guard_scales_ = None
        if self.guard_ is not None and self.has_atlas_:
            scales, self.guard_scales_ = self.guard_.row_scales(
                self.features_.atlas, cases, len(data)
            )
            out = shrink_to_prior(self.prior_, out, scales)
        return out

    def side_inputs(self, data: HistoneDataset) -> np.ndarray:
        """The atlas input ``predict`` feeds the network, shape (n, n_side + 1).

        With it held fixed, gradients of ``model_(X, atlas)`` are those of the histone
        part of the prediction (the prior is an input, added inside the network);
        ``data`` must already have the model's marks in order.
        """
        self._require_fitted()
        A, self.atlas_used_, self.prior_ = self._side(data, canonical_gene_ids(data.gene), False)
        return A

    # -- saving ----------------------------------------------------------------------
    def config_dict(self) -> dict:
        return to_dict(self.config)

    def _save_state(self, tmp: Path) -> None:
        self.features_.save(
            tmp,
            side_mean=self.side_mean_,
            side_sd=self.side_sd_,
            has_atlas=np.bool_(self.has_atlas_),
            base_mean=np.float32(self.base_mean_),
        )
        if self.guard_ is not None:
            self.guard_.save(tmp)

    @classmethod
    def _from_header(cls, header) -> AtlasConvNetEstimator:
        return cls(from_dict(cls.config_cls, header.config))

    def _load_state(self, directory: Path, header) -> None:
        self.features_, z = AtlasFeatures.load(directory, self.config.features.pool_bins)
        self.side_mean_, self.side_sd_ = z["side_mean"], z["side_sd"]
        self.has_atlas_ = bool(z["has_atlas"])
        self.base_mean_ = np.float32(z["base_mean"])
        self.guard_ = PriorGuard.load(directory)  # None: saved before the guard
