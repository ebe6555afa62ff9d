"""Which data each member of a neural model trains on.

A model trains as one or more *members* (see :mod:`histexpr.training.fit`). This
module says, for each kind, which network each member is and which rows of the
training (or validation) data it trains and validates on, as small picklable
:class:`MemberSpec` s (row indices and targets, no tensors), and turns a spec
into a :class:`Member` with tensors. The Dask path ships specs to workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from histexpr.data.dataset import HistoneDataset
from histexpr.data.splits import cell_folds
from histexpr.errors import HistexprError
from histexpr.evaluate import median_split_labels
from histexpr.models import Predictor
from histexpr.training.config import TrainConfig

__all__ = [
    "Member",
    "MemberSpec",
    "Rows",
    "binary_targets",
    "build_member",
    "gene_holdout",
    "gene_holdout_mask",
    "member_specs",
    "members_for",
    "task_targets",
]


@dataclass
class Member:
    """One Lightning fit: a module (sharing the model's normaliser) and its data."""

    name: str
    module: torch.nn.Module
    loss: str
    train: tuple[torch.Tensor, torch.Tensor]
    valid: tuple[torch.Tensor, torch.Tensor]


def binary_targets(data: HistoneDataset) -> np.ndarray:
    """1.0 where ``y`` is above the median of its cell type, else 0.0; shape (n,)."""
    if data.y is None:
        raise HistexprError("classification needs expression targets (y)")
    return median_split_labels(data.y, data.cell).astype(np.float32)


def task_targets(data: HistoneDataset, task: str) -> np.ndarray:
    """Training targets for ``task``, shape (n,), float32."""
    if task == "classification":
        return binary_targets(data)
    if data.y is None:
        raise HistexprError("training needs expression targets (y)")
    return data.y.astype(np.float32)


def gene_holdout_mask(data: HistoneDataset, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask (n,) of the examples of a random ``fraction`` of the genes."""
    genes = np.unique(data.gene)
    rng = np.random.default_rng(seed)
    n_out = max(1, round(fraction * len(genes))) if len(genes) > 1 else 0
    out = rng.choice(genes, size=n_out, replace=False)
    return np.isin(data.gene, out)


def gene_holdout(data: HistoneDataset, fraction: float, seed: int):
    """Split ``data`` by gene into (train, held-out) parts."""
    mask = gene_holdout_mask(data, fraction, seed)
    return data.subset(~mask), data.subset(mask)


class Rows(NamedTuple):
    """Examples of one member: rows of a source data set and their targets."""

    source: str  # "train" or "valid": which data set passed to fit
    index: np.ndarray  # (m,) int64 rows of the source
    y: np.ndarray  # (m,) float32 targets, int64 classes for "ce"


class MemberSpec(NamedTuple):
    """What one member trains, without any tensors: picklable and small.

    ``path`` names the member's network inside the model
    (``model.get_submodule(path)``), e.g. "net.members.0" for fold 0.
    """

    name: str
    path: str
    loss: str
    train: Rows
    valid: Rows


def member_specs(
    kind: str,
    train: HistoneDataset,
    valid: HistoneDataset | None,
    cfg: TrainConfig,
    cells: list[str],
) -> list[MemberSpec]:
    """The members of ``kind``: their networks and rows of training and validation data."""
    loss = "bce" if cfg.task == "classification" else "mse"
    index = {c: i for i, c in enumerate(cells)}

    def rows(source, data, idx, loss):
        if loss == "ce":
            y = np.array([index[c] for c in data.cell[idx]], dtype=np.int64)
        elif cfg.task == "classification":
            y = median_split_labels(data.y[idx], data.cell[idx]).astype(np.float32)
        else:
            y = data.y[idx].astype(np.float32)
        return Rows(source, idx.astype(np.int64), y)

    def spec(i, name, path, tr_idx, va_idx, va_source="train", loss=loss):
        va_data = train if va_source == "train" else valid
        if len(va_idx) == 0:
            # Too little data to hold any out: validate on the training data.
            va_idx, va_source, va_data = tr_idx, "train", train
        if 0 < cfg.valid_max < len(va_idx):
            pick = np.random.default_rng([cfg.seed, i]).choice(len(va_idx), cfg.valid_max, False)
            va_idx = va_idx[np.sort(pick)]
        return MemberSpec(
            name,
            path,
            loss,
            rows("train", train, tr_idx, loss),
            rows(va_source, va_data, va_idx, loss),
        )

    if kind == "ensemble":
        folds = cell_folds(cells, cfg.n_folds, cfg.seed)
        return [
            spec(
                k,
                f"fold{k}",
                f"net.members.{k}",
                np.flatnonzero(~np.isin(train.cell, fold)),
                np.flatnonzero(np.isin(train.cell, fold)),
            )
            for k, fold in enumerate(folds)
        ]
    if kind == "celltype-weighted":
        held = gene_holdout_mask(train, cfg.valid_fraction, cfg.seed)
        out = [spec(0, "gate", "net.gate", np.flatnonzero(~held), np.flatnonzero(held), loss="ce")]
        for i, c in enumerate(cells):
            is_c = train.cell == c
            out.append(
                spec(
                    i + 1,
                    f"cell-{c}",
                    f"net.experts.{i}",
                    np.flatnonzero(~held & is_c),
                    np.flatnonzero(held & is_c),
                )
            )
        return out
    if valid is None or not valid.has_target:
        held = gene_holdout_mask(train, cfg.valid_fraction, cfg.seed)
        return [spec(0, "model", "net", np.flatnonzero(~held), np.flatnonzero(held))]
    return [spec(0, "model", "net", np.arange(len(train)), np.arange(len(valid)), "valid")]


def _rows_tensors(X: np.ndarray, rows: Rows) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(X[rows.index], dtype=np.float32))
    return x, torch.from_numpy(rows.y)


def build_member(spec: MemberSpec, model: Predictor, sources: dict) -> Member:
    """The :class:`Member` of ``spec``: its network behind the model's normaliser.

    ``sources`` maps "train"/"valid" to the input arrays (n, marks, bins).
    """
    net = model.get_submodule(spec.path)
    return Member(
        spec.name,
        Predictor(model.normalizer, net),
        spec.loss,
        _rows_tensors(sources[spec.train.source], spec.train),
        _rows_tensors(sources[spec.valid.source], spec.valid),
    )


def members_for(
    kind: str,
    model: Predictor,
    train: HistoneDataset,
    valid: HistoneDataset | None,
    cfg: TrainConfig,
    cells: list[str],
) -> list[Member]:
    """The members of ``kind`` with their training and validation data."""
    sources = {"train": train.X, "valid": None if valid is None else valid.X}
    return [build_member(s, model, sources) for s in member_specs(kind, train, valid, cfg, cells)]
