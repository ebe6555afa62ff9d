"""Atomic file and directory outputs.

Outputs are written under a temporary name in the destination's directory and
renamed into place only when complete, so an interrupted run never leaves a file
that looks finished.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
        is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
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


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; move it to ``path`` on success.

    An existing directory at ``path`` is replaced only after the new one is
    complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
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
    manager, an exception discards the partial file.
    """

    path: Path

    def _begin(self, path, suffix: str = "") -> Path:
        self.path = Path(path)
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
            self._finalize()
            self._close_handle()
            self._closed = True
            self._ctx.__exit__(None, None, None)
        return self.path

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
