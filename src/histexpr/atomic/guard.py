"""The guard every command output goes through, and what counts as histexpr's own.

:func:`guard_output` refuses, as one line, to write over an input of the
command, over a folder or file that histexpr did not write, or over a previous
output without ``force``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from histexpr.errors import HistexprError

#: Output kinds known to :func:`guard_output`, with the words its messages use.
OUTPUT_KINDS = {
    "model-dir": "model directory",
    "run-dir": "run directory",
    "explain-dir": "explanation folder",
    "dataset-file": "dataset file",
    "table-file": "CSV table",
    "report-file": "HTML report",
}
_DIR_KINDS = {"model-dir", "run-dir", "explain-dir"}
#: Files a DeepChrome cell-type folder holds (written by histexpr.data.deepchrome).
_DEEPCHROME_FILES = {"train.csv", "valid.csv", "test.csv"}
#: First CSV header fields of the tables histexpr writes (submission, tidy
#: predictions, evaluation tables).
_TABLE_HEADERS = ("id,", "cell,", "model,")
_PARQUET_MAGIC = b"PAR1"
#: Files of an explanation folder (histexpr.workflows.explain).
_EXPLAIN_FILE = re.compile(
    r"^(explain\.json|attention\.npz|(attributions|genes)_\w+\.npz|[\w.-]+\.png)$"
)
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: ``uns["histexpr"]["format"]`` of the AnnData predictions (histexpr.data.h5ad.FORMAT).
_H5AD_FORMAT = "histexpr-predictions"
_ZIP_COMMENT = b"histexpr"


# --------------------------------------------------------------------------- what is ours


def _entries(path: Path) -> list[str]:
    """Visible entries of a folder (our hidden temporaries do not count)."""
    try:
        return [p.name for p in path.iterdir() if not p.name.startswith(".")]
    except OSError:
        return []


def _json_file(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_model_dir(path: str | os.PathLike) -> bool:
    """A histexpr model directory: ``model.json`` with a ``format_version``, or a
    training run that was interrupted (only ``checkpoints/`` and ``history.csv``)."""
    path = Path(path)
    header = _json_file(path / "model.json")
    if header is not None and "format_version" in header:
        return True
    names = set(_entries(path))
    return (
        "checkpoints" in names
        and (path / "checkpoints").is_dir()
        and names
        <= {
            "checkpoints",
            "history.csv",
        }
    )


def is_run_dir(path: str | os.PathLike) -> bool:
    """A histexpr run directory: ``run.json`` of a run, or an interrupted one
    (nothing but ``models/``)."""
    path = Path(path)
    run = _json_file(path / "run.json")
    if run is not None and (run.get("format") == "histexpr-run" or "command" in run):
        return True
    names = set(_entries(path))
    return names == {"models"} and (path / "models").is_dir()


def is_histexpr_dir(path: str | os.PathLike) -> bool:
    """Whether histexpr may replace the folder ``path``: it is empty, a model or
    run directory, an explanation folder, or a DeepChrome cell-type folder."""
    path = Path(path)
    names = set(_entries(path))
    if not names:
        return True
    if is_model_dir(path) or is_run_dir(path):
        return True
    if all(_EXPLAIN_FILE.match(n) for n in names):
        return True
    return names <= _DEEPCHROME_FILES and all((path / n).is_file() for n in names)


def _head(path: Path, n: int = 8192) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def is_histexpr_file(path: str | os.PathLike, kind: str) -> bool:
    """Whether the existing file ``path`` is a ``kind`` output histexpr wrote.

    dataset-file: a histexpr HDF5 dataset (``format`` attribute) or an npz that
    histexpr wrote (zip comment); table-file: a Parquet file, an AnnData file of
    predictions histexpr wrote, or a CSV whose header starts like ours (``id,``,
    ``cell,``, ``model,``); report-file: a histexpr HTML report.
    """
    path = Path(path)
    head = _head(path)
    if kind == "dataset-file":
        if head.startswith(_HDF5_MAGIC):
            try:
                import h5py

                with h5py.File(path, "r") as f:
                    return f.attrs.get("format") == "histexpr-dataset"
            except (OSError, ValueError, ImportError):
                return False
        if head.startswith(b"PK"):
            import zipfile

            try:
                with zipfile.ZipFile(path) as zf:
                    return zf.comment.startswith(_ZIP_COMMENT)
            except (OSError, zipfile.BadZipFile, ValueError):
                return False
        return False
    if kind == "table-file" and head.startswith(_PARQUET_MAGIC):
        return True
    if kind == "table-file" and head.startswith(_HDF5_MAGIC):
        return _is_our_h5ad(path)
    if b"\0" in head:
        return False
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    if kind == "table-file":
        return text.startswith(_TABLE_HEADERS)
    if kind == "report-file":
        return text.startswith("<!DOCTYPE html>") and "<title>histexpr report" in text
    return False


def _is_our_h5ad(path: Path) -> bool:
    """An AnnData file of predictions histexpr wrote (``uns/histexpr/format``)."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            value = f["uns/histexpr/format"][()] if "uns/histexpr/format" in f else b""
    except (OSError, ValueError, KeyError, TypeError, ImportError):
        return False
    value = value.decode() if isinstance(value, bytes) else str(value)
    return value == _H5AD_FORMAT


# --------------------------------------------------------------------------- the guard


def _resolve(path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path)))).resolve()


def guard_output(
    path: str | os.PathLike,
    kind: str,
    inputs: Iterable[str | os.PathLike | None] = (),
    force: bool = False,
) -> Path:
    """Refuse (one line) an output that would destroy anything but our own output.

    Parameters
    ----------
    path : str or PathLike
        The output the command is about to write.
    kind : str
        One of :data:`OUTPUT_KINDS`: "model-dir", "run-dir", "explain-dir"
        (folders) or "dataset-file", "table-file", "report-file" (files).
    inputs : iterable of paths
        The command's inputs (None entries are skipped): the output may be none
        of them, and a folder output may not hold one.
    force : bool
        Replace an existing output of the same kind that histexpr wrote.
        Nothing else is ever replaced.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    HistexprError
        ``.``/``..``/empty names, a file where a folder is expected (or the
        reverse), a folder that does not exist for a file output, an input of
        the command, anything histexpr did not write, or an existing output
        without ``force``.
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    noun = OUTPUT_KINDS[kind]
    is_dir_kind = kind in _DIR_KINDS
    raw = os.fspath(path)
    if raw.strip() in ("", ".", "..") or Path(raw).name in ("", ".", ".."):
        raise HistexprError(f"{raw or repr(raw)}: not a {noun} name; give a new name")
    out = _resolve(path)
    cwd = _resolve(os.getcwd())
    if out == Path(out.anchor) or out == cwd or out in cwd.parents:
        raise HistexprError(f"{raw}: would replace a folder above the current one")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise HistexprError(f"{raw}: {parent} is a file, not a folder")
            break
    if not is_dir_kind and not out.parent.is_dir():
        raise HistexprError(f"{raw}: folder {out.parent} does not exist; create it first")
    for item in inputs:
        if item is None:
            continue
        src = _resolve(item)
        if src == out:
            raise HistexprError(f"{raw}: is an input of this command; choose another output")
        if is_dir_kind and out in src.parents:
            raise HistexprError(f"{raw}: holds the input {item}; choose another output")
        if out.exists() and src.exists() and os.path.samefile(out, src):
            raise HistexprError(f"{raw}: is an input of this command; choose another output")
    if not (out.exists() or out.is_symlink()):
        return Path(path)
    if out.is_dir():
        if not is_dir_kind:
            raise HistexprError(f"{raw}: is a folder; a {noun} is a file, give a file name")
        if not _entries(out):
            return Path(path)
        ours = {"model-dir": is_model_dir, "run-dir": is_run_dir}.get(kind, is_histexpr_dir)
        if not ours(out):
            raise HistexprError(
                f"{raw}: is a folder that is not a histexpr {noun}; refusing to replace it "
                "(choose a new name)"
            )
    else:
        if is_dir_kind:
            raise HistexprError(f"{raw}: is a file; a {noun} is a folder, give a new name")
        if not is_histexpr_file(out, kind):
            raise HistexprError(
                f"{raw}: exists and is not a {noun} histexpr wrote; refusing to replace it "
                "(choose a new name)"
            )
    if not force:
        raise HistexprError(f"{raw}: exists (a {noun}); use --force to replace it")
    return Path(path)
