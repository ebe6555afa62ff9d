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
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from histexpr.atomic import atomic_path, reraise_interrupt
from histexpr.errors import HistexprError
from histexpr.training.checkpoints import (
    AtomicCheckpointIO,
    read_done,
    resumable_checkpoint,
    write_done,
)
from histexpr.training.config import TrainConfig
from histexpr.training.ddp import GlobalBatches, global_batchnorm, trainer_kwargs
from histexpr.training.members import Member
from histexpr.training.plan import (
    HistoryCallback,
    TensorBatches,
    TrainingPlan,
    make_loader,
    n_examples,
    take,
)
from histexpr.training.skip import fit_linear_skips


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
    #: why training ended: "time budget" (max_minutes), "early stopping" or "epochs"
    stopped_by: str = ""


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


def epoch_bar():
    """Lightning's progress bar, its epochs counted from 1 to ``epochs`` ("epoch 3/6")."""
    from lightning.pytorch.callbacks import TQDMProgressBar

    class EpochBar(TQDMProgressBar):
        def on_train_epoch_start(self, trainer, *args):
            super().on_train_epoch_start(trainer, *args)
            total = (
                f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
            )
            self.train_progress_bar.set_description(f"epoch {trainer.current_epoch + 1}{total}")

    return EpochBar()


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
    # A damaged last.ckpt is reported and the member restarts (histexpr.training.checkpoints).
    resume_from = resumable_checkpoint(ckpt_dir) if resume else None

    torch.manual_seed(seed)
    X, y = member.train
    n = n_examples(X)
    if member.loss == "mse":
        start = float(y.mean()) if member.start is None else member.start
        init_output_bias(member.module, start)
        fit_linear_skips(member.module, X, y, seed)
    gen = np.random.default_rng(seed)
    tv_idx = np.arange(n)
    if 0 < cfg.validation.trainval_max < n:
        tv_idx = np.sort(gen.choice(n, cfg.validation.trainval_max, replace=False))
    # Global batches: the same examples per optimiser step for any number of
    # DDP processes (histexpr.training.ddp); a private generator keeps iterator creation
    # off the global RNG that dropout draws from.
    train_loader = DataLoader(
        TensorBatches(X, y),
        batch_sampler=GlobalBatches(n, cfg.optim.batch_for(n), seed),
        collate_fn=_whole_batch,
        generator=torch.Generator().manual_seed(seed),
    )
    eval_bs = max(cfg.optim.batch_size, 1024)
    val_loaders = [
        make_loader(*member.valid, eval_bs, shuffle=False),
        make_loader(take(X, tv_idx), y[tv_idx], eval_bs, shuffle=False),
    ]
    plan = TrainingPlan(
        member.module,
        member.loss,
        cfg.optim.lr,
        cfg.optim.weight_decay,
        seed,
        schedule=cfg.optim.schedule,
    )
    if resume_from is not None:
        check_resumable(resume_from, plan, cfg.optim.epochs)
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
    stopper = EarlyStopping(monitor="valid_loss", mode="min", patience=cfg.optim.patience)
    dev = cfg.device
    # the per-epoch bar on a terminal only: in a log its redraws are noise
    bar = epoch_bar() if cfg.runner.progress and sys.stderr.isatty() else None
    trainer_settings = trainer_kwargs(
        dev.accelerator, dev.devices, dev.num_nodes, dev.strategy, dev.precision
    )
    trainer = Trainer(
        max_epochs=cfg.optim.epochs,
        max_time=timedelta(minutes=max_minutes) if max_minutes > 0 else None,
        limit_train_batches=cfg.optim.epoch_fraction,
        **trainer_settings,
        callbacks=[history, *callbacks, stopper, checkpoint, *([bar] if bar else [])],
        plugins=[AtomicCheckpointIO()],
        logger=False,
        enable_progress_bar=bar is not None,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=ckpt_dir,
    )
    start = time.perf_counter()
    # Several CPU processes: batch norm on global-batch statistics (histexpr.training.ddp;
    # on GPUs Lightning's sync_batchnorm does it).
    parallel_cpu = cfg.world_size > 1 and not trainer_settings["sync_batchnorm"]
    # Lightning turns Ctrl-C into sys.exit(1); reraise_interrupt gives it back (exit 130)
    batchnorm = global_batchnorm(member.module) if parallel_cpu else contextlib.nullcontext()
    with batchnorm, reraise_interrupt(lambda: trainer.interrupted):
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
    timer = next((c for c in trainer.callbacks if type(c).__name__ == "Timer"), None)
    if timer is not None and (timer.time_remaining() or 0.0) <= 0:
        stopped_by = "time budget"
    else:
        stopped_by = "early stopping" if stopper.stopped_epoch else "epochs"
    result = MemberResult(
        name=member.name,
        best_valid_loss=float(score) if score is not None else float("nan"),
        epochs_run=int(epochs_run),
        n_train=n,
        n_valid=len(member.valid[1]),
        stopped_by=stopped_by,
        seconds=round(seconds, 3),
        examples_per_s=round(
            n * min(cfg.optim.epoch_fraction, 1.0) * plan.epochs_started / max(seconds, 1e-9),
            1,
        ),
    )
    if trainer.is_global_zero:
        with atomic_path(final, suffix=".safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in member.module.state_dict().items()}, tmp)
        write_done(done, {"result": result._asdict(), "history": history.rows})
    return result, history.rows


def check_resumable(path: Path, plan: torch.nn.Module, max_epochs: int) -> None:
    """Refuse, in one line, a checkpoint that the configured model cannot continue.

    Raises
    ------
    HistexprError
        The checkpoint's weights have other names or shapes than the model (the
        architecture changed), or it already ran more epochs than ``max_epochs``.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    saved = ckpt.get("state_dict", {})
    own = plan.state_dict()
    missing = sorted(set(own) - set(saved))
    extra = sorted(set(saved) - set(own))
    shapes = [k for k in own if k in saved and tuple(saved[k].shape) != tuple(own[k].shape)]
    if missing or extra or shapes:
        first = (shapes or missing or extra)[0]
        what = "shape of" if shapes else ("no" if missing else "unexpected")
        raise HistexprError(
            f"{path}: checkpoint does not fit the configured model ({what} {first}; "
            f"{len(shapes)} shape, {len(missing)} missing, {len(extra)} unexpected); "
            "resume with the original model settings or train without --resume"
        )
    done = int(ckpt.get("epoch", -1)) + 1
    if done > max_epochs:
        raise HistexprError(
            f"{path}: checkpoint has {done} epochs, more than epochs={max_epochs}; "
            f"resume with epochs >= {done}"
        )


def _whole_batch(batch):
    # TensorBatches already returns a whole batch as (X, y).
    return batch
