"""The run directory: its file names, its versioned header, one writer and one reader.

A run directory is what ``histexpr demo`` (and :func:`histexpr.workflows.experiment.run_experiment`)
writes, the way :mod:`histexpr.estimators.bundle` owns the model directory::

    run.json            header: {"format": "histexpr-run", "format_version": 1, command, created,
                        histexpr_version, config, data: {path, n_examples, cells, train_cells,
                        unseen_cells, n_test, target}}
    results.csv         metrics per model and group (seen / unseen / all)
    per_cell.csv        metrics per model and cell type
    predictions.csv     cell, gene, y and one column of predictions per model
    data_summary.json   optional: per-cell-type input summary (written by the report layer)
    models/<name>/      one saved model per kind (a model directory)
    explain/            optional: the output of ``histexpr explain`` (an explanation folder)
    report.html         optional: the output of ``histexpr report`` (its default path)

Nothing else writes inside a run directory: ``explain/`` and ``report.html`` are the two
slots other commands may fill (``histexpr.atomic.RUN_SLOTS``), and :func:`start_run`
clears an earlier run before a new one is written into the same folder.

An explanation folder holds ``explain.json`` (its header: format, the model directory it
explains, methods, cells), ``attributions_<method>.npz`` (per-cell-type means),
``genes_<method>.npz`` (per-gene maps), ``attention.npz`` for attention models, and PNG figures.

``run.json`` is written last, so a directory that has it is complete. Runs written before the
header was versioned (no ``"format"`` key) are read as version 0. Every malformed file raises a
one-line :class:`~histexpr.errors.HistexprError` naming the file and the key.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr import atomic
from histexpr._runtime import histexpr_version
from histexpr.atomic import atomic_path
from histexpr.config import json_text
from histexpr.errors import HistexprError

RUN_FORMAT = "histexpr-run"
RUN_FORMAT_VERSION = 1
RUN_JSON = "run.json"
RESULTS = "results.csv"
PER_CELL = "per_cell.csv"
PREDICTIONS = "predictions.csv"
DATA_SUMMARY = "data_summary.json"
MODELS = "models"
EXPLAIN = "explain"
#: The header file of a model directory (owned by :mod:`histexpr.estimators.bundle`, whose
#: layer is above this one; ``tests/test_runs.py`` checks the two names agree).
MODEL_HEADER = "model.json"
HISTORY = "history.csv"
#: Files of an explanation folder (``RUN_DIR/explain/`` or ``MODEL_DIR.explain/``).
EXPLAIN_JSON = "explain.json"
ATTENTION = "attention.npz"
EXPLAIN_FORMAT = "histexpr-explain"
EXPLAIN_FORMAT_VERSION = 1
#: Columns of ``predictions.csv`` that are not predictions.
PREDICTION_META = ("cell", "gene", "y", "seen", "group")
#: Optional: the demo's differential table (``histexpr.workflows.demo.run_diff_demo``).
DIFFERENTIAL = "differential.csv"
#: Optional, in an explanation folder of an atlas model: per gene its prior and prediction.
ATLAS_PRIOR = "atlas_prior.csv"
ATLAS_PRIOR_COLUMNS = ("cell", "gene", "prior", "prediction", "observed")
#: Commands whose unversioned run.json is read as version 0.
_LEGACY_COMMANDS = ("experiment", "demo")


@dataclass(frozen=True)
class RunHeader:
    """Contents of ``run.json``.

    Attributes
    ----------
    format_version : int
        0 for runs written before the header was versioned.
    command : str
    created, histexpr_version : str
    config : dict
        The experiment configuration, as JSON.
    data_path : str or None
        The data file the run was trained on (absolute), when known.
    n_examples, n_test : int or None
    cells, train_cells, unseen_cells : tuple of str
        Every cell type; those trained on (*seen*); those held out (*unseen*).
    target : str or None
    """

    format_version: int
    command: str = ""
    created: str = ""
    histexpr_version: str = ""
    config: dict = field(default_factory=dict)
    data_path: str | None = None
    n_examples: int | None = None
    n_test: int | None = None
    cells: tuple[str, ...] = ()
    train_cells: tuple[str, ...] = ()
    unseen_cells: tuple[str, ...] = ()
    target: str | None = None


def is_run_dir(path) -> bool:
    """Whether ``path`` is a directory with a ``run.json``."""
    return (Path(path) / RUN_JSON).is_file()


def start_run(run_dir) -> Path:
    """Make ``run_dir`` a run directory being written: ``models/`` created, and an earlier
    run there (finished or interrupted) removed first, so no file of it mixes with the
    new one. Callers guard ``run_dir`` first (``histexpr.atomic.guard_output``: an earlier
    run is replaced only with ``--force``, anything else never).
    """
    run_dir = Path(run_dir)
    if run_dir.is_dir() and not run_dir.is_symlink() and atomic.is_run_dir(run_dir):
        shutil.rmtree(run_dir)
    (run_dir / MODELS).mkdir(parents=True, exist_ok=True)
    return run_dir


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_run(
    run_dir,
    *,
    results: pd.DataFrame,
    per_cell: pd.DataFrame,
    cell: np.ndarray,
    gene: np.ndarray,
    y: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    config: dict,
    n_examples: int,
    cells: Sequence[str],
    train_cells: Sequence[str],
    unseen_cells: Sequence[str],
    target: str | None,
    data_path=None,
    command: str = "experiment",
    group: np.ndarray | None = None,
) -> Path:
    """Write the tables and the header of a run directory; ``run.json`` last.

    Parameters
    ----------
    results, per_cell : pandas.DataFrame
        Metrics per model and group, and per model and cell type.
    cell, gene, y : np.ndarray, shape (n_test,)
        The scored examples.
    predictions : mapping of str to np.ndarray, shape (n_test,)
        One column per model.
    group : np.ndarray, shape (n_test,), optional
        Evaluation group per example (``histexpr.evaluate.GROUPS``); written as the
        ``group`` column of ``predictions.csv`` (runs without it are still read).
    config : dict
        The configuration as JSON.

    Returns
    -------
    Path
        ``run.json``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(results, run_dir / RESULTS)
    _write_csv(per_cell, run_dir / PER_CELL)
    preds = pd.DataFrame({"cell": cell, "gene": gene, "y": y})
    if group is not None:
        preds["group"] = np.asarray(group).astype(str)
    for name, yhat in predictions.items():
        preds[name] = yhat
    _write_csv(preds, run_dir / PREDICTIONS)
    header = {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "command": command,
        "histexpr_version": histexpr_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config,
        "data": {
            "path": None if data_path is None else str(Path(data_path).resolve()),
            "n_examples": int(n_examples),
            "cells": [str(c) for c in cells],
            "train_cells": [str(c) for c in train_cells],
            "unseen_cells": [str(c) for c in unseen_cells],
            "n_test": len(preds),
            "target": target,
        },
    }
    path = run_dir / RUN_JSON
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(header, sort_keys=False))
    return path


def _names(path: Path, data: dict, key: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HistexprError(f"{path}: malformed run header (data.{key} is not a list of names)")
    return tuple(value)


def _optional_int(path: Path, data: dict, key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise HistexprError(f"{path}: malformed run header (data.{key} is not an integer)")
    return value


def read_header(run_dir) -> RunHeader:
    """Read and check ``RUN_DIR/run.json`` (format versions 0 and 1)."""
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        raise HistexprError(f"{run_dir}: not a run directory (no {RUN_JSON})")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise HistexprError(f"{path}: unreadable run header ({exc})") from None
    if not isinstance(raw, dict):
        raise HistexprError(f"{path}: run header is not a JSON object")
    if "format" in raw:
        if raw["format"] != RUN_FORMAT:
            raise HistexprError(f"{path}: format is {raw['format']!r}, not {RUN_FORMAT!r}")
        version = raw.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise HistexprError(f"{path}: malformed run header (format_version {version!r})")
        if version > RUN_FORMAT_VERSION:
            raise HistexprError(
                f"{path}: run format version {version} was written by a newer histexpr "
                f"({raw.get('histexpr_version', '?')}); this one reads up to {RUN_FORMAT_VERSION}"
            )
    elif raw.get("command") in _LEGACY_COMMANDS or ("command" not in raw and "data" in raw):
        version = 0
    else:
        raise HistexprError(f"{path}: not a histexpr run header (no 'format' key)")
    data = raw.get("data", {})
    if not isinstance(data, dict):
        raise HistexprError(f"{path}: malformed run header (data is not an object)")
    config = raw.get("config", {})
    if config is not None and not isinstance(config, dict):
        raise HistexprError(f"{path}: malformed run header (config is not an object)")
    for key in ("path", "target"):
        if not isinstance(data.get(key, ""), (str, type(None))):
            raise HistexprError(f"{path}: malformed run header (data.{key} is not a string)")
    return RunHeader(
        format_version=version,
        command=str(raw.get("command", "")),
        created=str(raw.get("created", "")),
        histexpr_version=str(raw.get("histexpr_version", "")),
        config=dict(config or {}),
        data_path=data.get("path"),
        n_examples=_optional_int(path, data, "n_examples"),
        n_test=_optional_int(path, data, "n_test"),
        cells=_names(path, data, "cells"),
        train_cells=_names(path, data, "train_cells"),
        unseen_cells=_names(path, data, "unseen_cells"),
        target=data.get("target"),
    )


def cell_label(cell: str, train_cells: Sequence[str], unseen_cells: Sequence[str]) -> str:
    """``"E003 (seen)"``, ``"E071 (unseen)"``, or the plain id when the run does not say."""
    if cell in unseen_cells:
        return f"{cell} (unseen)"
    return f"{cell} (seen)" if cell in train_cells else cell


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    if not path.is_file():
        raise HistexprError(f"{path}: missing from the run directory")
    try:
        df = pd.read_csv(path, float_precision="round_trip")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HistexprError(f"{path}: unreadable table ({msg})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise HistexprError(f"{path}: no column(s) {', '.join(missing)}")
    return df


@dataclass
class Run:
    """A run directory opened for reading (use :func:`read_run`).

    Attributes
    ----------
    dir : Path
    header : RunHeader
    """

    dir: Path
    header: RunHeader
    _cache: dict = field(default_factory=dict, repr=False)

    train_cells = property(lambda self: self.header.train_cells)
    unseen_cells = property(lambda self: self.header.unseen_cells)
    explain_dir = property(lambda self: self.dir / EXPLAIN)

    def is_unseen(self, cell: str) -> bool:
        return str(cell) in self.header.unseen_cells

    def label(self, cell: str) -> str:
        """``"E003 (seen)"`` / ``"E071 (unseen)"``; the plain id when the run does not say."""
        return cell_label(str(cell), self.header.train_cells, self.header.unseen_cells)

    def labels(self, cells: Sequence[str]) -> dict[str, str]:
        return {str(c): self.label(c) for c in cells}

    def _table(self, name: str, required: Sequence[str]) -> pd.DataFrame:
        if name not in self._cache:
            self._cache[name] = _read_csv(self.dir / name, required)
        return self._cache[name]

    def results(self) -> pd.DataFrame:
        """``results.csv``: one row per model and group."""
        return self._table(RESULTS, ("model", "group"))

    def per_cell(self) -> pd.DataFrame:
        """``per_cell.csv``: one row per model and cell type."""
        return self._table(PER_CELL, ("model", "cell", "pearson"))

    def predictions(self) -> pd.DataFrame:
        """``predictions.csv``: cell, gene, y and one column per model (cell read as text)."""
        if PREDICTIONS not in self._cache:
            df = _read_csv(self.dir / PREDICTIONS, ("cell", "gene", "y"))
            df["cell"] = df["cell"].astype(str)
            self._cache[PREDICTIONS] = df
        return self._cache[PREDICTIONS]

    def prediction_columns(self) -> list[str]:
        """Model columns of ``predictions.csv``; the simulator's oracle (a reference) last."""
        cols = [c for c in self.predictions().columns if c not in PREDICTION_META]
        return sorted(cols, key=lambda c: c == "oracle")

    def model_metrics(self, model: str) -> dict[str, dict]:
        """Group -> metrics of one model from ``results.csv``."""
        rows = self.results()[self.results()["model"] == model]
        return {str(r["group"]): r.drop(["model", "group"]).to_dict() for _, r in rows.iterrows()}

    def model_dirs(self) -> dict[str, Path]:
        """Name -> directory of every saved model under ``models/`` (sorted by name)."""
        root = self.dir / MODELS
        if not root.is_dir():
            return {}
        return {d.name: d for d in sorted(root.iterdir()) if (d / MODEL_HEADER).is_file()}

    def histories(self) -> dict[str, Path]:
        """Name -> ``history.csv`` of the models that recorded one (baselines do not)."""
        return {n: d / HISTORY for n, d in self.model_dirs().items() if (d / HISTORY).is_file()}

    def has_differential(self) -> bool:
        return (self.dir / DIFFERENTIAL).is_file()

    def differential(self) -> pd.DataFrame:
        """``differential.csv`` (check :meth:`has_differential` first)."""
        return self._table(DIFFERENTIAL, ("model", "pair"))

    def has_data_summary(self) -> bool:
        return (self.dir / DATA_SUMMARY).is_file()

    def data_summary(self) -> dict:
        """``data_summary.json`` (check :meth:`has_data_summary` first)."""
        path = self.dir / DATA_SUMMARY
        try:
            out = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise HistexprError(f"{path}: unreadable data summary ({exc})") from None
        if not isinstance(out, dict) or not isinstance(out.get("cells"), dict):
            raise HistexprError(f"{path}: malformed data summary (no 'cells' object)")
        for key in ("marks", "n_examples", "n_genes"):
            if key not in out:
                raise HistexprError(f"{path}: malformed data summary (no {key!r})")
        return out


def attribution_file(method: str) -> str:
    """Name of the per-cell-type mean attributions of ``method`` in an explanation folder."""
    return f"attributions_{method}.npz"


def gene_attribution_file(method: str) -> str:
    """Name of the per-gene attributions of ``method`` in an explanation folder."""
    return f"genes_{method}.npz"


def model_explain_dir(model_dir) -> Path:
    """The default explanation folder of a model directory: ``MODEL_DIR.explain`` next to it."""
    model_dir = Path(model_dir)
    return model_dir.with_name(model_dir.name + ".explain")


def has_explanation(folder) -> bool:
    """Whether ``folder`` holds an explanation (an ``explain.json``)."""
    return (Path(folder) / EXPLAIN_JSON).is_file()


def read_explain_info(folder) -> dict:
    """The header ``explain.json`` of an explanation folder, checked.

    Folders written before the header was versioned have no ``format`` key and no
    ``model_dir``; they are returned as they are.
    """
    path = Path(folder) / EXPLAIN_JSON
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HistexprError(f"{path}: unreadable explanation header ({exc})") from None
    if not isinstance(info, dict):
        raise HistexprError(f"{path}: explanation header is not a JSON object")
    if "format" in info and info["format"] != EXPLAIN_FORMAT:
        raise HistexprError(f"{path}: format is {info['format']!r}, not {EXPLAIN_FORMAT!r}")
    version = info.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise HistexprError(f"{path}: malformed explanation header (format_version)")
    if version > EXPLAIN_FORMAT_VERSION:
        raise HistexprError(
            f"{path}: explanation format version {version} was written by a newer histexpr"
        )
    for key in ("methods", "cells", "marks"):
        value = info.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise HistexprError(f"{path}: malformed explanation header ({key} is not a list)")
    if info.get("model_dir") is not None and not isinstance(info["model_dir"], str):
        raise HistexprError(f"{path}: malformed explanation header (model_dir is not a path)")
    return info


def read_atlas_prior(folder) -> pd.DataFrame | None:
    """``atlas_prior.csv`` of an explanation folder (None when absent; one line if malformed)."""
    path = Path(folder) / ATLAS_PRIOR
    if not path.is_file():
        return None
    df = _read_csv(path, ATLAS_PRIOR_COLUMNS)
    df["cell"] = df["cell"].astype(str)
    return df


def read_run(run_dir) -> Run:
    """Open a run directory: its header is read and checked now, its tables on first use."""
    run_dir = Path(run_dir)
    return Run(run_dir, read_header(run_dir))
