"""The saved-model directory ("bundle") shared by every model kind.

A bundle is a directory holding:

- ``model.json``: kind, the JSON config that rebuilds the model, the input
  contract (marks, bins), the bundle format version, the histexpr version and
  the versions of the main dependencies;
- weights in a non-executable format (``*.safetensors`` for torch models,
  ``.npz`` arrays or LightGBM text for baselines);
- ``normalization.json`` for models that normalise their input;
- ``metrics.json`` and ``history.csv`` when training recorded them.

Bundles are written with :func:`histexpr.atomic.atomic_dir` so a crash never
leaves a directory that looks complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from histexpr._runtime import dependency_versions, histexpr_version
from histexpr.errors import HistexprError

BUNDLE_FORMAT_VERSION = 1
HEADER = "model.json"


@dataclass(frozen=True)
class BundleHeader:
    """Contents of ``model.json``."""

    kind: str
    config: dict
    marks: tuple[str, ...]
    n_bins: int
    format_version: int = BUNDLE_FORMAT_VERSION
    histexpr_version: str = ""
    versions: dict = field(default_factory=dict)
    created: str = ""
    extra: dict = field(default_factory=dict)


def write_header(
    directory,
    kind: str,
    config: dict,
    marks,
    n_bins: int,
    extra: dict | None = None,
) -> BundleHeader:
    """Write ``model.json`` into ``directory`` (which must exist)."""
    __version__ = histexpr_version()

    header = BundleHeader(
        kind=kind,
        config=config,
        marks=tuple(marks),
        n_bins=int(n_bins),
        histexpr_version=__version__,
        versions=dependency_versions(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        extra=extra or {},
    )
    data = {
        "kind": header.kind,
        "format_version": header.format_version,
        "config": header.config,
        "marks": list(header.marks),
        "n_bins": header.n_bins,
        "histexpr_version": header.histexpr_version,
        "versions": header.versions,
        "created": header.created,
        "extra": header.extra,
    }
    (Path(directory) / HEADER).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return header


def read_header(directory) -> BundleHeader:
    """Read and check ``model.json`` of a saved model directory."""
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
    for key, types in (("config", dict), ("marks", list), ("extra", dict), ("versions", dict)):
        if key in data and not isinstance(data[key], types):
            raise HistexprError(f"{path}: malformed model header ({key} is not a {types.__name__})")
    if not all(isinstance(m, str) for m in data.get("marks", [])):
        raise HistexprError(f"{path}: malformed model header (marks are not all names)")
    try:
        return BundleHeader(
            kind=str(data["kind"]),
            config=dict(data["config"]),
            marks=tuple(data["marks"]),
            n_bins=int(data["n_bins"]),
            format_version=version,
            histexpr_version=str(data.get("histexpr_version", "")),
            versions=dict(data.get("versions", {})),
            created=str(data.get("created", "")),
            extra=dict(data.get("extra", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise HistexprError(f"{path}: malformed model header ({exc})") from None


def check_input(header: BundleHeader, marks, n_bins: int, source: str = "input") -> None:
    """Refuse data whose marks or bin count differ from what the model was trained on."""
    if tuple(marks) != tuple(header.marks):
        raise HistexprError(
            f"{source}: marks {','.join(marks)} differ from the model's {','.join(header.marks)}"
        )
    if int(n_bins) != header.n_bins:
        raise HistexprError(
            f"{source}: {n_bins} bins per example, the model expects {header.n_bins}"
        )


def save_metrics(directory, metrics: dict) -> None:
    """Write ``metrics.json`` (plain JSON numbers and strings)."""
    (Path(directory) / "metrics.json").write_text(
        json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )


def load_metrics(directory) -> dict:
    path = Path(directory) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}
