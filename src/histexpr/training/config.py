"""How a neural model is trained: one small typed config per concern.

:class:`TrainConfig` composes

- :class:`ObjectiveConfig`: what is fitted (``task``);
- :class:`OptimConfig`: epochs, early stopping, batches, AdamW, seed, budgets;
- :class:`ValidationConfig`: which examples validate and how many;
- :class:`DeviceConfig`: Lightning's accelerator / DDP / precision, torch threads;
- :class:`RunnerConfig`: where members train (in turn, or on Dask) and the progress bar.

Every field is validated when the config is built (one-line
:class:`~histexpr.errors.ConfigError` naming the field and its range). ``--set``
reaches any field by its flat name (``lr=3e-4``) or dotted (``optim.lr=3e-4``),
see :func:`histexpr.config.resolve_overrides`; :data:`ALIASES` keeps older flat
names working.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from histexpr.config import check_choice, check_range

TASKS = ("regression", "classification")
#: Learning-rate schedules over a member's planned steps (:func:`histexpr.training.plan.lr_factor`).
SCHEDULES = ("constant", "cosine", "onecycle")
#: Lightning precision names accepted for training.
TRAIN_PRECISIONS = (
    "auto",
    "32-true",
    "32",
    "64-true",
    "64",
    "16-mixed",
    "16",
    "bf16-mixed",
    "bf16",
    "16-true",
    "bf16-true",
)
#: Input rescaling of the neural kinds (:mod:`histexpr.data.depth`).
DEPTH_NORMS = ("none", "cell")
#: Smallest batch that :meth:`OptimConfig.batch_for` shrinks to.
MIN_BATCH = 16
#: Old flat ``--set`` names -> the dotted field they mean now.
ALIASES = {
    "valid_fraction": "validation.holdout_fraction",
    # "precision" alone stays the training precision (inference has its own).
    "precision": "device.precision",
}


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class ObjectiveConfig:
    """What a member fits."""

    task: str = _help(
        "regression (MSE on y) or classification (BCE on y > per-cell median)", "regression"
    )

    def __post_init__(self):
        check_choice("task", self.task, TASKS)


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation of each member (AdamW, early stopping, budgets)."""

    epochs: int = _help("maximum epochs per member; early stopping usually ends first", 100)
    patience: int = _help("epochs without a better validation loss before stopping", 10)
    batch_size: int = _help("training examples per optimiser step (at most; see min_steps)", 256)
    min_steps: int = _help(
        "optimiser steps per epoch at least: on small data the batch shrinks to "
        "ceil(n / min_steps), never below 16 examples (0: always batch_size)",
        16,
    )
    lr: float = _help("AdamW learning rate", 1e-3)
    schedule: str = _help(
        "learning-rate schedule over the planned steps (epochs x steps per epoch): constant, "
        "cosine (decay to 0) or onecycle (linear warm-up over the first 10 %, then cosine)",
        "constant",
    )
    weight_decay: float = _help("AdamW weight decay", 1e-4)
    seed: int = _help("seeds weights, shuffling, dropout and the cell-type folds", 0)
    epoch_fraction: float = _help(
        "fraction of the training examples seen per epoch (fresh random subset)", 1.0
    )
    max_minutes: float = _help(
        "wall-clock budget of the whole fit in minutes, split over members (0: none)", 0.0
    )
    mark_dropout: float = _help(
        "per-example probability of masking each mark in training (> 0: the model accepts "
        "data missing marks; histexpr.models.markmask)",
        0.0,
    )
    depth_norm: str = _help(
        "input scaling: none, or cell (each cell type's counts rescaled per mark to the "
        "training cells' mean depth, measured on all its genes; histexpr.data.depth)",
        "none",
    )

    def __post_init__(self):
        check_range("epochs", self.epochs, 1)
        check_range("patience", self.patience, 0)
        check_range("batch_size", self.batch_size, 1)
        check_range("min_steps", self.min_steps, 0)
        check_range("lr", self.lr, 0, low_open=True)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("epoch_fraction", self.epoch_fraction, 0, 1, low_open=True)
        check_range("max_minutes", self.max_minutes, 0)
        check_range("mark_dropout", self.mark_dropout, 0, 1, high_open=True)
        check_choice("depth_norm", self.depth_norm, DEPTH_NORMS)

    def batch_for(self, n: int) -> int:
        """Training batch for ``n`` examples: ``batch_size``, shrunk so an epoch has at least
        ``min_steps`` steps (a few hundred genes otherwise get one step per epoch and early
        stopping ends training before the model has learnt), never below 16 examples."""
        if self.min_steps <= 0 or n <= 0:
            return self.batch_size
        return min(self.batch_size, max(MIN_BATCH, -(-n // self.min_steps)))


@dataclass(frozen=True)
class ValidationConfig:
    """Which examples validate (early stopping) and the per-epoch loss subsets."""

    holdout_fraction: float = _help(
        "fraction of genes held out for early stopping when no validation data applies", 0.1
    )
    valid_max: int = _help("at most this many validation examples per member (0: all)", 0)
    trainval_max: int = _help(
        "at most this many training examples for the eval-mode trainval loss (0: all)", 50_000
    )

    def __post_init__(self):
        check_range("holdout_fraction", self.holdout_fraction, 0, 1, low_open=True, high_open=True)
        check_range("valid_max", self.valid_max, 0)
        check_range("trainval_max", self.trainval_max, 0)


@dataclass(frozen=True)
class DeviceConfig:
    """Where and how each member's Lightning Trainer runs."""

    accelerator: str = _help("Lightning accelerator: cpu, gpu, cuda, mps or auto", "cpu")
    devices: int = _help("data-parallel processes per node (> 1: DDP)", 1)
    num_nodes: int = _help("nodes for DDP training", 1)
    strategy: str = _help("Lightning strategy (auto, ddp)", "auto")
    precision: str = _help(
        "training precision: auto (bf16-mixed where the CPU or GPU has native bf16, else "
        "32-true), or a Lightning name, e.g. 32-true, bf16-mixed",
        "auto",
    )
    threads: int = _help("CPU threads of torch (0: the cores other processes leave free)", 0)

    def __post_init__(self):
        check_choice("accelerator", self.accelerator, ("cpu", "gpu", "cuda", "mps", "tpu", "auto"))
        check_range("devices", self.devices, 1)
        check_range("num_nodes", self.num_nodes, 1)
        if not isinstance(self.strategy, str) or not self.strategy:
            raise_config("strategy", "a Lightning strategy name", self.strategy)
        check_choice("precision", self.precision, TRAIN_PRECISIONS)
        check_range("threads", self.threads, 0)


@dataclass(frozen=True)
class RunnerConfig:
    """How independent members are run."""

    workers: int = _help("train members on a local Dask cluster of this many processes", 0)
    scheduler: str = _help("address of a running Dask scheduler (overrides workers)", "")
    progress: bool = _help("show the progress bar", True)

    def __post_init__(self):
        check_range("workers", self.workers, 0)


@dataclass(frozen=True)
class TrainConfig:
    """How a neural model is trained (see the module docstring)."""

    objective: ObjectiveConfig = ObjectiveConfig()
    optim: OptimConfig = OptimConfig()
    validation: ValidationConfig = ValidationConfig()
    device: DeviceConfig = DeviceConfig()
    runner: RunnerConfig = RunnerConfig()

    @property
    def task(self) -> str:
        """The objective's task (read often enough to deserve a shortcut)."""
        return self.objective.task

    @property
    def parallel(self) -> bool:
        """Members train on Dask (workers or a scheduler)."""
        return self.runner.workers > 0 or bool(self.runner.scheduler)

    @property
    def world_size(self) -> int:
        """DDP processes in all: ``devices * num_nodes``."""
        return self.device.devices * self.device.num_nodes


def raise_config(name: str, allowed: str, value) -> None:
    from histexpr.errors import ConfigError

    raise ConfigError(f"{name} must be {allowed}, got {value!r}")


def check_config(cfg: TrainConfig) -> None:
    """Kept for callers of the old API: every field is validated at construction."""
    if not isinstance(cfg, TrainConfig):
        raise_config("train config", "a TrainConfig", type(cfg).__name__)
