"""The "atlas-convnet" kind: the seed's ConvNet plus the atlas features of the atlas kinds.

Inputs per example: the raw histone counts ``X`` (n, n_marks, n_bins), normalised
by the model's :class:`~histexpr.models.normalize.InputNormalizer`, and the atlas
side features ``S`` (n, n_side) of :class:`histexpr.estimators.atlas.AtlasFeatures`
(the same code as atlas-ridge / atlas-lightgbm: departure of the pooled profile
from the gene's reference profile, the gene's atlas statistics, the
similarity-weighted prior and the histone score), standardised with the training
mean and sd, plus one indicator column (1: the atlas knows the gene). The network
(:mod:`histexpr.models.atlasnet`) joins them before its output layer. Where the
atlas is used the network's output is added to the prior (it is trained on
``y - prior`` there, on ``y`` elsewhere), so training starts from the prior (and from the training mean where the atlas is hidden).

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
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import bundle
from histexpr.estimators.atlas import check_atlas_fields
from histexpr.estimators.atlas_features import AtlasFeatures, cell_metrics, fit_scorer
from histexpr.estimators.atlas_prior import STAT_NAMES
from histexpr.estimators.bundle import InputContract
from histexpr.estimators.histone_features import pooled_log1p
from histexpr.estimators.neural import (
    NEURAL_ALIASES,
    InferenceConfig,
    read_network_files,
    write_network_files,
)
from histexpr.evaluate import fit_metrics
from histexpr.models import InputNormalizer, Predictor, norm_stats
from histexpr.models.atlasnet import AtlasConvNet, AtlasConvNetConfig, build_atlas_net
from histexpr.predict import predict as predict_batched
from histexpr.training.config import TrainConfig
from histexpr.training.members import plan_specs
from histexpr.training.runners import fit_members


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
        if self.train.parallel:
            raise ConfigError("atlas-convnet: members train in this process (no Dask workers)")


def _base(prior: np.ndarray, used: np.ndarray, mean: float) -> np.ndarray:
    """What the network's output is added to: the prior where the atlas is used, else
    the training mean (both targets centred, so the indicator need not carry an offset)."""
    return np.where(used, prior, mean).astype(np.float32)


class AtlasConvNetEstimator:
    """Estimator of "atlas-convnet" (see the module docstring).

    Attributes
    ----------
    config : AtlasConvNetSettings
    model_ : Predictor or None
        Normaliser + :class:`AtlasConvNet` (or its fold ensemble).
    features_ : AtlasFeatures or None
    side_mean_, side_sd_ : np.ndarray, shape (n_side - 1,), float32
        Standardisation of the atlas features (training rows that use the atlas).
    atlas_used_ : np.ndarray (n,) bool, after ``predict``
    prior_ : np.ndarray (n,) float32, after ``predict`` (NaN where the atlas is not used)
    """

    kind = "atlas-convnet"
    config_cls = AtlasConvNetSettings

    def __init__(self, config: AtlasConvNetSettings | None = None):
        self.config = config if config is not None else AtlasConvNetSettings()
        self.model_: Predictor | None = None
        self.contract_: InputContract | None = None
        self.features_: AtlasFeatures | None = None
        self.genes_: list[str] = []
        self.metrics_: dict = {}
        self.history_: list[dict] = []
        self.atlas_used_: np.ndarray | None = None
        self.prior_: np.ndarray | None = None
        self.cell_states_: dict | None = None

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

    # -- the parts -------------------------------------------------------------------
    def _side(self, data, genes, training, cases=None):
        """Standardised side features (n, n_side), atlas-use mask and prior."""
        f = self.features_
        P = pooled_log1p(data.X, f.pool_bins)
        states = None if training else self.cell_states_
        F, order, prior, used = f.features(data, genes, training, P, None, cases, states)
        if not self.has_atlas_:  # the network never saw atlas features: all hidden
            used[:], prior[:] = False, np.nan
        return self._standardise(F, order, used), used, prior

    def _standardise(self, F, order, used):
        """Rows ``order`` of ``F`` standardised, zeros elsewhere, the indicator last."""
        Z = np.zeros((len(used), len(self.side_mean_) + 1), dtype=np.float32)
        if used.any():
            Z[order, :-1] = (F - self.side_mean_) / self.side_sd_
        Z[:, -1] = used
        return Z

    def _build(self, n_side: int) -> Predictor:
        c = self.contract_
        net = build_atlas_net(self.config.model, len(c.marks), c.n_bins, n_side)
        return Predictor(InputNormalizer(len(c.marks)), net)

    def _fit_members(self, model, train, valid, sources, run_dir, resume, callbacks):
        """The members (one network, or one per cell-type fold) on the shared runner."""
        cfg = self.config.train
        plan = "single" if self.config.model.n_folds == 1 else "folds"
        cells = list(self.contract_.cells)
        specs = plan_specs(plan, self.kind, model.net, train, valid, cfg, cells)
        arch = {"kind": self.kind, "config": to_dict(self.config.model)}
        arch["features"] = to_dict(self.config.features)
        return fit_members(
            self.kind,
            model,
            train,
            valid,
            cfg,
            cells,
            Path(run_dir) if run_dir is not None else None,
            resume,
            callbacks,
            arch=arch,
            sources=sources,
            specs=specs,
        )

    # -- the surface -----------------------------------------------------------------
    def fit(self, train: HistoneDataset, valid=None, run_dir=None, resume=False, callbacks=()):
        """Train on ``train`` (early stopping on ``valid``, cell folds or held-out genes)."""
        if not train.has_target:
            raise HistexprError(f"{self.kind}: training data has no expression values")
        f, cfg = self.config.features, self.config.train
        self.contract_ = InputContract.of(train)
        if valid is not None:
            bundle.check_input(self.contract_, valid, source="validation data")
        self.genes_ = sorted(set(train.gene.tolist()))
        genes = canonical_gene_ids(train.gene)
        atlas = resolve_atlas(f.atlas, f.atlas_values, train).without(f.atlas_exclude)
        scorer = fit_scorer(train, f.alpha, f.cv_folds)
        P = pooled_log1p(train.X, f.pool_bins)
        self.features_, cases = AtlasFeatures.fit(
            train, atlas, scorer, f.pool_bins, f.temperature, P
        )
        F, order, prior, used = self.features_.features(train, genes, True, P, None, cases)
        self.has_atlas_ = len(order) > 0
        if self.has_atlas_:
            self.side_mean_ = F.mean(axis=0, dtype=np.float64).astype(np.float32)
            self.side_sd_ = (F.std(axis=0, dtype=np.float64) + 1e-6).astype(np.float32)
        else:
            notice(
                f"{self.kind}: no training gene is in the atlas without its own cell; "
                "the network reads the histone signal only",
                AtlasNotice,
                stacklevel=2,
            )
            n_raw = P.shape[1] + len(STAT_NAMES) + 2  # AtlasFeatures.features' width
            self.side_mean_ = np.zeros(n_raw, np.float32)
            self.side_sd_ = np.ones(n_raw, np.float32)
        S = self._standardise(F, order, used)
        # Copies of the examples of some genes with the atlas hidden: the fallback case.
        rng = np.random.default_rng(cfg.optim.seed)
        known = np.unique(train.gene[used])
        hide = rng.permutation(known)[: round(f.hide_fraction * len(known))]
        copies = np.flatnonzero(used & np.isin(train.gene, hide))
        S_copy = np.zeros((len(copies), S.shape[1]), np.float32)
        rows = np.concatenate([np.arange(len(train)), copies])
        # The network fits y - prior where the atlas is used, y - mean where not:
        # it starts from the prior, a strong predictor, instead of learning to copy it.
        self.base_mean_ = np.float32(np.mean(train.y))
        shown = used[rows] & (np.arange(len(rows)) < len(train))  # the copies hide the atlas
        base = _base(prior[rows], shown, self.base_mean_)
        fit_data = dataclasses.replace(train.subset(rows), y=train.y[rows] - base)
        sources = {"train": (fit_data.X, np.vstack([S, S_copy])), "valid": None}
        if valid is not None and valid.has_target and len(valid):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AtlasNotice)
                vS, vused, vprior = self._side(valid, canonical_gene_ids(valid.gene), False)
            sources["valid"] = (valid.X, vS)
            fit_valid = dataclasses.replace(
                valid, y=valid.y - _base(vprior, vused, self.base_mean_)
            )
        else:
            valid = fit_valid = None
        torch.manual_seed(cfg.optim.seed)
        model = self._build(S.shape[1])
        model.normalizer.set_stats(norm_stats(train.X))
        with torch.no_grad():  # start every member at the mean target
            for m in model.net.modules():
                if isinstance(m, AtlasConvNet):
                    m.head.bias.fill_(float(np.mean(fit_data.y)))
        results, self.history_ = self._fit_members(
            model, fit_data, fit_valid, sources, run_dir, resume, callbacks
        )
        self.model_ = model.cpu().eval()
        self.metrics_ = {
            "kind": self.kind,
            "n_train": len(train),
            "n_hidden_copies": len(copies),
            "members": [r._asdict() for r in results],
            "atlas_cells": len(atlas.cells),
            "atlas_genes": len(atlas.genes),
            "atlas_source": atlas.source,
            **cell_metrics(self.features_, cases),
            "train_atlas_used": int(used.sum()),
        }
        # Training metrics on at most trainval_max examples, as for the neural kinds.
        seen, cap = train, cfg.validation.trainval_max
        if 0 < cap < len(train):
            seen = train.subset(np.sort(rng.choice(len(train), cap, replace=False)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AtlasNotice)
            self.metrics_.update(fit_metrics(seen.y, self.predict(seen), "regression", "train"))
            if valid is not None:
                self.metrics_["n_valid"] = len(valid)
                self.metrics_.update(
                    fit_metrics(valid.y, self.predict(valid), "regression", "valid")
                )
        return self

    def prepare_cells(self, blocks) -> None:
        """First pass over an input read in blocks (see :meth:`AtlasRidge.prepare_cells`)."""
        conform = (conform_marks(b, self.contract_.marks) for b in blocks or ())
        self.cell_states_ = None if blocks is None else self.features_.cell_states(conform)

    def predict(self, data: HistoneDataset, batch_size: int | None = None) -> np.ndarray:
        """Predictions, shape (n,) float32; sets ``atlas_used_`` and ``prior_``."""
        if self.model_ is None or self.contract_ is None:
            raise HistexprError(f"{self.kind} model is not fitted")
        data = conform_marks(data, self.contract_.marks)
        bundle.check_input(self.contract_, data)
        S, used, prior = self._side(data, canonical_gene_ids(data.gene), False)
        out = predict_batched(
            self.model_,
            (data.X, S),
            batch_size=batch_size,
            precision=self.config.inference.precision,
        )
        self.atlas_used_, self.prior_ = used, prior
        return (out.reshape(len(data)) + _base(prior, used, self.base_mean_)).astype(np.float32)

    def side_inputs(self, data: HistoneDataset) -> np.ndarray:
        """The atlas side features ``predict`` feeds the network, shape (n, n_side).

        With them held fixed, gradients of ``model_(X, side)`` are those of the
        histone part of the prediction (what ``explain`` attributes); ``data`` must
        already have the model's marks in order.
        """
        if self.model_ is None:
            raise HistexprError(f"{self.kind} model is not fitted")
        S, self.atlas_used_, self.prior_ = self._side(data, canonical_gene_ids(data.gene), False)
        return S

    # -- saving ----------------------------------------------------------------------
    def save(self, directory) -> Path:
        """Write the model directory (atomically, with checksums) and return its path."""
        if self.model_ is None:
            raise HistexprError(f"{self.kind}: cannot save an unfitted model")
        directory = Path(directory)
        with bundle.bundle_dir(directory) as tmp:
            marks = self.contract_.marks
            write_network_files(tmp, self.model_, marks, self.metrics_, self.history_)
            bundle.write_header(
                tmp, self.kind, to_dict(self.config), contract=self.contract_, genes=self.genes_
            )
            self.features_.save(
                tmp,
                side_mean=self.side_mean_,
                side_sd=self.side_sd_,
                has_atlas=np.bool_(self.has_atlas_),
                base_mean=np.float32(self.base_mean_),
            )
        return directory

    @classmethod
    def load(cls, directory) -> AtlasConvNetEstimator:
        """Rebuild a saved model from its directory alone."""
        directory = Path(directory)
        header = bundle.read_header(directory)
        if header.kind != cls.kind:
            raise HistexprError(f"{directory}: {header.kind!r} is not an {cls.kind} model")
        try:
            est = cls(from_dict(cls.config_cls, header.config))
        except (KeyError, TypeError, ConfigError) as exc:
            raise HistexprError(f"{directory / bundle.HEADER}: malformed config ({exc})") from None
        est.contract_ = header.contract
        est.genes_ = list(header.train_genes or ())
        pool = est.config.features.pool_bins
        est.features_, z = AtlasFeatures.load(directory, pool)
        est.side_mean_, est.side_sd_ = z["side_mean"], z["side_sd"]
        est.has_atlas_ = bool(z["has_atlas"])
        est.base_mean_ = np.float32(z["base_mean"])
        model = est._build(len(est.side_mean_) + 1)
        est.metrics_, est.history_ = read_network_files(directory, model)
        est.model_ = model.eval()
        return est
