"""Training of the neural kinds as a sequence of Lightning fits ("members").

A model is trained as one or more *members*, each an ordinary Lightning fit
with its own checkpoint directory under ``run_dir/checkpoints/<member>``:

- "convnet", "deepchrome", "attentivechrome": one member on all training data;
- "ensemble": member ``fold<k>`` trains on the cell types outside fold ``k``
  and validates (early stopping) on fold ``k``; the model predicts their mean;
- "celltype-weighted": member ``gate`` learns to tell the training cell types
  apart (cross-entropy), member ``cell-<id>`` fits one cell type; each validates
  on a held-out tenth of the genes.

With ``resume=True`` finished members are loaded from ``final.safetensors`` and
the interrupted one continues from its ``last.ckpt``. Per-epoch losses go to
``run_dir/history.csv`` (long format: member, epoch, split, loss).

Tasks: "regression" fits ``y`` with MSE; "classification" fits whether ``y`` is
above the median of its cell type (BCE); predictions are then probabilities.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from histexpr.atomic import atomic_path
from histexpr.checkpoint_io import (
    AtomicCheckpointIO,
    read_done,
    resumable_checkpoint,
    write_done,
)
from histexpr.data.dataset import HistoneDataset
from histexpr.ddp import GlobalBatches, global_batchnorm, is_global_zero, trainer_kwargs
from histexpr.errors import ConfigError
from histexpr.lightning_plan import (
    HistoryCallback,
    TensorBatches,
    TrainingPlan,
    make_loader,
    write_history,
)
from histexpr.member_data import (  # noqa: F401  (re-exported: the training API)
    Member,
    MemberSpec,
    Rows,
    binary_targets,
    build_member,
    gene_holdout,
    gene_holdout_mask,
    member_specs,
    members_for,
    task_targets,
)
from histexpr.models import Predictor

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
        training (DDP, see :mod:`histexpr.ddp`).
    workers : int
        Train independent members (ensemble folds, cell-type experts) in parallel
        on a local Dask cluster of this many processes (0: in turn, in this
        process; see :mod:`histexpr.distributed`).
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


class MemberResult(NamedTuple):
    """Outcome of training one member.

    ``examples_per_s`` is training examples per wall-clock second of this
    session's epochs, validation and "trainval" passes included.
    """

    name: str
    best_valid_loss: float
    epochs_run: int
    n_train: int
    n_valid: int
    seconds: float
    examples_per_s: float


def init_output_bias(module: torch.nn.Module, value: float) -> bool:
    """Set the bias of the last single-output layer to ``value`` (the mean target).

    A regression network then starts at the global-mean baseline instead of 0,
    which saves the first epochs of a run. Returns whether such a layer exists.
    """
    for layer in reversed(list(module.modules())):
        weight = getattr(layer, "weight", None)
        bias = getattr(layer, "bias", None)
        if isinstance(layer, torch.nn.Linear | torch.nn.Conv1d) and bias is not None:
            if weight.shape[0] == 1:
                with torch.no_grad():
                    bias.fill_(value)
                return True
            return False
    return False


@contextlib.contextmanager
def _quiet_lightning():
    """Silence Lightning's informational lines (device summary, tips, its own
    deprecation notices); the progress bar and real warnings still show."""
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_member(
    member: Member,
    cfg: TrainConfig,
    seed: int,
    ckpt_dir: Path,
    resume: bool = False,
    callbacks=(),
    sink=None,
    max_minutes: float = 0.0,
) -> tuple[MemberResult, list[dict]]:
    """Train one member with Lightning, leaving its best weights in ``member.module``.

    Returns the result and the member's history rows. Writes ``last.ckpt``, the
    best checkpoint, and on completion ``final.safetensors`` + ``done.json`` into
    ``ckpt_dir``; with ``resume`` a finished member is loaded instead of trained.
    ``max_minutes`` (> 0) limits this member's training time. Under DDP every
    process runs this function; only the global-zero process writes files.
    """
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from safetensors.torch import load_file, save_file

    done, final = ckpt_dir / "done.json", ckpt_dir / "final.safetensors"
    info = read_done(done, final) if resume else None
    if info is not None:
        member.module.load_state_dict(load_file(final))
        return MemberResult(**info["result"]), info["history"]
    if not resume:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    # A damaged last.ckpt is reported and the member restarts (histexpr.checkpoint_io).
    resume_from = resumable_checkpoint(ckpt_dir) if resume else None

    torch.manual_seed(seed)
    X, y = member.train
    if member.loss == "mse":
        init_output_bias(member.module, float(y.mean()))
    gen = np.random.default_rng(seed)
    tv_idx = np.arange(len(X))
    if 0 < cfg.trainval_max < len(X):
        tv_idx = np.sort(gen.choice(len(X), cfg.trainval_max, replace=False))
    # Global batches: the same examples per optimiser step for any number of
    # DDP processes (histexpr.ddp); a private generator keeps iterator creation
    # off the global RNG that dropout draws from.
    train_loader = DataLoader(
        TensorBatches(X, y),
        batch_sampler=GlobalBatches(len(X), cfg.batch_size, seed),
        collate_fn=_whole_batch,
        generator=torch.Generator().manual_seed(seed),
    )
    eval_bs = max(cfg.batch_size, 1024)
    val_loaders = [
        make_loader(*member.valid, eval_bs, shuffle=False),
        make_loader(X[tv_idx], y[tv_idx], eval_bs, shuffle=False),
    ]
    plan = TrainingPlan(member.module, member.loss, cfg.lr, cfg.weight_decay, seed)
    history = HistoryCallback(member.name, sink)
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-{epoch}",
        monitor="valid_loss",
        mode="min",
        save_top_k=1,
        save_last=True,
        # Saved once the epoch is complete, so a resumed run starts the next epoch.
        save_on_train_epoch_end=True,
    )
    stopper = EarlyStopping(monitor="valid_loss", mode="min", patience=cfg.patience)
    trainer_settings = trainer_kwargs(cfg.accelerator, cfg.devices, cfg.num_nodes, cfg.strategy)
    trainer = Trainer(
        max_epochs=cfg.epochs,
        max_time=timedelta(minutes=max_minutes) if max_minutes > 0 else None,
        limit_train_batches=cfg.epoch_fraction,
        **trainer_settings,
        precision=cfg.precision,
        callbacks=[history, *callbacks, stopper, checkpoint],
        plugins=[AtomicCheckpointIO()],
        logger=False,
        enable_progress_bar=cfg.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=ckpt_dir,
    )
    start = time.perf_counter()
    # Several CPU processes: batch norm on global-batch statistics (histexpr.ddp;
    # on GPUs Lightning's sync_batchnorm does it).
    parallel_cpu = cfg.devices * cfg.num_nodes > 1 and not trainer_settings["sync_batchnorm"]
    with global_batchnorm(member.module) if parallel_cpu else contextlib.nullcontext():
        trainer.fit(
            plan, train_loader, val_loaders, ckpt_path=str(resume_from) if resume_from else None
        )
    seconds = time.perf_counter() - start
    best = checkpoint.best_model_path
    if best:
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        plan.load_state_dict(state)
    member.module.cpu()
    epochs_run = trainer.current_epoch
    score = checkpoint.best_model_score
    result = MemberResult(
        name=member.name,
        best_valid_loss=float(score) if score is not None else float("nan"),
        epochs_run=int(epochs_run),
        n_train=len(X),
        n_valid=len(member.valid[0]),
        seconds=round(seconds, 3),
        examples_per_s=round(
            len(X) * min(cfg.epoch_fraction, 1.0) * plan.epochs_started / max(seconds, 1e-9), 1
        ),
    )
    if trainer.is_global_zero:
        with atomic_path(final, suffix=".safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in member.module.state_dict().items()}, tmp)
        write_done(done, {"result": result._asdict(), "history": history.rows})
    return result, history.rows


def _whole_batch(batch):
    # TensorBatches already returns a whole batch as (X, y).
    return batch


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


def fit_members(
    kind: str,
    model: Predictor,
    train: HistoneDataset,
    valid: HistoneDataset | None,
    cfg: TrainConfig,
    cells: list[str],
    run_dir: Path | None,
    resume: bool = False,
    callbacks=(),
    arch: dict | None = None,
) -> tuple[list[MemberResult], list[dict]]:
    """Train every member of ``model``; return results and history rows.

    Members train in turn in this process, or in parallel on Dask workers when
    ``cfg.workers`` or ``cfg.scheduler`` is set (:mod:`histexpr.distributed`;
    ``arch`` then describes the model so workers can rebuild it); both give the
    same weights.
    """
    check_config(cfg)
    specs = member_specs(kind, train, valid, cfg, cells)
    if cfg.workers > 0 or cfg.scheduler:
        from histexpr.distributed import fit_members_dask

        if callbacks:
            raise ConfigError("extra training callbacks cannot run on Dask workers")
        return fit_members_dask(model, train, valid, specs, cfg, run_dir, resume, arch)
    sources = {"train": train.X, "valid": None if valid is None else valid.X}
    with contextlib.ExitStack() as stack:
        if run_dir is None:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="histexpr-")))
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        stack.enter_context(_torch_threads(cfg.threads))
        stack.enter_context(_quiet_lightning())
        writer = is_global_zero()
        results, rows = [], []
        for i, spec in enumerate(specs):
            done_rows = list(rows)

            def sink(member_rows, done_rows=done_rows):
                write_history(run_dir / "history.csv", done_rows + member_rows)

            result, member_rows = fit_member(
                build_member(spec, model, sources),
                cfg,
                member_seed(cfg, i),
                run_dir / "checkpoints" / spec.name,
                resume,
                callbacks,
                sink,
                max_minutes=cfg.max_minutes / len(specs),
            )
            results.append(result)
            rows.extend(member_rows)
            if writer:
                write_history(run_dir / "history.csv", rows)
    return results, rows


def member_seed(cfg: TrainConfig, i: int) -> int:
    """Seed of member ``i`` (the same serially and on Dask workers)."""
    return cfg.seed + 7919 * i
