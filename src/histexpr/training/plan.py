"""Lightning pieces of training: fast batch loading, the training plan, the history log.

Batches are cut from contiguous tensors with one indexing operation per batch
(``Dataset.__getitems__``), never example by example, because the CPU time of
Python-level per-example loading would dominate the small networks used here.
The loaders are ordinary ``DataLoader`` s with a batch sampler, so Lightning can
swap in a distributed sampler for multi-device training.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule
from torch import nn
from torch.nn import functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler

from histexpr.atomic import atomic_path

#: Loss name -> function(output, target) averaged over the batch.
LOSSES = {
    "mse": lambda out, y: F.mse_loss(out, y),
    "bce": lambda out, y: F.binary_cross_entropy_with_logits(out, y),
    "ce": lambda out, y: F.cross_entropy(out, y),
    # Column 0 is the target; the other columns are auxiliary targets at half weight
    # (a differential model's per-cell expression heads, DeepDiffChrome's "aux" idea).
    "mse_aux": lambda out, y: (
        F.mse_loss(out[:, 0], y[:, 0]) + 0.5 * F.mse_loss(out[:, 1:], y[:, 1:])
    ),
}

#: Columns of ``history.csv``: one row per member, epoch and split.
HISTORY_FIELDS = ["member", "epoch", "split", "loss"]

#: Splits recorded per epoch in the history (see :class:`HistoryCallback`).
SPLITS = ("train", "valid", "trainval")


class Gathered:
    """Rows of ``base`` picked by ``index``, gathered only when a batch is cut.

    The inputs of pair models (one example = two rows of the same data) are views
    like this, so a model trained on many pairs never holds them materialised.

    Parameters
    ----------
    base : torch.Tensor, shape (n_rows, ...)
    index : torch.Tensor, shape (n,), int64
        Row of ``base`` of each example.
    """

    def __init__(self, base: torch.Tensor, index: torch.Tensor):
        self.base = base
        self.index = torch.as_tensor(index, dtype=torch.long)

    def __len__(self) -> int:
        return self.index.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.base.shape[1:])

    def __getitem__(self, i) -> torch.Tensor:
        return self.base[self.index[i]]


def n_examples(X) -> int:
    """Examples of an input: a tensor, a :class:`Gathered` view, or a tuple of them."""
    return len(X[0]) if isinstance(X, tuple) else len(X)


def take(X, idx):
    """Rows ``idx`` (a LongTensor, slice or array) of an input or tuple of inputs."""
    if isinstance(X, tuple):
        return tuple(take(x, idx) for x in X)
    if not isinstance(idx, slice):
        idx = torch.as_tensor(idx, dtype=torch.long)
    return X[idx]


def call_model(model, x):
    """``model(x)``, or ``model(*x)`` for a model of several inputs (a tuple)."""
    return model(*x) if isinstance(x, tuple) else model(x)


class TensorBatches(Dataset):
    """Examples held as aligned tensors, fetched a whole batch at a time.

    Parameters
    ----------
    X : torch.Tensor, shape (n, n_marks, n_bins), or a tuple of inputs
        A model of several inputs (e.g. histone signal and atlas features, or the
        two cells of a pair) takes a tuple; each is a tensor or a :class:`Gathered`.
    y : torch.Tensor, shape (n,) or (n, k)
    """

    def __init__(self, X, y: torch.Tensor):
        self.X = X
        self.y = y

    def __len__(self) -> int:
        return n_examples(self.X)

    def __getitem__(self, i):
        return take(self.X, [i]), self.y[i : i + 1]

    def __getitems__(self, index: list[int]):
        # The DataLoader calls this with a batch's indices; one gather per tensor.
        idx = torch.as_tensor(index, dtype=torch.long)
        return take(self.X, idx), self.y[idx]


def _identity(batch):
    return batch


class EpochShuffle(Sampler[int]):
    """A permutation that depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, so a run resumed from a
    checkpoint sees the same batches as an uninterrupted one.
    """

    def __init__(self, n: int, seed: int):
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def make_loader(X, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """A DataLoader yielding ``(X_batch, y_batch)`` cut from contiguous tensors.

    Training loaders (``shuffle=True``) drop a last batch of a single example,
    which batch norm cannot train on.
    """
    n = n_examples(X)
    sampler = EpochShuffle(n, seed) if shuffle else SequentialSampler(range(n))
    drop_last = shuffle and n % batch_size == 1
    batches = BatchSampler(sampler, batch_size, drop_last=drop_last)
    # A private generator: creating an iterator must not consume the global RNG
    # that dropout draws from.
    return DataLoader(
        TensorBatches(X, y),
        batch_sampler=batches,
        collate_fn=_identity,
        generator=torch.Generator().manual_seed(seed),
    )


#: Share of the planned steps that the "onecycle" schedule warms up over.
WARMUP = 0.1


def lr_factor(schedule: str, step: int, total: int) -> float:
    """The learning rate at optimiser ``step`` of ``total``, as a fraction of the set one.

    "constant": 1; "cosine": from 1 down to 0 along half a cosine; "onecycle": a linear
    rise from 0.04 over the first :data:`WARMUP` of the steps, then the cosine down to 0.
    Steps past ``total`` (epochs raised on resume) stay at the last value.
    """
    import math

    if schedule == "constant" or total <= 1:
        return 1.0
    t = min(step, total) / total
    warm = WARMUP if schedule == "onecycle" else 0.0
    if t < warm:
        return 0.04 + 0.96 * t / warm
    return 0.5 * (1.0 + math.cos(math.pi * (t - warm) / (1.0 - warm)))


class TrainingPlan(LightningModule):
    """Optimisation of one module on one loss.

    Parameters
    ----------
    model : nn.Module
        Maps raw input ``(b, n_marks, n_bins)`` to ``(b,)`` (or ``(b, k)`` for "ce").
    loss : str
        "mse" (regression), "bce" (binary logits) or "ce" (class logits).
    lr, weight_decay : float
        AdamW settings.
    seed : int
        Seeds dropout per step, so resumed runs repeat uninterrupted ones.
    schedule : str
        Learning-rate schedule over the trainer's planned steps (:func:`lr_factor`).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: str,
        lr: float,
        weight_decay: float,
        seed: int,
        schedule: str = "constant",
    ):
        super().__init__()
        self.schedule = schedule
        self.model = model
        self.loss_name = loss
        self.loss_fn = LOSSES[loss]
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed
        self.epochs_started = 0

    def forward(self, x) -> torch.Tensor:
        return call_model(self.model, x)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # Dropout masks depend only on (seed, step): a resumed run repeats an
        # uninterrupted one whatever else drew random numbers in between.
        torch.manual_seed(self.seed * 1_000_003 + self.global_step)

    def on_train_epoch_start(self) -> None:
        self.epochs_started += 1
        self._train_sum = 0.0
        self._train_count = 0

    def epoch_train_loss(self) -> float | None:
        """Mean training loss of the current epoch so far (over all devices)."""
        count = getattr(self, "_train_count", 0)
        totals = torch.tensor([getattr(self, "_train_sum", 0.0), float(count)], device=self.device)
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        return float(totals[0] / totals[1]) if float(totals[1]) > 0 else None

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(call_model(self.model, x), y)
        self._train_sum += float(loss.detach()) * len(y)
        self._train_count += len(y)
        self.log(
            "train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True
        )
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        x, y = batch
        loss = self.loss_fn(call_model(self.model, x), y)
        name = "valid_loss" if dataloader_idx == 0 else "trainval_loss"
        self.log(
            name,
            loss,
            on_step=False,
            on_epoch=True,
            batch_size=len(y),
            sync_dist=True,
            add_dataloader_idx=False,
            prog_bar=dataloader_idx == 0,
        )

    def configure_optimizers(self):
        opt = make_optimizer(self.parameters(), self.lr, self.weight_decay)
        if self.schedule == "constant":
            return opt
        total = int(self.trainer.estimated_stepping_batches)
        schedule = self.schedule
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(schedule, step, total)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def make_optimizer(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """The AdamW of every training step, fused into one kernel where torch has one.

    The fused update is one pass over each parameter instead of the foreach
    implementation's several (same arithmetic; ``docs/benchmarks.md`` section 1
    has its share of a step). Devices without a fused kernel get the default.

    Parameters
    ----------
    params : iterable of torch.nn.Parameter
    lr, weight_decay : float
    """
    # every parameter, frozen ones too: the optimizer state's layout in a
    # checkpoint stays that of earlier versions (resume)
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


class HistoryCallback(Callback):
    """Per-epoch losses of one member, kept in (and resumed from) checkpoints.

    Rows are dicts ``{"member", "epoch", "split", "loss"}`` with split one of
    :data:`SPLITS`; "trainval" is the loss on (a fixed subset of) the training
    data in eval mode, i.e. without dropout and with batch-norm running
    statistics, comparable with "valid".

    Parameters
    ----------
    member : str
        Name of the member being trained (e.g. "fold0").
    sink : callable, optional
        Called with the member's rows after every epoch (to rewrite the CSV).
    """

    def __init__(self, member: str, sink=None):
        self.member = member
        self.sink = sink
        self.rows: list[dict] = []

    @property
    def state_key(self) -> str:
        return f"HistoryCallback[{self.member}]"

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Runs after validation and before ModelCheckpoint's hook (Lightning orders
        # checkpoint callbacks last), so an epoch's checkpoint holds its rows.
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        self.rows = [r for r in self.rows if r["epoch"] < epoch]
        values = {
            "train": pl_module.epoch_train_loss(),
            "valid": trainer.callback_metrics.get("valid_loss"),
            "trainval": trainer.callback_metrics.get("trainval_loss"),
        }
        for split in SPLITS:
            value = values[split]
            if value is not None:
                self.rows.append(
                    {"member": self.member, "epoch": epoch, "split": split, "loss": float(value)}
                )
        if self.sink is not None and trainer.is_global_zero:
            self.sink(self.rows)

    def state_dict(self) -> dict:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict.get("rows", []))


def write_history(path: Path, rows: list[dict]) -> None:
    """Rewrite ``history.csv`` at ``path`` atomically (long format, see :data:`HISTORY_FIELDS`)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        w.writeheader()
        w.writerows(rows)


def read_history(path) -> list[dict]:
    """Rows of a ``history.csv`` (epoch as int, loss as float)."""
    with open(path, newline="") as fh:
        return [
            {
                "member": r["member"],
                "epoch": int(r["epoch"]),
                "split": r["split"],
                "loss": float(r["loss"]),
            }
            for r in csv.DictReader(fh)
        ]
