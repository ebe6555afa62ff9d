"""The guard every command output goes through, and what counts as histexpr's own.

:func:`guard_output` refuses, as one line, to write over an input of the
command or a folder inside an input folder, over a folder or file that histexpr
did not write, over a previous output without ``force`` (default output paths
included), and anywhere inside a model or run directory: those have one writer
each (:mod:`histexpr.estimators.bundle`, :mod:`histexpr.runs`), and only the
slots a run directory keeps for its own explanation and report
(:data:`RUN_SLOTS`) are written there by other commands. With ``resume`` it
accepts only an interrupted training run, which is continued, not replaced.
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
    "table-file": "table",
    "report-file": "HTML report",
    "protocol-dir": "protocol folder",
    "download-dir": "download folder",
}
_DIR_KINDS = {"model-dir", "run-dir", "explain-dir", "protocol-dir", "download-dir"}
#: Outputs of other commands that a run directory keeps as its own parts, by name:
#: its explanation (``histexpr.runs.EXPLAIN``) and its default report
#: (``histexpr.report.default_report_path``). Nothing else is written inside a
#: model or run directory except by its owner.
RUN_SLOTS = {"explain": "explain-dir", "report.html": "report-file"}
#: The table ``histexpr protocol`` writes into its folder, and its first columns.
PROTOCOL_TABLE = "protocol.csv"
_PROTOCOL_HEADER = "cell,n_train,"
_PROTOCOL_NAMES = {PROTOCOL_TABLE, "models", "model"}
#: Files a DeepChrome cell-type folder holds (written by histexpr.data.deepchrome).
_DEEPCHROME_FILES = {"train.csv", "valid.csv", "test.csv"}
#: First CSV header fields of the tables histexpr writes (submission, tidy
#: predictions, evaluation tables, predicted log fold changes); a ``.tsv`` table
#: has tabs instead of commas.
_TABLE_HEADERS = ("id,", "cell,", "model,", "gene,cell_a,cell_b,")
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


def is_unfinished_model_dir(path: str | os.PathLike) -> bool:
    """A model directory whose training was interrupted: it holds ``checkpoints/``.

    A finished model never does (the saved bundle replaces the whole directory), so
    this is what ``train --resume`` continues.
    """
    path = Path(path)
    return (path / "checkpoints").is_dir() and is_model_dir(path)


def is_protocol_dir(path: str | os.PathLike) -> bool:
    """A folder written by ``histexpr protocol``: ``protocol.csv`` (ours) and its models."""
    path = Path(path)
    names = set(_entries(path))
    if PROTOCOL_TABLE not in names or not names <= _PROTOCOL_NAMES:
        return False
    head = _head(path / PROTOCOL_TABLE, 64).decode("utf-8", errors="replace")
    return head.startswith(_PROTOCOL_HEADER) and all(
        (path / n).is_dir() for n in names - {PROTOCOL_TABLE}
    )


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
        tabbed = tuple(h.replace(",", "\t") for h in _TABLE_HEADERS)
        return text.startswith(_TABLE_HEADERS + tabbed)
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


def _a(noun: str) -> str:
    """``noun`` with its indefinite article ("an HTML report")."""
    return f"{'an' if noun[0] in 'aeiouH' else 'a'} {noun}"


def _resolve(path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path)))).resolve()


def _model_kind(path: Path) -> str:
    header = _json_file(path / "model.json") or {}
    return str(header.get("kind") or "")


def _owner_dir(out: Path) -> tuple[Path, str] | None:
    """The nearest model or run directory above ``out`` (a finished one, or an
    interrupted training run), with its noun; None when there is none."""
    for parent in out.parents:
        if parent == Path(parent.anchor):
            break
        if is_model_dir(parent):
            return parent, "model directory"
        run = _json_file(parent / "run.json")
        if run is not None and (run.get("format") == "histexpr-run" or "command" in run):
            return parent, "run directory"
    return None


def _slot_of(out: Path, kind: str, sources: list[Path]) -> Path | None:
    """The run directory whose own slot ``out`` is (its explanation or report), when
    the command reads that run (an input is the run or inside it); else None."""
    run = out.parent
    if RUN_SLOTS.get(out.name) != kind or not (run / "run.json").is_file():
        return None
    if not any(src == run or run in src.parents for src in sources):
        return None
    return run if is_run_dir(run) else None


def _check_inside(raw: str, out: Path, kind: str, inputs: list, sources: list[Path]) -> None:
    """Refuse an output inside an input folder or inside a model or run directory."""
    slot = _slot_of(out, kind, sources)
    # a folder inside an input folder would be read with it (a DeepChrome folder takes
    # any sub-folder for a cell type); files inside model and run directories: below
    for item, src in zip(inputs, sources, strict=True):
        if kind in _DIR_KINDS and src != slot and src in out.parents and src.is_dir():
            raise HistexprError(
                f"{raw}: is inside the input folder {item}; choose an output outside it"
            )
    owner = _owner_dir(out)
    if owner is not None and owner[0] != slot:
        raise HistexprError(
            f"{raw}: is inside the {owner[1]} {owner[0]}, which only its owner writes; "
            "choose an output outside it"
        )


def _check_resume(raw: str, out: Path) -> None:
    """``train --resume``: only an interrupted training run is continued."""
    if is_unfinished_model_dir(out):
        return
    if out.is_dir() and is_model_dir(out):
        kind = _model_kind(out)
        raise HistexprError(
            f"{raw}: is a finished {kind + ' ' if kind else ''}model; --resume continues only "
            "an interrupted training run (to train it again: --force without --resume)"
        )
    if not out.exists() or (out.is_dir() and not _entries(out)):
        raise HistexprError(f"{raw}: no interrupted training run to resume; train without --resume")
    noun = "file" if not out.is_dir() else "folder that is not a histexpr model directory"
    raise HistexprError(f"{raw}: is a {noun}; --resume continues only an interrupted training run")


def guard_output(
    path: str | os.PathLike,
    kind: str,
    inputs: Iterable[str | os.PathLike | None] = (),
    force: bool = False,
    resume: bool = False,
) -> Path:
    """Refuse (one line) an output that would destroy anything but our own output.

    Parameters
    ----------
    path : str or PathLike
        The output the command is about to write (a default path as well as a given one).
    kind : str
        One of :data:`OUTPUT_KINDS`: "model-dir", "run-dir", "explain-dir",
        "protocol-dir" (folders) or "dataset-file", "table-file", "report-file" (files);
        "download-dir" is a folder that files are added to: only a file there and a
        path inside a model or run directory are refused.
    inputs : iterable of paths
        The command's inputs (None entries are skipped): the output may be none
        of them, and a folder output may neither hold one nor lie inside an input folder.
    force : bool
        Replace an existing output of the same kind that histexpr wrote.
        Nothing else is ever replaced.
    resume : bool
        "model-dir" only (``train --resume``): the output must be an interrupted
        training run (:func:`is_unfinished_model_dir`), which is continued; a
        finished model, a new name or anything else is refused, ``force`` or not.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    HistexprError
        ``.``/``..``/empty names, a file where a folder is expected (or the
        reverse), a folder that does not exist for a file output, an input of
        the command, a folder inside an input folder, a path inside a model or
        run directory (but a run's own slots, :data:`RUN_SLOTS`), anything
        histexpr did not write, or an existing output without ``force`` (an
        interrupted training run: pointing to ``--resume``).
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    if resume and kind != "model-dir":
        raise ValueError("resume applies to model directories")
    noun = OUTPUT_KINDS[kind]
    is_dir_kind = kind in _DIR_KINDS
    raw = os.fspath(path)
    if kind == "download-dir":
        # downloads add files of their own names to a folder (and never replace a file
        # that is not the one they fetch: histexpr.data.download), so any folder will do
        out = _resolve(path)
        if out.exists() and not out.is_dir():
            raise HistexprError(f"{raw}: is a file; {_a(noun)} is a folder, give a new name")
        _check_inside(raw, out, kind, [], [])
        return Path(path)
    if raw.strip() in ("", ".", "..") or Path(raw).name in ("", ".", ".."):
        raise HistexprError(f"{raw or repr(raw)}: not {_a(noun)} name; give a new name")
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
    inputs = [item for item in inputs if item is not None]
    sources = [_resolve(item) for item in inputs]
    for item, src in zip(inputs, sources, strict=True):
        if src == out:
            raise HistexprError(f"{raw}: is an input of this command; choose another output")
        if is_dir_kind and out in src.parents:
            raise HistexprError(f"{raw}: holds the input {item}; choose another output")
        if out.exists() and src.exists() and os.path.samefile(out, src):
            raise HistexprError(f"{raw}: is an input of this command; choose another output")
    _check_inside(raw, out, kind, inputs, sources)
    if resume:
        _check_resume(raw, out)
        return Path(path)
    if not (out.exists() or out.is_symlink()):
        return Path(path)
    if out.is_dir():
        if not is_dir_kind:
            raise HistexprError(f"{raw}: is a folder; {_a(noun)} is a file, give a file name")
        if not _entries(out):
            return Path(path)
        ours = {
            "model-dir": is_model_dir,
            "run-dir": is_run_dir,
            "protocol-dir": is_protocol_dir,
        }.get(kind, is_histexpr_dir)
        if not ours(out):
            raise HistexprError(
                f"{raw}: is a folder that is not a histexpr {noun}; refusing to replace it "
                "(choose a new name)"
            )
        if kind == "model-dir" and is_unfinished_model_dir(out) and not force:
            raise HistexprError(
                f"{raw}: holds an interrupted training run; run the same command with "
                "--resume to continue it, or --force to start again"
            )
    else:
        if is_dir_kind:
            raise HistexprError(f"{raw}: is a file; {_a(noun)} is a folder, give a new name")
        if not is_histexpr_file(out, kind):
            raise HistexprError(
                f"{raw}: exists and is not {_a(noun)} histexpr wrote; refusing to replace it "
                "(choose a new name)"
            )
    if not force:
        raise HistexprError(f"{raw}: exists ({_a(noun)}); use --force to replace it")
    return Path(path)
