"""Neural estimators: build, train (with Lightning), predict, save and load.

:class:`NeuralEstimator` gives every neural kind ("convnet", "ensemble",
"celltype-weighted", "deepchrome", "attentivechrome") the estimator surface of
:mod:`histexpr.estimators`. Training itself is in :mod:`histexpr.training.fit`.

A saved model is a directory (see :mod:`histexpr.estimators.bundle`)::

    model.json            kind, {"model": arch config, "train": TrainConfig}, marks, bins,
                          extra: {"cells": training cell types, "task": ...}
    weights.safetensors   state dict of the Predictor (normaliser buffers included)
    normalization.json    per-mark log1p mean/std (also in the weights), for people
    metrics.json          per-member results and fit metrics
    history.csv           member, epoch, split (train|valid|trainval), loss
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from histexpr.atomic import atomic_dir
from histexpr.config import from_dict, override, parse_overrides, to_dict
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import bundle
from histexpr.evaluate import fit_metrics
from histexpr.models import MODEL_CONFIGS, Predictor, build_model, norm_stats
from histexpr.predict import predict as predict_batched
from histexpr.training.config import TrainConfig
from histexpr.training.members import task_targets
from histexpr.training.plan import read_history, write_history
from histexpr.training.runners import fit_members

__all__ = ["NeuralEstimator", "TrainConfig", "predict_values", "split_overrides"]

WEIGHTS = "weights.safetensors"


def config_fields(kind: str) -> tuple[set[str], set[str]]:
    """Field names of ``kind``'s model config and of :class:`TrainConfig`."""
    import dataclasses

    if kind not in MODEL_CONFIGS:
        raise ConfigError(f"{kind!r} is not a neural model kind")
    return (
        {f.name for f in dataclasses.fields(MODEL_CONFIGS[kind])},
        {f.name for f in dataclasses.fields(TrainConfig)},
    )


def split_overrides(kind: str, overrides) -> tuple[dict, dict]:
    """Route ``field=value`` overrides to the model config or :class:`TrainConfig`."""
    model_fields, train_fields = config_fields(kind)
    overrides = parse_overrides(overrides)
    if not overrides:
        return {}, {}
    unknown = set(overrides) - model_fields - train_fields
    if unknown:
        raise ConfigError(
            f"unknown field(s) for {kind}: {', '.join(sorted(unknown))}; known: "
            f"{', '.join(sorted(model_fields | train_fields))}"
        )
    model = {k: v for k, v in overrides.items() if k in model_fields}
    train = {k: v for k, v in overrides.items() if k not in model_fields}
    return model, train


def predict_values(
    model: Predictor, X: np.ndarray, task: str, batch_size=None, precision=None
) -> np.ndarray:
    """Model output for raw counts ``X`` (n, marks, bins): values or probabilities, (n,)."""
    out = predict_batched(model, X, batch_size=batch_size, precision=precision).reshape(len(X))
    if task == "classification":
        out = 1.0 / (1.0 + np.exp(-out.astype(np.float64)))
    return out.astype(np.float32)


class NeuralEstimator:
    """Estimator wrapper of a neural kind.

    Parameters
    ----------
    kind : str
        A key of :data:`histexpr.models.MODEL_CONFIGS`.
    model_cfg : dataclass, optional
        Architecture config (default: the kind's defaults, i.e. the seed's).
    train_cfg : TrainConfig, optional

    Attributes
    ----------
    model_ : Predictor or None
        The fitted model (normaliser + network).
    marks_, n_bins_, cells_ :
        Input contract and training cell types, set by ``fit``/``load``.
    metrics_ : dict
    history_ : list of dict
    """

    def __init__(self, kind: str, model_cfg=None, train_cfg: TrainConfig | None = None):
        if kind not in MODEL_CONFIGS:
            raise ConfigError(f"{kind!r} is not a neural model kind")
        self.kind = kind
        self.model_cfg = model_cfg if model_cfg is not None else MODEL_CONFIGS[kind]()
        self.train_cfg = train_cfg if train_cfg is not None else TrainConfig()
        self.model_: Predictor | None = None
        self.marks_: tuple[str, ...] = ()
        self.n_bins_ = 0
        self.cells_: list[str] = []
        self.metrics_: dict = {}
        self.history_: list[dict] = []

    @classmethod
    def create(cls, kind: str, overrides=None) -> NeuralEstimator:
        """A new estimator with fields of either config overridden (dict or "k=v" list)."""
        model_over, train_over = split_overrides(kind, overrides)
        return cls(
            kind, override(MODEL_CONFIGS[kind](), model_over), override(TrainConfig(), train_over)
        )

    def arch(self) -> dict:
        """The architecture as plain data (see :func:`histexpr.training.runners.build_from_arch`)."""
        return {
            "kind": self.kind,
            "config": to_dict(self.model_cfg),
            "n_marks": len(self.marks_),
            "n_bins": self.n_bins_,
            "n_folds": self.train_cfg.n_folds,
            "n_cells": len(self.cells_),
            "logits": self.train_cfg.task == "classification",
        }

    def _build(self) -> Predictor:
        arch = self.arch()
        return build_model(
            self.kind,
            self.model_cfg,
            **{k: v for k, v in arch.items() if k not in ("kind", "config")},
        )

    def fit(
        self,
        train: HistoneDataset,
        valid: HistoneDataset | None = None,
        run_dir=None,
        resume: bool = False,
        callbacks=(),
    ) -> NeuralEstimator:
        """Train on ``train`` (early stopping on ``valid`` or on held-out genes).

        Parameters
        ----------
        train : HistoneDataset
            Training data with targets.
        valid : HistoneDataset, optional
            Validation data (early stopping of single-member kinds; reported metrics).
        run_dir : path, optional
            Where checkpoints and ``history.csv`` go (default: a temporary directory).
        resume : bool
            Continue an interrupted run in ``run_dir``.
        callbacks : sequence of lightning Callback
            Extra callbacks for every member's Trainer.
        """
        if not train.has_target:
            raise HistexprError("training data has no expression targets (y)")
        if valid is not None and (valid.marks != train.marks or valid.n_bins != train.n_bins):
            raise HistexprError("validation data has other marks or bins than the training data")
        self.marks_, self.n_bins_, self.cells_ = tuple(train.marks), train.n_bins, train.cells
        if self.kind == "ensemble" and len(self.cells_) < self.train_cfg.n_folds:
            raise ConfigError(
                f"ensemble: {len(self.cells_)} training cell type(s) for "
                f"{self.train_cfg.n_folds} folds"
            )
        torch.manual_seed(self.train_cfg.seed)
        model = self._build()
        model.normalizer.set_stats(norm_stats(train.X))
        results, rows = fit_members(
            self.kind,
            model,
            train,
            valid,
            self.train_cfg,
            self.cells_,
            Path(run_dir) if run_dir is not None else None,
            resume,
            callbacks,
            arch=self.arch(),
        )
        self.model_ = model.cpu().eval()
        self.history_ = rows
        task = self.train_cfg.task
        # Training metrics on at most trainval_max examples: on large data a full
        # pass would cost as much as a training epoch.
        cap = self.train_cfg.trainval_max
        seen = train
        if 0 < cap < len(train):
            rng = np.random.default_rng(self.train_cfg.seed)
            seen = train.subset(np.sort(rng.choice(len(train), cap, replace=False)))
        self.metrics_ = {
            "kind": self.kind,
            "task": task,
            "n_train": len(train),
            "n_train_metrics": len(seen),
            "members": [r._asdict() for r in results],
            **fit_metrics(task_targets(seen, task), self.predict(seen), task, "train"),
        }
        if valid is not None and valid.has_target:
            self.metrics_["n_valid"] = len(valid)
            self.metrics_.update(
                fit_metrics(task_targets(valid, task), self.predict(valid), task, "valid")
            )
        return self

    def _require_fitted(self) -> Predictor:
        if self.model_ is None:
            raise HistexprError(f"{self.kind} model is not fitted")
        return self.model_

    def _header(self) -> bundle.BundleHeader:
        return bundle.BundleHeader(self.kind, {}, self.marks_, self.n_bins_)

    def predict(self, data: HistoneDataset, batch_size: int | None = None) -> np.ndarray:
        """Predictions, shape (n,) float32: values, or probabilities of "above median"."""
        model = self._require_fitted()
        bundle.check_input(self._header(), data.marks, data.n_bins)
        return predict_values(
            model,
            data.X,
            self.train_cfg.task,
            batch_size,
            precision=self.train_cfg.inference_precision,
        )

    def save(self, directory) -> Path:
        """Write the model directory (atomically) and return its path.

        Under DDP only the global-zero process writes (all hold the same model).
        """
        from safetensors.torch import save_file

        from histexpr.training.ddp import is_global_zero

        model = self._require_fitted()
        directory = Path(directory)
        if not is_global_zero():
            return directory
        stats = model.normalizer.stats()
        with atomic_dir(directory) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(state, tmp / WEIGHTS)
            config = {"model": to_dict(self.model_cfg), "train": to_dict(self.train_cfg)}
            bundle.write_header(
                tmp,
                self.kind,
                config,
                self.marks_,
                self.n_bins_,
                extra={"cells": list(self.cells_), "task": self.train_cfg.task},
            )
            norm = {
                "transform": "(log1p(max(x, 0)) - mean[mark]) / std[mark]",
                "marks": list(self.marks_),
                "mean": [float(v) for v in stats.mean],
                "std": [float(v) for v in stats.std],
            }
            (tmp / "normalization.json").write_text(json.dumps(norm, indent=2) + "\n")
            bundle.save_metrics(tmp, self.metrics_)
            write_history(tmp / "history.csv", self.history_)
        return directory

    @classmethod
    def load(cls, directory) -> NeuralEstimator:
        """Rebuild a saved model from its directory alone."""
        from safetensors.torch import load_file

        directory = Path(directory)
        header = bundle.read_header(directory)
        if header.kind not in MODEL_CONFIGS:
            raise HistexprError(f"{directory}: {header.kind!r} is not a neural model kind")
        try:
            est = cls(
                header.kind,
                from_dict(MODEL_CONFIGS[header.kind], header.config["model"]),
                from_dict(TrainConfig, header.config["train"]),
            )
        except (KeyError, TypeError) as exc:
            raise HistexprError(f"{directory / bundle.HEADER}: malformed config ({exc})") from None
        est.marks_, est.n_bins_ = header.marks, header.n_bins
        est.cells_ = [str(c) for c in header.extra.get("cells", [])]
        model = est._build()
        weights = directory / WEIGHTS
        if not weights.is_file():
            raise HistexprError(f"{directory}: no {WEIGHTS}")
        try:
            model.load_state_dict(load_file(weights))
        except (RuntimeError, OSError) as exc:
            raise HistexprError(f"{weights}: weights do not fit the model ({exc})") from None
        est.model_ = model.eval()
        est.metrics_ = bundle.load_metrics(directory)
        history = directory / "history.csv"
        est.history_ = read_history(history) if history.is_file() else []
        return est
