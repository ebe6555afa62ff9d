"""Neural estimators: build, train (with Lightning), predict, save and load.

:class:`NeuralEstimator` gives every neural kind ("convnet", "ensemble",
"celltype-weighted", "deepchrome", "attentivechrome") the estimator surface of
:mod:`histexpr.estimators`. Training itself is in :mod:`histexpr.training.fit`.

A saved model is a directory (see :mod:`histexpr.estimators.bundle`)::

    model.json            kind, {"model": arch config, "train": TrainConfig,
                          "inference": InferenceConfig}, the input contract, task,
                          checksums (see histexpr.estimators.bundle)
    genes.txt             training genes
    weights.safetensors   state dict of the Predictor (normaliser buffers included)
    normalization.json    per-mark log1p mean/std (also in the weights), for people
    metrics.json          per-member results and fit metrics
    history.csv           member, epoch, split (train|valid|trainval), loss
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from histexpr.config import check_choice, find_setting, from_dict, resolve_overrides, to_dict
from histexpr.data.dataset import HistoneDataset, conform_marks
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import bundle
from histexpr.estimators.bundle import InputContract
from histexpr.evaluate import fit_metrics
from histexpr.models import NETWORKS, Predictor, build_model, network, norm_stats
from histexpr.models.convnet import ConvNetConfig, sized_for
from histexpr.models.markmask import mark_missing
from histexpr.predict import PRECISIONS
from histexpr.predict import predict as predict_batched
from histexpr.training.config import ALIASES, TrainConfig
from histexpr.training.members import task_targets
from histexpr.training.plan import read_history, write_history
from histexpr.training.runners import fit_members

__all__ = [
    "InferenceConfig",
    "NeuralEstimator",
    "TrainConfig",
    "defines",
    "neural_configs",
    "predict_values",
]

WEIGHTS = "weights.safetensors"
#: Old flat ``--set`` names of the neural kinds -> the dotted field they mean now.
NEURAL_ALIASES = {**ALIASES, "inference_precision": "inference.precision"}


@dataclass(frozen=True)
class InferenceConfig:
    """How a fitted neural model predicts."""

    precision: str = field(
        default="32",
        metadata={"help": "prediction precision: 32, or bf16 (about 2x faster, ~3 digits)"},
    )

    def __post_init__(self):
        check_choice("inference.precision", self.precision, tuple(PRECISIONS))


def write_network_files(tmp: Path, model: Predictor, marks, metrics: dict, history) -> None:
    """The files every network model directory holds, written into ``tmp``.

    ``weights.safetensors`` (the whole state dict, normaliser included),
    ``normalization.json`` (the per-mark statistics, for people), ``metrics.json`` and
    ``history.csv``. The caller writes ``model.json`` (:func:`bundle.write_header`).
    """
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp / WEIGHTS)
    stats = model.normalizer.stats()
    norm = {
        "transform": "(log1p(max(x, 0)) - mean[mark]) / std[mark]",
        "marks": list(marks),
        "mean": [float(v) for v in stats.mean],
        "std": [float(v) for v in stats.std],
    }
    (tmp / "normalization.json").write_text(json.dumps(norm, indent=2) + "\n")
    bundle.save_metrics(tmp, metrics)
    write_history(tmp / "history.csv", history)


def read_network_files(directory: Path, model: torch.nn.Module) -> tuple[dict, list[dict]]:
    """Load ``weights.safetensors`` into ``model`` (one-line error when they do not fit);
    return the directory's metrics and history rows."""
    from safetensors.torch import load_file

    weights = directory / WEIGHTS
    if not weights.is_file():
        raise HistexprError(f"{directory}: no {WEIGHTS}")
    try:
        model.load_state_dict(load_file(weights))
    except (RuntimeError, OSError) as exc:
        raise HistexprError(f"{weights}: weights do not fit the model ({exc})") from None
    history = directory / "history.csv"
    return bundle.load_metrics(directory), read_history(history) if history.is_file() else []


def neural_configs(kind: str, overrides=None) -> dict:
    """``{"model", "train", "inference"}`` configs of ``kind`` with ``--set`` overrides applied.

    Names are resolved by :func:`histexpr.config.resolve_overrides` (flat, dotted,
    or an alias of :data:`NEURAL_ALIASES`).
    """
    entry = network(kind)
    defaults = {"model": entry.config_cls(), "train": TrainConfig(), "inference": InferenceConfig()}
    return resolve_overrides(defaults, overrides, NEURAL_ALIASES)


def defines(kind: str, name: str) -> bool:
    """Whether ``name`` (flat, dotted or an alias) is a setting of ``kind``."""
    return find_setting(neural_configs(kind), name, NEURAL_ALIASES) is not None


def _v1_configs(kind: str, config: dict) -> dict:
    """The configs of a version-1 model directory (flat train config, n_folds in it)."""
    model = dict(config.get("model", {}))
    train = dict(config.get("train", {}))
    n_folds = train.pop("n_folds", None)
    entry = network(kind)
    if n_folds is not None and "n_folds" in {f.name for f in dataclasses.fields(entry.config_cls)}:
        model["n_folds"] = n_folds
    precision = train.pop("inference_precision", "32")
    return {
        "model": from_dict(entry.config_cls, model),
        "train": resolve_overrides({"train": TrainConfig()}, train, ALIASES)["train"],
        "inference": InferenceConfig(str(precision)),
    }


def predict_values(
    model: Predictor, X: np.ndarray, task: str, batch_size=None, precision=None
) -> np.ndarray:
    """Model output for raw counts ``X`` (n, marks, bins): values or probabilities, (n,)."""
    out = predict_batched(model, X, batch_size=batch_size, precision=precision).reshape(len(X))
    if task == "classification":
        out = 1.0 / (1.0 + np.exp(-out.astype(np.float64)))
    return out.astype(np.float32)


class NeuralEstimator:
    """Estimator wrapper of a neural kind (everything kind-specific comes from its
    registry entry, :func:`histexpr.models.network`).

    Parameters
    ----------
    kind : str
        A key of :data:`histexpr.models.NETWORKS`.
    model_cfg : dataclass, optional
        Architecture config (default: the kind's defaults, i.e. the seed's).
    train_cfg : TrainConfig, optional
    inference_cfg : InferenceConfig, optional

    Attributes
    ----------
    model_ : Predictor or None
        The fitted model (normaliser + network).
    contract_ : InputContract or None
        Marks, bins, bin size, target and training cell types, set by ``fit``/``load``.
    genes_ : list of str
        Training genes.
    metrics_ : dict
    history_ : list of dict
    """

    def __init__(
        self,
        kind: str,
        model_cfg=None,
        train_cfg: TrainConfig | None = None,
        inference_cfg: InferenceConfig | None = None,
    ):
        self.entry = network(kind)
        self.kind = kind
        self.model_cfg = model_cfg if model_cfg is not None else self.entry.config_cls()
        if not isinstance(self.model_cfg, self.entry.config_cls):
            raise ConfigError(
                f"{kind}: model config must be a {self.entry.config_cls.__name__}, "
                f"got {type(self.model_cfg).__name__}"
            )
        self.train_cfg = train_cfg if train_cfg is not None else TrainConfig()
        self.inference_cfg = inference_cfg if inference_cfg is not None else InferenceConfig()
        self.model_: Predictor | None = None
        self.contract_: InputContract | None = None
        self.genes_: list[str] = []
        self.metrics_: dict = {}
        self.history_: list[dict] = []

    @classmethod
    def create(cls, kind: str, overrides=None) -> NeuralEstimator:
        """A new estimator with ``--set`` overrides (dict or "k=v" list) applied."""
        cfgs = neural_configs(kind, overrides)
        return cls(kind, cfgs["model"], cfgs["train"], cfgs["inference"])

    @property
    def marks_(self) -> tuple[str, ...]:
        return () if self.contract_ is None else self.contract_.marks

    @property
    def n_bins_(self) -> int:
        return 0 if self.contract_ is None else self.contract_.n_bins

    @property
    def cells_(self) -> list[str]:
        return [] if self.contract_ is None else list(self.contract_.cells)

    def arch(self) -> dict:
        """The architecture as plain data (see :func:`histexpr.training.runners.build_from_arch`)."""
        return {
            "kind": self.kind,
            "config": to_dict(self.model_cfg),
            "n_marks": len(self.marks_),
            "n_bins": self.n_bins_,
            "n_cells": len(self.cells_),
            "logits": self.train_cfg.task == "classification",
            "mark_dropout": self.train_cfg.optim.mark_dropout,
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
            Continue an interrupted run in ``run_dir`` (refused when its data, cells
            or settings differ, see :mod:`histexpr.training.fingerprint`).
        callbacks : sequence of lightning Callback
            Extra callbacks for every member's Trainer.
        """
        if not train.has_target:
            raise HistexprError("training data has no expression targets (y)")
        contract = InputContract.of(train)
        if valid is not None:
            bundle.check_input(contract, valid, source="validation data")
        self.contract_ = contract
        self.genes_ = sorted(set(train.gene.tolist()))
        if isinstance(self.model_cfg, ConvNetConfig):
            # Widths chosen by data size (histexpr.models.convnet.sized_for), then fixed.
            self.model_cfg = sized_for(self.model_cfg, len(train))
        torch.manual_seed(self.train_cfg.optim.seed)
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
        cap = self.train_cfg.validation.trainval_max
        seen = train
        if 0 < cap < len(train):
            rng = np.random.default_rng(self.train_cfg.optim.seed)
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
        if self.model_ is None or self.contract_ is None:
            raise HistexprError(f"{self.kind} model is not fitted")
        return self.model_

    def predict(self, data: HistoneDataset, batch_size: int | None = None) -> np.ndarray:
        """Predictions, shape (n,) float32: values, or probabilities of "above median"."""
        model = self._require_fitted()
        # By name: reorder, drop extra marks; a mark-dropout model takes missing marks
        # as NaN (histexpr.models.markmask).
        data = conform_marks(data, self.contract_.marks, self.train_cfg.optim.mark_dropout > 0)
        bundle.check_input(self.contract_, data)
        X = mark_missing(data.X, data.marks, data.meta.get("missing_marks", ()))
        return predict_values(
            model, X, self.train_cfg.task, batch_size, precision=self.inference_cfg.precision
        )

    def save(self, directory) -> Path:
        """Write the model directory (atomically, with checksums) and return its path.

        Under DDP only the global-zero process writes (all hold the same model).
        """
        from histexpr.training.ddp import is_global_zero

        model = self._require_fitted()
        directory = Path(directory)
        if not is_global_zero():
            return directory
        with bundle.bundle_dir(directory) as tmp:
            write_network_files(tmp, model, self.marks_, self.metrics_, self.history_)
            config = {
                "model": to_dict(self.model_cfg),
                "train": to_dict(self.train_cfg),
                "inference": to_dict(self.inference_cfg),
            }
            bundle.write_header(
                tmp,
                self.kind,
                config,
                contract=self.contract_,
                task=self.train_cfg.task,
                genes=self.genes_,
            )
        return directory

    @classmethod
    def load(cls, directory) -> NeuralEstimator:
        """Rebuild a saved model from its directory alone (format version 1 or 2)."""
        directory = Path(directory)
        header = bundle.read_header(directory)
        if header.kind not in NETWORKS:
            raise HistexprError(f"{directory}: {header.kind!r} is not a neural model kind")
        try:
            if header.format_version < 2:
                cfgs = _v1_configs(header.kind, header.config)
            else:
                entry = network(header.kind)
                cfgs = {
                    "model": from_dict(entry.config_cls, header.config["model"]),
                    "train": from_dict(TrainConfig, header.config["train"]),
                    "inference": from_dict(InferenceConfig, header.config.get("inference", {})),
                }
        except (KeyError, TypeError, ConfigError) as exc:
            raise HistexprError(f"{directory / bundle.HEADER}: malformed config ({exc})") from None
        est = cls(header.kind, cfgs["model"], cfgs["train"], cfgs["inference"])
        est.contract_ = header.contract
        est.genes_ = list(header.train_genes or ())
        model = est._build()
        est.metrics_, est.history_ = read_network_files(directory, model)
        est.model_ = model.eval()
        return est
