"""Which data each member of a neural model trains on.

A model trains as one or more *members* (see :mod:`histexpr.training.fit`). This
module says, for each plan of :data:`histexpr.models.PLANS` (the kind's registry
entry names it: "single", "folds", "experts"), which network each member is (its
submodule path comes from the built network) and which rows of the training (or
validation) data it trains and validates on, as small picklable
:class:`MemberSpec` s (row indices and targets, no tensors), and turns a spec
into a :class:`Member` with tensors. The Dask path ships specs to workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from histexpr.data.dataset import HistoneDataset
from histexpr.data.splits import cell_folds, holdout_mask
from histexpr.errors import ConfigError, HistexprError
from histexpr.evaluate import cell_medians, is_label, median_split_labels
from histexpr.models import Predictor, network
from histexpr.training.config import TrainConfig
from histexpr.training.plan import Gathered

__all__ = [
    "PLAN_FUNCTIONS",
    "Member",
    "MemberSpec",
    "Rows",
    "binary_targets",
    "build_member",
    "experts_plan",
    "folds_plan",
    "member_module",
    "member_specs",
    "members_for",
    "plan_specs",
    "single_plan",
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
    #: Start of the output layer's bias (None: the mean training target).
    start: float | None = None


def binary_targets(data: HistoneDataset) -> np.ndarray:
    """Classification targets, shape (n,), float32 0.0/1.0.

    Labels the data carry (``y`` only 0/1, e.g. DeepChrome's) are the targets as
    they are; a continuous ``y`` is split at the median of its cell type in
    ``data`` (the training data), see :func:`histexpr.evaluate.median_split_labels`.
    """
    if data.y is None:
        raise HistexprError("classification needs expression targets (y)")
    if str(data.target).startswith("label") and not is_label(data.y):
        raise HistexprError(f"target {data.target!r} should be 0/1 labels but y is not")
    return median_split_labels(data.y, data.cell).astype(np.float32)


def task_targets(data: HistoneDataset, task: str) -> np.ndarray:
    """Training targets for ``task``, shape (n,), float32."""
    if task == "classification":
        return binary_targets(data)
    if data.y is None:
        raise HistexprError("training needs expression targets (y)")
    return data.y.astype(np.float32)


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
    #: Start of the output layer's bias (None: the mean training target); a network
    #: that adds one of its inputs to its output starts at the mean residual of it.
    start: float | None = None


class _Rows:
    """Builds :class:`MemberSpec` s of one model (shared by the three plans)."""

    def __init__(self, train, valid, cfg: TrainConfig, cells: list[str]):
        self.train, self.valid, self.cfg = train, valid, cfg
        self.loss = "bce" if cfg.task == "classification" else "mse"
        self.index = {c: i for i, c in enumerate(cells)}
        self.medians: dict[str, float] | None = None  # per training cell, for classification

    def rows(self, source, data, idx, loss) -> Rows:
        if loss == "ce":
            y = np.array([self.index[c] for c in data.cell[idx]], dtype=np.int64)
        elif self.cfg.task == "classification":
            # Labels as they are; a continuous y split at its training cell's median.
            if self.medians is None:
                self.medians = cell_medians(self.train.y, self.train.cell)
            y = median_split_labels(data.y[idx], data.cell[idx], self.medians)
            y = y.astype(np.float32)
        else:
            y = data.y[idx].astype(np.float32)
        return Rows(source, idx.astype(np.int64), y)

    def spec(self, i, name, path, tr_idx, va_idx, va_source="train", loss=None) -> MemberSpec:
        loss = loss or self.loss
        va_data = self.train if va_source == "train" else self.valid
        if len(va_idx) == 0:
            # Too little data to hold any out: validate on the training data.
            va_idx, va_source, va_data = tr_idx, "train", self.train
        cap = self.cfg.validation.valid_max
        if 0 < cap < len(va_idx):
            pick = np.random.default_rng([self.cfg.optim.seed, i]).choice(len(va_idx), cap, False)
            va_idx = va_idx[np.sort(pick)]
        return MemberSpec(
            name,
            path,
            loss,
            self.rows("train", self.train, tr_idx, loss),
            self.rows(va_source, va_data, va_idx, loss),
        )

    def holdout(self) -> np.ndarray:
        # the "choice" draw: the genes every network trained with before
        return holdout_mask(
            self.train.gene,
            self.cfg.validation.holdout_fraction,
            self.cfg.optim.seed,
            draw="choice",
        )


def _paths(net, method: str, kind: str) -> list[str]:
    fn = getattr(net, method, None)
    if not callable(fn):
        raise HistexprError(f"{kind}: its network has no {method}() for its member plan")
    return list(fn()) if method != "gate_path" else [fn()]


def single_plan(kind, net, b: _Rows, cells) -> list[MemberSpec]:
    """One member: the whole network, validated on ``valid`` or on held-out genes."""
    if b.valid is None or not b.valid.has_target:
        held = b.holdout()
        return [b.spec(0, "model", "net", np.flatnonzero(~held), np.flatnonzero(held))]
    return [b.spec(0, "model", "net", np.arange(len(b.train)), np.arange(len(b.valid)), "valid")]


def folds_plan(kind, net, b: _Rows, cells) -> list[MemberSpec]:
    """Member ``fold<k>`` trains outside cell-type fold ``k`` and validates on it.

    The members are ``net.member_paths()``; their number is the number of folds.
    """
    paths = _paths(net, "member_paths", kind)
    if len(cells) < len(paths):
        raise ConfigError(f"{kind}: {len(cells)} training cell type(s) for {len(paths)} folds")
    folds = cell_folds(cells, len(paths), b.cfg.optim.seed)
    cell = b.train.cell
    return [
        b.spec(
            k,
            f"fold{k}",
            f"net.{path}",
            np.flatnonzero(~np.isin(cell, fold)),
            np.flatnonzero(np.isin(cell, fold)),
        )
        for k, (fold, path) in enumerate(zip(folds, paths, strict=True))
    ]


def experts_plan(kind, net, b: _Rows, cells) -> list[MemberSpec]:
    """Member ``gate`` tells the training cell types apart (cross-entropy); member
    ``cell-<id>`` fits one cell type. Each validates on held-out genes.

    The members are ``net.gate_path()`` and ``net.expert_paths()`` (one per cell,
    in the order of ``cells``).
    """
    (gate,) = _paths(net, "gate_path", kind)
    experts = _paths(net, "expert_paths", kind)
    if len(experts) != len(cells):
        raise HistexprError(f"{kind}: {len(experts)} experts for {len(cells)} cell types")
    held = b.holdout()
    out = [b.spec(0, "gate", f"net.{gate}", np.flatnonzero(~held), np.flatnonzero(held), loss="ce")]
    for i, (c, path) in enumerate(zip(cells, experts, strict=True)):
        is_c = b.train.cell == c
        out.append(
            b.spec(
                i + 1,
                f"cell-{c}",
                f"net.{path}",
                np.flatnonzero(~held & is_c),
                np.flatnonzero(held & is_c),
            )
        )
    return out


#: Plan name (see :data:`histexpr.models.PLANS`) -> the function that lays out its members.
PLAN_FUNCTIONS = {"single": single_plan, "folds": folds_plan, "experts": experts_plan}


def member_specs(
    kind: str,
    model: Predictor,
    train: HistoneDataset,
    valid: HistoneDataset | None,
    cfg: TrainConfig,
    cells: list[str],
) -> list[MemberSpec]:
    """The members of ``model`` (of ``kind``): their networks and rows of training and
    validation data, laid out by the kind's registered plan."""
    return plan_specs(network(kind).plan, kind, model.net, train, valid, cfg, cells)


def plan_specs(
    plan: str,
    kind: str,
    net: torch.nn.Module,
    train: HistoneDataset,
    valid: HistoneDataset | None,
    cfg: TrainConfig,
    cells: list[str],
) -> list[MemberSpec]:
    """The members of ``net`` laid out by the member plan named ``plan`` (a key of
    :data:`PLAN_FUNCTIONS`); for estimators whose network is not in the registry."""
    if plan not in PLAN_FUNCTIONS:
        raise HistexprError(f"{kind}: no member plan {plan!r}")
    return PLAN_FUNCTIONS[plan](kind, net, _Rows(train, valid, cfg, cells), cells)


def _rows_input(X, index: np.ndarray):
    if isinstance(X, tuple):  # a model of several inputs, each row-aligned with the data
        return tuple(_rows_input(x, index) for x in X)
    if isinstance(X, Gathered):  # stays a view: rows are gathered only per batch
        return Gathered(X.base, X.index[torch.as_tensor(index, dtype=torch.long)])
    return torch.from_numpy(np.ascontiguousarray(X[index], dtype=np.float32))


def _rows_tensors(X, rows: Rows):
    return _rows_input(X, rows.index), torch.from_numpy(rows.y)


def member_module(model: torch.nn.Module, path: str) -> torch.nn.Module:
    """The network at ``path`` of ``model`` behind the model's own normaliser.

    The front is the model's own class (a :class:`~histexpr.models.Predictor`, or a
    pair model's front that normalises both cells), so a member sees its inputs as
    the whole model does; both take ``(normalizer, net)``.
    """
    return type(model)(model.normalizer, model.get_submodule(path))


def build_member(spec: MemberSpec, model: Predictor, sources: dict) -> Member:
    """The :class:`Member` of ``spec``: its network behind the model's normaliser.

    ``sources`` maps "train"/"valid" to the input arrays (n, marks, bins), or to
    tuples of row-aligned arrays (or :class:`~histexpr.training.plan.Gathered` views)
    for a network of several inputs (the rows of a spec index each of them).
    """
    return Member(
        spec.name,
        member_module(model, spec.path),
        spec.loss,
        _rows_tensors(sources[spec.train.source], spec.train),
        _rows_tensors(sources[spec.valid.source], spec.valid),
        spec.start,
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
    specs = member_specs(kind, model, train, valid, cfg, cells)
    return [build_member(s, model, sources) for s in specs]
