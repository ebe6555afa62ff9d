"""Atomic file and directory outputs, and the guard every output goes through.

Outputs are written under a temporary name in the destination's directory and
renamed into place only when complete, so an interrupted run never leaves a file
that looks finished. Temporary names carry the writer's process id and host
(``.NAME.<pid>-<host>.XXXXXXXX[SUFFIX].tmp``), so the next write of the same
output removes what a killed writer left behind, and nothing else.

:func:`guard_output` is called before a command writes: it refuses, as one
line, to write over an input of the command, over a folder or file that histexpr
did not write, over a previous output without ``force``, or inside a model or
run directory (see :mod:`histexpr.atomic.guard`).

Every file of a folder written with :func:`atomic_dir` gets the same mode, that
of a normal new file (``0o666`` less the umask), whichever library wrote it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from histexpr.atomic.guard import (
    OUTPUT_KINDS,
    PROTOCOL_TABLE,
    RUN_SLOTS,
    guard_output,
    is_histexpr_dir,
    is_histexpr_file,
    is_model_dir,
    is_protocol_dir,
    is_run_dir,
    is_unfinished_model_dir,
)
from histexpr.atomic.temps import (
    SIGINTS,
    STALE_AFTER_S,
    remove_stale_temporaries,
    reraise_interrupt,
    stale_temporaries,
    temp_prefix,
    watch_sigint,
)
from histexpr.errors import HistexprError

__all__ = [
    "OUTPUT_KINDS",
    "PROTOCOL_TABLE",
    "RUN_SLOTS",
    "STALE_AFTER_S",
    "AtomicFileWriter",
    "atomic_dir",
    "atomic_path",
    "guard_output",
    "is_histexpr_dir",
    "is_histexpr_file",
    "is_model_dir",
    "is_protocol_dir",
    "is_run_dir",
    "is_unfinished_model_dir",
    "remove_stale_temporaries",
    "reraise_interrupt",
    "stale_temporaries",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    Parameters
    ----------
    path : str or PathLike
        Final destination (a file).
    suffix : str
        Suffix for the temporary name, for libraries that infer the format from it.

    Yields
    ------
    Path
        Temporary path to write to. On an exception it is removed and ``path``
        is left untouched. Stale temporary files of ``path`` from killed writers
        are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the output the permissions of a normal new file.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _normal_modes(folder: Path) -> None:
    """One mode for every file (``0o666``) and folder (``0o777``) under ``folder``, less
    the umask: libraries that write through ``mkstemp`` would leave some private."""
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), 0o666 & ~mask)


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike, ours: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; move it to ``path`` on success.

    An existing directory at ``path`` is replaced only after the new one is
    complete, and only when ``ours(path)`` says histexpr wrote it (default:
    :func:`is_histexpr_dir`); anything else raises :class:`HistexprError` before
    a byte is written.
    """
    path = Path(path)
    ours = ours or is_histexpr_dir
    if path.is_symlink() or (path.exists() and not (path.is_dir() and ours(path))):
        raise HistexprError(f"{path}: exists and histexpr did not write it; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _normal_modes(tmp)
        if path.exists():
            old = Path(
                tempfile.mkdtemp(prefix=temp_prefix(path), suffix=".old.tmp", dir=path.parent)
            )
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class AtomicFileWriter:
    """Base of streaming writers whose output appears only when complete.

    A subclass calls :meth:`_begin` to get the temporary path, opens its handle
    on it, and implements :meth:`_close_handle` (and optionally
    :meth:`_finalize`, run before a successful close). Used as a context
    manager, an exception discards the partial file. A Ctrl-C received while the
    file was being written makes :meth:`close` discard it and raise
    KeyboardInterrupt, even when some library swallowed the interrupt.
    """

    path: Path

    def _begin(self, path, suffix: str = "") -> Path:
        self.path = Path(path)
        self._sigints = watch_sigint()
        self._ctx = atomic_path(self.path, suffix=suffix)
        self._closed = False
        return self._ctx.__enter__()

    def _finalize(self) -> None:
        """Write trailing metadata before the handle closes (successful close only)."""

    def _close_handle(self) -> None:
        raise NotImplementedError

    def close(self) -> Path:
        """Finish the file and move it into place."""
        if not self._closed:
            if self._interrupted():
                self.abort(KeyboardInterrupt())
                raise KeyboardInterrupt
            self._finalize()
            self._close_handle()
            self._closed = True
            if self._interrupted():  # a Ctrl-C swallowed while the handle closed
                err = KeyboardInterrupt()
                self._ctx.__exit__(KeyboardInterrupt, err, None)
                raise err
            self._ctx.__exit__(None, None, None)
        return self.path

    def _interrupted(self) -> bool:
        return SIGINTS[0] != getattr(self, "_sigints", SIGINTS[0])

    def abort(self, exc: BaseException | None = None) -> None:
        """Discard the partial file."""
        if self._closed:
            return
        self._closed = True
        err = exc or RuntimeError("aborted")
        try:
            self._close_handle()
        finally:
            with contextlib.suppress(BaseException):
                self._ctx.__exit__(type(err), err, None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort(exc)
        return False
