"""The fingerprint of a training run: what a checkpoint directory was trained on.

Every run directory gets ``checkpoints/fingerprint.json`` when training starts:
digests of the training (and validation) data, the training cell types, the
model architecture and the training settings that change the result. Resuming
(``--resume``) compares it with the run being started and refuses, in one line
naming what differs, to continue checkpoints of other data, cells or settings.

Settings that may change on resume are left out: ``optim.epochs`` (raise it to
train longer), ``optim.max_minutes``, the devices and the runner (Dask workers,
progress bar): none of them changes what a finished epoch computes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from histexpr.atomic import atomic_path
from histexpr.config import to_dict
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import HistexprError
from histexpr.training.config import TrainConfig

__all__ = ["FINGERPRINT", "check_fingerprint", "data_digest", "fingerprint"]

FINGERPRINT = "fingerprint.json"
#: Fields of the train config that may differ between a run and its resumption.
RESUMABLE = ("optim.epochs", "optim.max_minutes")
RESUMABLE_GROUPS = ("device", "runner")
#: Rows of X hashed in full (evenly spaced); all rows enter through per-mark sums.
_HASHED_ROWS = 4096


def data_digest(data: HistoneDataset | None) -> str:
    """SHA-256 of a dataset's shape, marks, y, cells, genes, per-mark sums and sampled rows."""
    if data is None:
        return ""
    h = hashlib.sha256()
    h.update(json.dumps([list(data.X.shape), list(data.marks), data.target]).encode())
    for arr in (data.y, data.cell, data.gene):
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
    h.update(data.X.sum(axis=(0, 2), dtype=np.float64).tobytes())
    rows = np.unique(np.linspace(0, len(data) - 1, min(len(data), _HASHED_ROWS)).astype(np.int64))
    if len(data):
        h.update(np.ascontiguousarray(data.X[rows]).tobytes())
    return h.hexdigest()


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def fingerprint(
    train: HistoneDataset,
    valid: HistoneDataset | None,
    cells: list[str],
    cfg: TrainConfig,
    arch: dict | None,
) -> dict:
    """The run's fingerprint as plain JSON data (see the module docstring)."""
    settings = {
        k: v
        for k, v in _flat(to_dict(cfg)).items()
        if k not in RESUMABLE and k.split(".")[0] not in RESUMABLE_GROUPS
    }
    return {
        "train_data": data_digest(train),
        "valid_data": data_digest(valid),
        "cells": [str(c) for c in cells],
        "model": json.loads(json.dumps(arch or {})),
        "train": json.loads(json.dumps(settings)),
    }


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    if old.get("train_data") != new["train_data"]:
        out.append("training data")
    if old.get("valid_data") != new["valid_data"]:
        out.append("validation data")
    if old.get("cells") != new["cells"]:
        out.append(
            f"cells ({','.join(old.get('cells') or []) or 'none'} in the checkpoints, "
            f"{','.join(new['cells'])} now)"
        )
    for part in ("model", "train"):
        a, b = _flat(old.get(part) or {}), _flat(new[part])
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if keys:
            shown = ", ".join(f"{k}={a.get(k)!r}->{b.get(k)!r}" for k in keys[:3])
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            out.append(f"{part} settings ({shown}{more})")
    return out


def check_fingerprint(
    run_dir: Path,
    train: HistoneDataset,
    valid: HistoneDataset | None,
    cells: list[str],
    cfg: TrainConfig,
    arch: dict | None,
    resume: bool,
) -> None:
    """Write ``run_dir/checkpoints/fingerprint.json``; on resume, first compare with it.

    Raises
    ------
    HistexprError
        Resuming checkpoints recorded with other data, cells or settings (one line
        naming what differs). A run without a fingerprint (older histexpr) resumes.
    """
    path = Path(run_dir) / "checkpoints" / FINGERPRINT
    new = fingerprint(train, valid, cells, cfg, arch)
    if resume and path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if not isinstance(old, dict):
            raise HistexprError(f"{path}: unreadable run fingerprint; train without --resume")
        diff = _differences(old, new)
        if diff:
            text = "; ".join(diff)
            if len(text) > 220:
                text = text[:217] + "..."
            raise HistexprError(
                f"{run_dir}: cannot resume, the checkpoints were trained on other {text}"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
