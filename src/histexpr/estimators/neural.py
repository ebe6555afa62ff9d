"""Neural estimators of the registered networks: build, train, predict, save and load.

:class:`NeuralEstimator` gives every registered network kind ("convnet", "ensemble",
"celltype-weighted", "deepchrome", "attentivechrome") the estimator surface of
:mod:`histexpr.estimators`; everything kind-specific comes from its registry entry
(:func:`histexpr.models.network`), everything shared from
:class:`~histexpr.estimators.torch_base.TorchEstimator` (training, metrics, the model
directory). A saved model is a directory (see :mod:`histexpr.estimators.bundle`)::

    model.json            kind, {"model": arch config, "train": TrainConfig,
                          "inference": InferenceConfig}, the input contract, task,
                          checksums (see histexpr.estimators.bundle)
    genes.txt             training genes
    weights.safetensors   state dict of the Predictor (normaliser buffers included)
    normalization.json    per-mark log1p mean/std (also in the weights), for people
    metrics.json          per-member results and fit metrics
    history.csv           member, epoch, split (train|valid|trainval), loss
    depth.npz             with depth_norm="cell": the training cells' depths and the
                          reference depth (histexpr.data.depth)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from histexpr.config import find_setting, from_dict, resolve_overrides, to_dict
from histexpr.data.dataset import HistoneDataset, conform_marks
from histexpr.data.depth import CellDepths, depth_factors, rescale
from histexpr.errors import ConfigError
from histexpr.estimators import bundle
from histexpr.estimators.torch_base import (
    NEURAL_ALIASES,
    FitInputs,
    InferenceConfig,
    TorchEstimator,
    read_network_files,
    write_network_files,
)
from histexpr.models import Predictor, build_model, network
from histexpr.models.convnet import ConvNetConfig, sized_for
from histexpr.models.markmask import mark_missing
from histexpr.predict import predict as predict_batched
from histexpr.training.config import ALIASES, TrainConfig

__all__ = [
    "NEURAL_ALIASES",
    "InferenceConfig",
    "NeuralEstimator",
    "TrainConfig",
    "defines",
    "neural_configs",
    "predict_values",
    "read_network_files",
    "write_network_files",
]


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


class NeuralEstimator(TorchEstimator):
    """Estimator of a registered network kind.

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
    contract_, genes_, metrics_, history_
        See :class:`~histexpr.estimators.torch_base.TorchEstimator`.
    """

    def __init__(
        self,
        kind: str,
        model_cfg=None,
        train_cfg: TrainConfig | None = None,
        inference_cfg: InferenceConfig | None = None,
    ):
        super().__init__()
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
        #: With ``depth_norm="cell"``: training cell -> depth per mark, and the reference.
        self.cell_depths_: dict | None = None
        self.depth_reference_: np.ndarray | None = None
        #: Depths of a first pass over a streamed input (:meth:`prepare_cells`).
        self.input_depths_: CellDepths | None = None

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

    def _prepare(self, train: HistoneDataset) -> None:
        if isinstance(self.model_cfg, ConvNetConfig):
            # Widths chosen by data size (histexpr.models.convnet.sized_for), then fixed.
            self.model_cfg = sized_for(self.model_cfg, len(train))

    def _fit_inputs(self, train, valid) -> FitInputs:
        metrics = {"task": self.train_cfg.task}
        self.cell_depths_ = self.depth_reference_ = None
        if self.train_cfg.optim.depth_norm == "cell":
            depths = CellDepths().add(train.X, train.cell).per_cell()
            self.cell_depths_ = depths
            self.depth_reference_ = np.mean([depths[c] for c in sorted(depths)], axis=0)
            train = dataclasses.replace(train, X=self._depth_scaled(train.X, train))
            if valid is not None:
                valid = dataclasses.replace(valid, X=self._depth_scaled(valid.X, valid))
            metrics["depth_reference"] = [round(float(v), 6) for v in self.depth_reference_]
        return FitInputs(train, valid, metrics=metrics)

    def _normaliser_input(self, train: HistoneDataset, fit: FitInputs) -> np.ndarray:
        return fit.train.X  # rescaled to the reference depth with depth_norm="cell"

    def _depth_scaled(self, X: np.ndarray, data: HistoneDataset) -> np.ndarray:
        """``X`` (rows of ``data``) at the reference depth; ``X`` itself without
        ``depth_norm``. A new cell type's depth comes from the first pass of
        :meth:`prepare_cells` if there was one, else from all its rows in ``data``."""
        if self.cell_depths_ is None:
            return X
        new = [c for c in data.cells if c not in self.cell_depths_]
        seen = self.input_depths_
        if seen is None and new:
            pick = np.isin(data.cell, new)
            seen = CellDepths().add(data.X[pick], data.cell[pick])
        n_bins = data.X.shape[2]
        factors = depth_factors(
            data.cells,
            self.cell_depths_,
            self.depth_reference_,
            None if seen is None else seen.per_cell(),
            None if seen is None else {c: seen.genes(c, n_bins) for c in new},
        )
        return rescale(X, data.cell, factors)

    def prepare_cells(self, blocks) -> None:
        """First pass over an input read in blocks: each new cell type's depth from all
        its genes (``depth_norm="cell"``), so no prediction depends on the blocks;
        ``None`` forgets them."""
        if blocks is None or self.cell_depths_ is None:
            self.input_depths_ = None
            return
        seen = CellDepths()
        for b in blocks:
            b = conform_marks(b, self.contract_.marks, self.train_cfg.optim.mark_dropout > 0)
            new = ~np.isin(b.cell, list(self.cell_depths_))
            if new.any():
                seen.add(b.X[new], b.cell[new])
        self.input_depths_ = seen

    def predict(self, data: HistoneDataset, batch_size: int | None = None) -> np.ndarray:
        """Predictions, shape (n,) float32: values, or probabilities of "above median"."""
        model = self._require_fitted()
        # By name: reorder, drop extra marks; a mark-dropout model takes missing marks
        # as NaN (histexpr.models.markmask).
        data = conform_marks(data, self.contract_.marks, self.train_cfg.optim.mark_dropout > 0)
        bundle.check_input(self.contract_, data)
        X = mark_missing(data.X, data.marks, data.meta.get("missing_marks", ()))
        X = self._depth_scaled(X, data)
        return predict_values(model, X, self.train_cfg.task, batch_size, self.precision)

    def model_input(self, data: HistoneDataset) -> np.ndarray:
        """The counts ``predict`` feeds the network for ``data`` (marks already the
        model's, in order): ``data.X``, rescaled per cell type with ``depth_norm``.
        Attributions are taken with respect to these."""
        self._require_fitted()
        return self._depth_scaled(data.X, data)

    def _save_state(self, tmp: Path) -> None:
        if self.cell_depths_ is not None:
            cells = sorted(self.cell_depths_)
            np.savez(
                Path(tmp) / "depth.npz",
                cells=np.array(cells, dtype="U"),
                depths=np.array([self.cell_depths_[c] for c in cells], dtype=np.float64),
                reference=np.asarray(self.depth_reference_, dtype=np.float64),
            )

    def _load_state(self, directory: Path, header) -> None:
        path = Path(directory) / "depth.npz"
        if self.train_cfg.optim.depth_norm == "cell" and path.is_file():
            with np.load(path, allow_pickle=False) as z:
                cells = z["cells"].astype(str).tolist()
                self.cell_depths_ = dict(zip(cells, list(z["depths"]), strict=True))
                self.depth_reference_ = z["reference"]

    def config_dict(self) -> dict:
        return {
            "model": to_dict(self.model_cfg),
            "train": to_dict(self.train_cfg),
            "inference": to_dict(self.inference_cfg),
        }

    @classmethod
    def _from_header(cls, header) -> NeuralEstimator:
        """Configs of format version 1 (flat train config) or 2."""
        if header.format_version < 2:
            cfgs = _v1_configs(header.kind, header.config)
        else:
            entry = network(header.kind)
            cfgs = {
                "model": from_dict(entry.config_cls, header.config["model"]),
                "train": from_dict(TrainConfig, header.config["train"]),
                "inference": from_dict(InferenceConfig, header.config.get("inference", {})),
            }
        return cls(header.kind, cfgs["model"], cfgs["train"], cfgs["inference"])
