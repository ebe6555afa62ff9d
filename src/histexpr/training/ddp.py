"""Data-parallel (DDP) training support: global batches, ranks and Trainer settings.

Lightning's DDP runs one process per device; each process computes gradients
on its share of a batch and the gradients are averaged. To make a run on ``k``
processes follow the run on one process, batches are defined *globally*:
:class:`GlobalBatches` cuts the same epoch permutation into the same batches of
``batch_size`` examples whatever the number of processes, and process ``r``
takes every ``k``-th example of each global batch. The average of the
per-process mean gradients is then the mean gradient of the global batch
(up to float rounding), so ``devices=2`` trains like ``devices=1`` with the
same ``batch_size``. What still differs:

- batch-norm statistics in training mode would be per process (half batches):
  on GPUs :func:`trainer_kwargs` turns on Lightning's ``sync_batchnorm``; on CPUs,
  where PyTorch's ``SyncBatchNorm`` does not run, :func:`global_batchnorm`
  makes every ``BatchNorm1d`` use the statistics of the global batch
  (:class:`GlobalBatchNorm1d`), so the forward and backward passes equal the
  single-process ones;
- dropout masks are drawn per process;
- float additions happen in another order, so float32 runs agree to rounding
  only until such a difference flips a LeakyReLU at its kink, after which they
  separate as any two float32 runs would; in float64 they agree to ~1e-15.

Lightning's own distributed sampler is therefore switched off
(``use_distributed_sampler=False``); validation data is not sharded (every
process evaluates all of it and the logged mean is the same everywhere).

Processes are started with the ``ddp`` strategy, which re-runs the command
(``python -m histexpr train ...``) once per extra device; ``ddp_spawn`` is
refused because it would pickle the training closure into fresh interpreters
and lose the per-epoch history. Only the global-zero process writes files.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn
from torch.utils.data import Sampler

from histexpr.errors import ConfigError
from histexpr.training.plan import EpochShuffle

__all__ = [
    "GlobalBatchNorm1d",
    "GlobalBatches",
    "global_batchnorm",
    "is_global_zero",
    "shard",
    "trainer_kwargs",
    "training_precision",
    "world",
]

#: Strategies that start processes by pickling the training function (unsupported).
_SPAWNING = ("ddp_spawn", "ddp_fork", "ddp_notebook")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` outside DDP."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def is_global_zero() -> bool:
    """Whether this process should write outputs (rank 0, or no DDP at all).

    Besides an initialised process group, the environment Lightning gives the
    processes it starts (``LOCAL_RANK``, ``NODE_RANK``) or a launcher's ``RANK``
    counts, so a process that never initialised the group does not write either.
    """
    if world()[0] != 0:
        return False
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        if os.environ.get(var, "0") not in ("", "0"):
            return False
    return True


def shard(batch: list[int], rank: int, size: int) -> list[int]:
    """This process's share of a global batch: every ``size``-th index from ``rank``."""
    return batch[rank::size]


class GlobalBatches(Sampler[list[int]]):
    """Batches of an epoch permutation, identical for any number of processes.

    Parameters
    ----------
    n : int
        Examples.
    batch_size : int
        Global batch size (summed over processes).
    seed : int
        Seeds the per-epoch permutation (:class:`~histexpr.training.plan.EpochShuffle`).

    Notes
    -----
    A last global batch too small to give every process two examples is
    dropped: batch norm cannot train on a single example. The rank and world
    size are read when iterating, i.e. inside the process that trains.
    ``sampler`` is exposed so Lightning's ``set_epoch`` reaches the permutation.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.sampler = EpochShuffle(n, seed)
        self.n = n
        self.batch_size = batch_size

    def _n_batches(self, size: int) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest >= 2 * size or (rest and full == 0) else 0)

    def __len__(self) -> int:
        return self._n_batches(world()[1])

    def batches(self, rank: int, size: int) -> list[list[int]]:
        """The current epoch's batches of process ``rank`` out of ``size``."""
        order = list(iter(self.sampler))
        return [
            shard(order[b * self.batch_size : (b + 1) * self.batch_size], rank, size)
            for b in range(self._n_batches(size))
        ]

    def __iter__(self):
        # Lazy, like BatchSampler: the permutation is drawn at the first batch,
        # after Lightning has called set_epoch (also when resuming).
        yield from self.batches(*world())


def _resolved_accelerator(accelerator: str) -> str:
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return accelerator


def training_precision(precision: str, accelerator: str) -> str:
    """The Lightning precision a run uses: ``"auto"`` resolved for the device.

    ``"auto"`` (the default) is ``"bf16-mixed"`` where bfloat16 products are native:
    a CUDA device that supports them, or a CPU with AVX512-BF16 or AMX
    (:func:`histexpr._runtime.native_bf16`; there one training step of the seed
    ConvNet is about 1.7x faster and the held-out error the same, docs/benchmarks.md);
    ``"32-true"`` elsewhere (emulated bf16 is slower than float32). Any other name
    is returned as given.
    """
    if precision != "auto":
        return precision
    device = _resolved_accelerator(accelerator)
    if device in ("gpu", "cuda"):
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    elif device == "cpu":
        from histexpr._runtime import native_bf16

        native = native_bf16()
    else:  # mps, tpu: float32, the precision every backend runs
        native = False
    return "bf16-mixed" if native else "32-true"


def trainer_kwargs(
    accelerator: str, devices: int, num_nodes: int, strategy: str, precision: str = "32-true"
) -> dict:
    """Keyword arguments of ``lightning.Trainer`` for the device settings.

    Parameters
    ----------
    accelerator : str
        "cpu", "gpu", "auto", ...
    devices, num_nodes : int
        Processes per node and nodes; more than one in total means DDP.
    strategy : str
        "auto" (DDP when several processes), "ddp", or any other Lightning
        strategy name; the spawning ones are refused (see the module docstring).
    precision : str
        A Lightning precision or ``"auto"`` (:func:`training_precision`).
    """
    if devices < 1 or num_nodes < 1:
        raise ConfigError(f"devices and num_nodes must be positive, got {devices}, {num_nodes}")
    if strategy in _SPAWNING:
        raise ConfigError(
            f"strategy {strategy!r} is not supported; use 'ddp' (one process per device, "
            "started by re-running the command)"
        )
    parallel = devices * num_nodes > 1
    if parallel and strategy == "auto":
        strategy = "ddp"
    if parallel and strategy == "ddp" and "MASTER_ADDR" not in os.environ:
        # Single-node runs talk over loopback; multi-node launchers set their own address.
        os.environ["MASTER_ADDR"] = "127.0.0.1"
    return {
        "accelerator": accelerator,
        "devices": devices,
        "num_nodes": num_nodes,
        "strategy": strategy,
        "sync_batchnorm": parallel and _resolved_accelerator(accelerator) != "cpu",
        "use_distributed_sampler": False,
        "precision": training_precision(precision, accelerator),
    }


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` whose training statistics are those of the global batch.

    Outside a multi-process group, or in eval mode, it is ``BatchNorm1d``. In
    training under DDP the per-channel sums, sums of squares and counts are added
    over processes with a differentiable all-reduce, so gradients flow through
    the shared statistics as in one process (the idea of ``SyncBatchNorm``, which
    PyTorch implements for GPUs only). Same parameters and buffers as
    ``BatchNorm1d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : torch.Tensor, shape (b, channels) or (b, channels, length)
        """
        if not self.training or world()[1] < 2:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, 2] if x.dim() == 3 else [0]
        shape = (1, -1, 1) if x.dim() == 3 else (1, -1)
        c = x.shape[1]
        count = torch.full((1,), x.numel() / c, dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum
                m = 1.0 / float(self.num_batches_tracked) if m is None else m
                self.running_mean.mul_(1 - m).add_(m * mean)
                # Running variance is unbiased, as in BatchNorm.
                self.running_var.mul_(1 - m).add_(m * var * n / (n - 1).clamp_min(1.0))
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


@contextlib.contextmanager
def global_batchnorm(module: nn.Module):
    """Within the context, every plain ``BatchNorm1d`` of ``module`` is a
    :class:`GlobalBatchNorm1d` (same objects and parameters; the class is
    switched in place and switched back on exit, leaving the model pure)."""
    switched = [m for m in module.modules() if type(m) is nn.BatchNorm1d]
    for m in switched:
        m.__class__ = GlobalBatchNorm1d
    try:
        yield module
    finally:
        for m in switched:
            m.__class__ = nn.BatchNorm1d
