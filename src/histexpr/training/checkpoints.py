"""Crash-safe training checkpoints.

Lightning (2.6) writes a checkpoint by staging it in the *system* temporary
folder and moving it into place with ``shutil.move``; when that folder is on
another file system the move is a copy, so a process killed part-way leaves a
truncated ``last.ckpt`` under the final name, and every kill leaks a staged
file in ``/tmp``. Here checkpoints are written under a temporary name next to
the final one, flushed to disk and renamed, so ``last.ckpt`` is always either
the previous complete checkpoint or the new complete one.

Resuming also checks what an interrupted run left behind: a checkpoint that
does not load (damaged by something else: a full disk, a copy) and an
unreadable ``done.json`` are reported and ignored, never a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from histexpr._runtime import notice
from histexpr.atomic import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that renames complete files into place.

    Loading always uses ``torch.load(weights_only=True)``: a checkpoint file is
    never allowed to run code.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        with atomic_path(path, suffix=".ckpt") as tmp:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return torch.load(path, map_location=map_location or (lambda s, _: s), weights_only=True)


def checkpoint_loads(path: Path) -> bool:
    """Whether ``path`` is a complete checkpoint (it loads with ``weights_only=True``)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # any failure means "not resumable"; the caller reports it
        return False
    return True


def remove_stale_temporaries(ckpt_dir: Path) -> None:
    """Delete temporary files that a killed process left in ``ckpt_dir``."""
    for tmp in Path(ckpt_dir).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()


def resumable_checkpoint(ckpt_dir: Path) -> Path | None:
    """``ckpt_dir/last.ckpt`` when it can be resumed from, else None.

    A damaged ``last.ckpt`` is reported with a warning and removed with the rest
    of ``ckpt_dir``'s checkpoints: the member then trains again from the start,
    which gives the same result because training is seeded per epoch and step.
    """
    ckpt_dir = Path(ckpt_dir)
    remove_stale_temporaries(ckpt_dir)
    last = ckpt_dir / "last.ckpt"
    if not last.is_file():
        return None
    if checkpoint_loads(last):
        return last
    notice(
        f"{last}: damaged checkpoint (it does not load); training this member from the start",
        UserWarning,
        stacklevel=2,
    )
    for ckpt in ckpt_dir.glob("*.ckpt"):
        with contextlib.suppress(OSError):
            ckpt.unlink()
    return None


def write_done(done: Path, info: dict) -> None:
    """Write a member's ``done.json`` atomically (its presence means "finished")."""
    with atomic_path(done) as tmp:
        tmp.write_text(json.dumps(info))


def read_done(done: Path, final: Path) -> dict | None:
    """The record of a finished member, or None when it is absent or unreadable."""
    if not (done.is_file() and final.is_file()):
        return None
    try:
        info = json.loads(done.read_text())
        if isinstance(info, dict) and "result" in info and "history" in info:
            return info
    except (OSError, ValueError):
        pass
    notice(f"{done}: unreadable; training this member again", UserWarning, stacklevel=2)
    return None
