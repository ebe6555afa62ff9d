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
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from histexpr.data.dataset import HistoneDataset
from histexpr.data.splits import cell_folds
from histexpr.errors import ConfigError, HistexprError
from histexpr.lightning_plan import HistoryCallback, TrainingPlan, make_loader, write_history
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
    accelerator, devices, num_nodes, strategy, precision :
        Passed to ``lightning.Trainer`` (multi-GPU / multi-node DDP needs no code here).
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
    out = np.zeros(len(data), dtype=np.float32)
    for c in np.unique(data.cell):
        mask = data.cell == c
        out[mask] = data.y[mask] > np.median(data.y[mask])
    return out


def task_targets(data: HistoneDataset, task: str) -> np.ndarray:
    """Training targets for ``task``, shape (n,), float32."""
    if task == "classification":
        return binary_targets(data)
    if data.y is None:
        raise HistexprError("training needs expression targets (y)")
    return data.y.astype(np.float32)


def gene_holdout(data: HistoneDataset, fraction: float, seed: int):
    """Split ``data`` by gene into (train, held-out) parts."""
    genes = np.unique(data.gene)
    rng = np.random.default_rng(seed)
    n_out = max(1, round(fraction * len(genes))) if len(genes) > 1 else 0
    out = rng.choice(genes, size=n_out, replace=False)
    mask = np.isin(data.gene, out)
    return data.subset(~mask), data.subset(mask)


def _tensors(data: HistoneDataset, y: np.ndarray, loss: str):
    X = torch.from_numpy(np.ascontiguousarray(data.X, dtype=np.float32))
    t = torch.from_numpy(y.astype(np.int64 if loss == "ce" else np.float32))
    return X, t


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
) -> tuple[MemberResult, list[dict]]:
    """Train one member with Lightning, leaving its best weights in ``member.module``.

    Returns the result and the member's history rows. Writes ``last.ckpt``, the
    best checkpoint, and on completion ``final.safetensors`` + ``done.json`` into
    ``ckpt_dir``; with ``resume`` a finished member is loaded instead of trained.
    """
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from safetensors.torch import load_file, save_file

    done, final = ckpt_dir / "done.json", ckpt_dir / "final.safetensors"
    if resume and done.is_file() and final.is_file():
        member.module.load_state_dict(load_file(final))
        info = json.loads(done.read_text())
        return MemberResult(**info["result"]), info["history"]
    if not resume:
        shutil.rmtree(ckpt_dir, ignore_errors=True)

    torch.manual_seed(seed)
    X, y = member.train
    if member.loss == "mse":
        init_output_bias(member.module, float(y.mean()))
    gen = np.random.default_rng(seed)
    tv_idx = np.arange(len(X))
    if 0 < cfg.trainval_max < len(X):
        tv_idx = np.sort(gen.choice(len(X), cfg.trainval_max, replace=False))
    train_loader = make_loader(X, y, cfg.batch_size, shuffle=True, seed=seed)
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
    trainer = Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=cfg.precision,
        callbacks=[history, *callbacks, stopper, checkpoint],
        logger=False,
        enable_progress_bar=cfg.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=ckpt_dir,
    )
    last = ckpt_dir / "last.ckpt"
    start = time.perf_counter()
    trainer.fit(
        plan, train_loader, val_loaders, ckpt_path=str(last) if resume and last.is_file() else None
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
        examples_per_s=round(len(X) * plan.epochs_started / max(seconds, 1e-9), 1),
    )
    if trainer.is_global_zero:
        save_file({k: v.contiguous() for k, v in member.module.state_dict().items()}, final)
        done.write_text(json.dumps({"result": result._asdict(), "history": history.rows}))
    return result, history.rows


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")


def members_for(
    kind: str,
    model: Predictor,
    train: HistoneDataset,
    valid: HistoneDataset | None,
    cfg: TrainConfig,
    cells: list[str],
) -> list[Member]:
    """The members of ``kind`` with their training and validation data."""
    loss = "bce" if cfg.task == "classification" else "mse"
    norm = model.normalizer

    def member(name, net, tr, va, loss=loss, targets=None):
        if len(va) == 0:
            # Too little data to hold any out: validate on the training data.
            va = tr
        ytr = task_targets(tr, cfg.task) if targets is None else targets(tr)
        yva = task_targets(va, cfg.task) if targets is None else targets(va)
        return Member(
            name, Predictor(norm, net), loss, _tensors(tr, ytr, loss), _tensors(va, yva, loss)
        )

    if kind == "ensemble":
        folds = cell_folds(cells, cfg.n_folds, cfg.seed)
        return [
            member(
                f"fold{k}", net, train.select_cells(fold, exclude=True), train.select_cells(fold)
            )
            for k, (fold, net) in enumerate(zip(folds, model.net.members, strict=True))
        ]
    if kind == "celltype-weighted":
        index = {c: i for i, c in enumerate(cells)}
        tr, va = gene_holdout(train, cfg.valid_fraction, cfg.seed)
        out = [
            member(
                "gate",
                model.net.gate,
                tr,
                va,
                loss="ce",
                targets=lambda d: np.array([index[c] for c in d.cell]),
            )
        ]
        for c, net in zip(cells, model.net.experts, strict=True):
            out.append(member(f"cell-{c}", net, tr.subset(tr.cell == c), va.subset(va.cell == c)))
        return out
    if valid is None or not valid.has_target:
        train, valid = gene_holdout(train, cfg.valid_fraction, cfg.seed)
    return [member("model", model.net, train, valid)]


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
) -> tuple[list[MemberResult], list[dict]]:
    """Train every member of ``model`` in turn; return results and history rows."""
    _check_task(cfg.task)
    members = members_for(kind, model, train, valid, cfg, cells)
    with contextlib.ExitStack() as stack:
        if run_dir is None:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="histexpr-")))
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        stack.enter_context(_torch_threads(cfg.threads))
        stack.enter_context(_quiet_lightning())
        results, rows = [], []
        for i, m in enumerate(members):
            done_rows = list(rows)

            def sink(member_rows, done_rows=done_rows):
                write_history(run_dir / "history.csv", done_rows + member_rows)

            result, member_rows = fit_member(
                m,
                cfg,
                cfg.seed + 7919 * i,
                run_dir / "checkpoints" / m.name,
                resume,
                callbacks,
                sink,
            )
            results.append(result)
            rows.extend(member_rows)
            write_history(run_dir / "history.csv", rows)
    return results, rows
