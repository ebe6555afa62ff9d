"""The saved-model directory ("bundle") shared by every model kind, format version 2.

A bundle is a directory holding:

- ``model.json``: kind, the JSON config that rebuilds the model, the input
  contract (marks in order, bins, bin size, window start, target transform,
  training cell types; :mod:`histexpr.estimators.contract`, which also holds the
  one check of data against it, re-exported here), the task, the number of training genes, the SHA-256 of every other file
  of the directory, the bundle format version, the histexpr version and the
  versions of the main dependencies;
- ``genes.txt``: the training genes, one id per line;
- weights in a non-executable format (``*.safetensors`` for torch models,
  ``.npz`` arrays or LightGBM text for baselines);
- ``normalization.json`` for models that normalise their input;
- ``metrics.json`` and ``history.csv`` when training recorded them.
- ``calibration.json`` + ``calibration.npz``: the prediction-interval calibration
  (``histexpr train --intervals``, :mod:`histexpr.estimators.intervals`).

Bundles are written with :func:`bundle_dir` (:func:`histexpr.atomic.atomic_dir`
plus the checksums), so a crash never leaves a directory that looks complete.
:func:`read_header` verifies every recorded checksum before any file is handed
to a library: a damaged or missing file is one line naming it.

Version 1 (no contract beyond marks and bins, no checksums, a flat neural train
config) is still read: missing contract fields are unknown (not checked).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from histexpr._runtime import dependency_versions, histexpr_version
from histexpr.atomic import atomic_dir, atomic_path
from histexpr.config import json_text
from histexpr.errors import HistexprError
from histexpr.estimators.contract import (  # noqa: F401 - the contract, re-exported
    DEFAULT_BIN_SIZE,
    InputContract,
    check_input,
    check_target,
    data_bin_size,
    describe,
    describe_window,
    holds_labels,
    model_task,
    window_upstream,
)

BUNDLE_FORMAT_VERSION = 2
HEADER = "model.json"
#: Key of ``model.json`` holding the comparison of ``--model auto`` (see :func:`record_auto`).
AUTO_KEY = "auto"
GENES = "genes.txt"


@dataclass(frozen=True)
class BundleHeader:
    """Contents of ``model.json`` (and the training genes of ``genes.txt``)."""

    kind: str
    config: dict
    marks: tuple[str, ...]
    n_bins: int
    format_version: int = BUNDLE_FORMAT_VERSION
    histexpr_version: str = ""
    versions: dict = field(default_factory=dict)
    created: str = ""
    extra: dict = field(default_factory=dict)
    bin_size: int | None = None
    target: str = ""
    task: str = "regression"
    train_cells: tuple[str, ...] | None = None
    train_genes: tuple[str, ...] | None = None
    checksums: dict = field(default_factory=dict)
    upstream: int | None = None

    @property
    def contract(self) -> InputContract:
        cells = self.train_cells
        if cells is None:
            cells = tuple(str(c) for c in self.extra.get("cells", ()))
        return InputContract(
            self.marks, self.n_bins, self.bin_size, self.target, cells, self.upstream
        )


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(directory: Path) -> list[str]:
    return sorted(
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p.name != HEADER and not p.name.startswith(".")
    )


def write_header(
    directory,
    kind: str,
    config: dict,
    marks=None,
    n_bins: int | None = None,
    extra: dict | None = None,
    *,
    contract: InputContract | None = None,
    task: str = "regression",
    genes=None,
) -> BundleHeader:
    """Write ``model.json`` (and ``genes.txt`` when ``genes`` are given) into ``directory``.

    The contract comes from ``contract`` or, for older callers, ``marks`` and
    ``n_bins``. Checksums of the other files are added by :func:`seal` (done by
    :func:`bundle_dir` on success), so call this before or after writing them.
    """
    directory = Path(directory)
    if contract is None:
        if marks is None or n_bins is None:
            raise HistexprError("write_header needs a contract or marks and n_bins")
        contract = InputContract(tuple(marks), int(n_bins))
    n_genes = None
    if genes is not None:
        genes = [str(g) for g in genes]
        if any(not g or any(ch.isspace() for ch in g) for g in genes):
            raise HistexprError("gene ids must be non-empty and without whitespace")
        (directory / GENES).write_text("".join(f"{g}\n" for g in genes))
        n_genes = len(genes)
    data = {
        "kind": kind,
        "format_version": BUNDLE_FORMAT_VERSION,
        "config": config,
        "marks": list(contract.marks),
        "n_bins": int(contract.n_bins),
        "bin_size": contract.bin_size,
        "upstream": contract.upstream,
        "target": contract.target,
        "task": task,
        "cells": list(contract.cells),
        "genes": GENES if genes is not None else None,
        "n_genes": n_genes,
        "checksums": {},
        "histexpr_version": histexpr_version(),
        "versions": dependency_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "extra": extra or {},
    }
    _write_json(directory / HEADER, data)
    return _from_data(data, directory / HEADER, genes)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json_text(data))


def seal(directory) -> dict:
    """Record the SHA-256 of every file but ``model.json`` in ``model.json``; return them."""
    directory = Path(directory)
    path = directory / HEADER
    data = json.loads(path.read_text())
    data["checksums"] = {name: sha256(directory / name) for name in _files(directory)}
    _write_json(path, data)
    return data["checksums"]


@contextlib.contextmanager
def bundle_dir(directory) -> Iterator[Path]:
    """:func:`~histexpr.atomic.atomic_dir` for a model directory: sealed (checksums) on success."""
    with atomic_dir(directory) as tmp:
        yield tmp
        seal(tmp)


def _verify(directory: Path, path: Path, checksums: dict) -> None:
    for name, digest in sorted(checksums.items()):
        target = directory / name
        if not isinstance(name, str) or ".." in Path(name).parts or Path(name).is_absolute():
            raise HistexprError(f"{path}: malformed model header (checksum entry {name!r})")
        if not target.is_file():
            raise HistexprError(f"{target}: missing from the model directory")
        if sha256(target) != digest:
            raise HistexprError(
                f"{target}: damaged (SHA-256 differs from the one recorded in {HEADER})"
            )


def read_header(directory, verify: bool = True) -> BundleHeader:
    """Read and check ``model.json`` of a saved model directory.

    With ``verify`` (default) every file with a recorded checksum is checked
    first, so a damaged file never reaches the library that would read it.
    """
    directory = Path(directory)
    path = directory / HEADER
    if not directory.is_dir():
        raise HistexprError(f"{directory}: not a model directory (not a directory)")
    if not path.is_file():
        raise HistexprError(f"{directory}: not a model directory (no {HEADER})")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise HistexprError(f"{path}: unreadable model header ({exc})") from None
    if not isinstance(data, dict):
        raise HistexprError(f"{path}: model header is not a JSON object")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise HistexprError(f"{path}: no bundle format_version; not a histexpr model")
    if version < 1:
        raise HistexprError(
            f"{path}: model format version {version} was never written by histexpr "
            f"(versions 1-{BUNDLE_FORMAT_VERSION} are readable)"
        )
    if version > BUNDLE_FORMAT_VERSION:
        raise HistexprError(
            f"{path}: model format version {version} was written by a newer histexpr "
            f"({data.get('histexpr_version', '?')}); this one reads up to {BUNDLE_FORMAT_VERSION}"
        )
    for key, types in (
        ("config", dict),
        ("marks", list),
        ("extra", dict),
        ("versions", dict),
        ("checksums", dict),
        ("cells", list),
    ):
        if key in data and not isinstance(data[key], types):
            raise HistexprError(f"{path}: malformed model header ({key} is not a {types.__name__})")
    if not all(isinstance(m, str) for m in data.get("marks", [])):
        raise HistexprError(f"{path}: malformed model header (marks are not all names)")
    if version >= 2 and not isinstance(data.get("checksums"), dict):
        raise HistexprError(f"{path}: malformed model header (no checksums)")
    checksums = data.get("checksums") or {}
    if verify:
        _verify(directory, path, checksums)
    genes = None
    if data.get("genes"):
        gpath = directory / GENES
        if not gpath.is_file():
            raise HistexprError(f"{gpath}: missing from the model directory")
        genes = gpath.read_text().split()
        if data.get("n_genes") is not None and len(genes) != data["n_genes"]:
            raise HistexprError(
                f"{gpath}: {len(genes)} genes, the header records {data['n_genes']}"
            )
    return _from_data(data, path, genes)


def _from_data(data: dict, path: Path, genes) -> BundleHeader:
    try:
        cells = data.get("cells")
        bin_size = data.get("bin_size")
        upstream = data.get("upstream")
        return BundleHeader(
            kind=str(data["kind"]),
            config=dict(data["config"]),
            marks=tuple(data["marks"]),
            n_bins=int(data["n_bins"]),
            format_version=int(data["format_version"]),
            histexpr_version=str(data.get("histexpr_version", "")),
            versions=dict(data.get("versions", {})),
            created=str(data.get("created", "")),
            extra=dict(data.get("extra", {})),
            bin_size=None if bin_size is None else int(bin_size),
            target=str(data.get("target") or ""),
            task=str(data.get("task") or data.get("extra", {}).get("task") or "regression"),
            train_cells=None if cells is None else tuple(str(c) for c in cells),
            train_genes=None if genes is None else tuple(genes),
            checksums=dict(data.get("checksums") or {}),
            upstream=None if upstream is None else int(upstream),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise HistexprError(f"{path}: malformed model header ({exc})") from None


def save_metrics(directory, metrics: dict) -> None:
    """Write ``metrics.json``: standard JSON numbers and strings (an undefined metric,
    NaN in memory, is ``null``)."""
    (Path(directory) / "metrics.json").write_text(json_text(metrics))


def load_metrics(directory) -> dict:
    path = Path(directory) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def record_auto(directory, rows: list[dict]) -> None:
    """Add the comparison of an automatic model choice to ``model.json`` (key ``auto``).

    ``rows`` (one per candidate: candidate, score, spread, fit_seconds, folds, chosen,
    skipped_reason) are plain JSON values. ``model.json`` is not among the checksummed
    files, so the directory stays sealed; the header is replaced atomically.
    """
    read_header(directory, verify=False)  # a model directory with a readable header
    path = Path(directory) / HEADER
    data = json.loads(path.read_text())
    data[AUTO_KEY] = rows
    with atomic_path(path) as tmp:
        _write_json(tmp, data)


def read_auto(directory) -> list[dict]:
    """The automatic model choice recorded in ``model.json`` (``[]`` when none)."""
    read_header(directory, verify=False)
    rows = json.loads((Path(directory) / HEADER).read_text()).get(AUTO_KEY) or []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise HistexprError(f"{Path(directory) / HEADER}: malformed model header ({AUTO_KEY})")
    return rows


#: The interval calibration of a model directory (``histexpr train --intervals``).
CALIBRATION_JSON = "calibration.json"
CALIBRATION_NPZ = "calibration.npz"


def write_calibration(directory, meta: dict, arrays: dict) -> None:
    """Add the interval calibration (``calibration.json`` + ``.npz``) to a saved model.

    The directory is rewritten as a whole (:func:`bundle_dir`: copied, extended,
    resealed, swapped in), so a crash leaves the model as it was.

    Parameters
    ----------
    meta : dict
        JSON header (categories, counts, notes).
    arrays : dict of str to np.ndarray, shape (n_category,)
        Sorted absolute residuals per category key of ``meta``.
    """
    import shutil

    import numpy as np

    directory = Path(directory)
    read_header(directory)  # a sealed, intact model
    with bundle_dir(directory) as tmp:
        shutil.copytree(directory, tmp, dirs_exist_ok=True)
        _write_json(tmp / CALIBRATION_JSON, meta)
        np.savez(tmp / CALIBRATION_NPZ, **arrays)


def read_calibration(directory) -> tuple[dict, dict] | None:
    """(JSON header, arrays) of a model's interval calibration; None when it has none."""
    import numpy as np

    directory = Path(directory)
    header = read_header(directory)  # verifies the checksums of both files
    if not {CALIBRATION_JSON, CALIBRATION_NPZ} <= set(header.checksums):
        return None
    path = directory / CALIBRATION_JSON
    try:
        meta = json.loads(path.read_text())
        with np.load(directory / CALIBRATION_NPZ, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise HistexprError(f"{path}: unreadable interval calibration ({exc})") from None
    if not isinstance(meta, dict) or set(meta.get("categories") or {}) - set(arrays):
        raise HistexprError(f"{path}: malformed interval calibration")
    return meta, arrays
