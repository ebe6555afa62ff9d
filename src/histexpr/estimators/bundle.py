"""The saved-model directory ("bundle") shared by every model kind, format version 2.

A bundle is a directory holding:

- ``model.json``: kind, the JSON config that rebuilds the model, the input
  contract (marks in order, bins, bin size, target transform, training cell
  types), the task, the number of training genes, the SHA-256 of every other file
  of the directory, the bundle format version, the histexpr version and the
  versions of the main dependencies;
- ``genes.txt``: the training genes, one id per line;
- weights in a non-executable format (``*.safetensors`` for torch models,
  ``.npz`` arrays or LightGBM text for baselines);
- ``normalization.json`` for models that normalise their input;
- ``metrics.json`` and ``history.csv`` when training recorded them.

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
from histexpr.atomic import atomic_dir
from histexpr.config import json_text
from histexpr.data.dataset import TARGET_PASSTHROUGH
from histexpr.errors import HistexprError

BUNDLE_FORMAT_VERSION = 2
HEADER = "model.json"
GENES = "genes.txt"
#: Bin width assumed for data that does not record one.
DEFAULT_BIN_SIZE = 100


@dataclass(frozen=True)
class InputContract:
    """What a model was trained on and accepts: checked by :func:`check_input`.

    Attributes
    ----------
    marks : tuple of str
        Mark names in the order of axis 1 of ``X``.
    n_bins : int
    bin_size : int or None
        Bin width in bp (None: unknown, a version-1 bundle).
    target : str
        Target transform of the training data, e.g. "log2(RPKM+1)" ("": unknown).
    cells : tuple of str
        Training cell types.
    """

    marks: tuple[str, ...]
    n_bins: int
    bin_size: int | None = DEFAULT_BIN_SIZE
    target: str = ""
    cells: tuple[str, ...] = ()

    @classmethod
    def of(cls, data) -> InputContract:
        """The contract of a training dataset (``bin_size`` from ``data.meta``)."""
        return cls(
            tuple(data.marks),
            int(data.n_bins),
            _bin_size(data),
            str(getattr(data, "target", "") or ""),
            tuple(str(c) for c in getattr(data, "cells", ())),
        )


def _bin_size(data) -> int:
    value = getattr(data, "bin_size", None)
    if value is None:
        value = (getattr(data, "meta", None) or {}).get("bin_size", DEFAULT_BIN_SIZE)
    return int(value)


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

    @property
    def contract(self) -> InputContract:
        cells = self.train_cells
        if cells is None:
            cells = tuple(str(c) for c in self.extra.get("cells", ()))
        return InputContract(self.marks, self.n_bins, self.bin_size, self.target, cells)


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
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise HistexprError(f"{path}: malformed model header ({exc})") from None


def check_input(
    contract,
    data,
    n_bins: int | None = None,
    source: str = "input",
    *,
    bin_size: int | None = None,
    target: str | None = None,
    targets: bool = False,
) -> None:
    """Refuse data the model was not trained for, in one line naming both sides.

    Parameters
    ----------
    contract : InputContract or BundleHeader
    data : HistoneDataset, an open HDF5 reader, or a sequence of mark names
        With names, ``n_bins`` (and optionally ``bin_size``, ``target``) give the rest.
    source : str
        How the data is named in the message (a path).
    targets : bool
        The data's targets will be compared with predictions (evaluation): its
        target transform must be the model's.
    """
    # Marks by name: extra marks / another order are conformed by the estimator
    # (data.dataset.conform_marks); missing ones only pass for a mark-dropout model.
    allow_missing = isinstance(contract, BundleHeader) and (
        float((contract.config.get("train") or {}).get("optim", {}).get("mark_dropout", 0) or 0) > 0
    )
    if isinstance(contract, BundleHeader):
        contract = contract.contract
    if hasattr(data, "marks"):
        marks, n_bins = tuple(data.marks), int(data.n_bins)
        bin_size = _bin_size(data) if bin_size is None else bin_size
        if target is None and (
            getattr(data, "y", None) is not None or getattr(data, "has_target", False)
        ):
            target = str(getattr(data, "target", "") or "")
    else:
        marks = tuple(data)
    missing = [m for m in contract.marks if m not in marks]
    if missing and not allow_missing:
        raise HistexprError(
            f"{source}: missing mark(s) {', '.join(missing)} the model was trained on "
            f"(data has {', '.join(marks)}; train with --set mark_dropout=p to allow it)"
        )
    if n_bins is not None and int(n_bins) != contract.n_bins:
        raise HistexprError(
            f"{source}: {n_bins} bins per example, the model expects {contract.n_bins}"
        )
    if bin_size is not None and contract.bin_size is not None and bin_size != contract.bin_size:
        raise HistexprError(
            f"{source}: {bin_size}-bp bins, the model was trained on {contract.bin_size}-bp bins"
        )
    unknown = (None, "", TARGET_PASSTHROUGH)  # "as-given": the file does not say which
    if targets and target not in unknown and contract.target not in unknown:
        same = target == contract.target
    else:
        same = True
    if not same:
        raise HistexprError(
            f"{source}: target {target!r} differs from the model's {contract.target!r}; "
            "scores against other targets are meaningless"
        )


def save_metrics(directory, metrics: dict) -> None:
    """Write ``metrics.json``: standard JSON numbers and strings (an undefined metric,
    NaN in memory, is ``null``)."""
    (Path(directory) / "metrics.json").write_text(json_text(metrics))


def load_metrics(directory) -> dict:
    path = Path(directory) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}
