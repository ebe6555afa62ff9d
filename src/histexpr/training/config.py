"""How a neural model is trained: the typed configuration of the training layer."""

from __future__ import annotations

from dataclasses import dataclass

from histexpr.errors import ConfigError

TASKS = ("regression", "classification")


@dataclass(frozen=True)
class TrainConfig:
    """How a neural model is trained (see the module docstring).

    Attributes
    ----------
    task : str
        "regression" (MSE on y) or "classification" (BCE on y > per-cell median).
    epochs : int
        Maximum epochs per member; early stopping usually ends training first.
    patience : int
        Epochs without a better validation loss before stopping.
    batch_size, lr, weight_decay :
        AdamW optimisation settings.
    seed : int
        Seeds initial weights, shuffling, dropout and the cell-type folds.
    threads : int
        CPU threads for torch during training (0: leave torch's setting).
    n_folds : int
        Members (cell-type folds) of the "ensemble" kind.
    valid_fraction : float
        Fraction of genes held out for early stopping when no validation data applies.
    trainval_max : int
        At most this many training examples for the per-epoch eval-mode
        "trainval" loss (0: all).
    valid_max : int
        At most this many validation examples per member, a fixed random subset
        (0: all). Validation runs every epoch, so on large data it is worth capping.
    epoch_fraction : float
        Fraction of the training examples seen per epoch, a fresh random subset
        each epoch (Lightning's ``limit_train_batches``); epochs, early stopping and
        checkpoints then come more often.
    max_minutes : float
        Wall-clock budget of the whole fit in minutes (0: none), split evenly over
        the members (Lightning's ``max_time``; members training in parallel under
        Dask each get their slot's share). A member stopped by the budget keeps its
        best completed epoch.
    accelerator, devices, num_nodes, strategy, precision :
        Passed to ``lightning.Trainer``; ``devices * num_nodes > 1`` is data-parallel
        training (DDP, see :mod:`histexpr.training.ddp`).
    workers : int
        Train independent members (ensemble folds, cell-type experts) in parallel
        on a local Dask cluster of this many processes (0: in turn, in this
        process; see :mod:`histexpr.training.runners`).
    scheduler : str
        Address of a running Dask scheduler to train members on (overrides ``workers``).
    inference_precision : str
        Precision of predictions after training: "32" (default) or "bf16"
        (about 2x faster on CPUs with bf16 units, about 3 significant digits).
    progress : bool
        Show Lightning's progress bar.
    """

    task: str = "regression"
    epochs: int = 100
    patience: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 0
    n_folds: int = 3
    valid_fraction: float = 0.1
    trainval_max: int = 50_000
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    valid_max: int = 0
    epoch_fraction: float = 1.0
    max_minutes: float = 0.0
    workers: int = 0
    scheduler: str = ""
    inference_precision: str = "32"
    progress: bool = True


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings no member could train with (one clear line each)."""
    _check_task(cfg.task)
    if not 0.0 < cfg.epoch_fraction <= 1.0:
        raise ConfigError(f"epoch_fraction must be in (0, 1], got {cfg.epoch_fraction}")
    if cfg.max_minutes < 0 or cfg.workers < 0 or cfg.valid_max < 0:
        raise ConfigError("max_minutes, workers and valid_max must not be negative")
