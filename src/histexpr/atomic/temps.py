"""Temporary names of atomic outputs, their cleanup, and Ctrl-C bookkeeping.

A temporary name carries the writer's process id and host,
``.NAME.<pid>-<host>.XXXXXXXX[SUFFIX].tmp``, so the next write of the same output
can tell what a killed writer left behind (and remove only that).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

#: Temporary files of a writer that is not running (or that we cannot tell,
#: e.g. another host) are removed once they are this old (seconds).
STALE_AFTER_S = 6 * 3600


# --------------------------------------------------------------------------- temp names


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def temp_prefix(path: Path) -> str:
    """Name prefix of a temporary beside ``path``: its name, this process and host."""
    return f".{path.name}.{os.getpid()}-{_host_tag()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def stale_temporaries(path: str | os.PathLike, now: float | None = None) -> list[Path]:
    """Temporary files or folders of ``path`` left by writers that are gone.

    Only names of our own pattern count: ``.NAME.<pid>-<host>.XXXXXXXX*.tmp``
    (stale when that process is not running on this host, or when older than
    :data:`STALE_AFTER_S`) and the older ``.NAME.XXXXXXXX*.tmp`` (stale when older
    than :data:`STALE_AFTER_S`).
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return []
    now = time.time() if now is None else now
    name = re.escape(path.name)
    tagged = re.compile(rf"^\.{name}\.(\d+)-([0-9a-f]{{6}})\.[A-Za-z0-9_]{{8}}(\.[^/]*)?\.tmp$")
    legacy = re.compile(rf"^\.{name}\.[a-z0-9_]{{8}}(\.[^/]*)?\.tmp$")
    host, found = _host_tag(), []
    for entry in parent.iterdir():
        m = tagged.match(entry.name)
        if not m and not legacy.match(entry.name):
            continue
        try:
            age = now - entry.lstat().st_mtime
        except OSError:
            continue
        if m and m.group(2) == host and int(m.group(1)) != os.getpid():
            dead = not _pid_alive(int(m.group(1)))
        else:
            dead = False
        if dead or age > STALE_AFTER_S:
            found.append(entry)
    return found


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete :func:`stale_temporaries` of ``path``; return what was removed."""
    removed = []
    for entry in stale_temporaries(path):
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


# --------------------------------------------------------------------------- interrupts

#: Ctrl-C presses counted so far (one mutable cell, shared with :mod:`histexpr.atomic`).
SIGINTS = [0]
_PREVIOUS: list = []


def _count_sigint(signum, frame):
    SIGINTS[0] += 1
    previous = _PREVIOUS[0] if _PREVIOUS else signal.default_int_handler
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        raise KeyboardInterrupt


def watch_sigint() -> int:
    """Count Ctrl-C from now on (main thread only); return the count so far."""
    if threading.current_thread() is threading.main_thread():
        current = signal.getsignal(signal.SIGINT)
        if current is not _count_sigint and current is not None:
            _PREVIOUS[:] = [current]
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, _count_sigint)
    return SIGINTS[0]


@contextlib.contextmanager
def reraise_interrupt(interrupted: Callable[[], bool]) -> Iterator[None]:
    """Give back a Ctrl-C that a library turned into an exit or a flag.

    Lightning catches KeyboardInterrupt, ignores further Ctrl-C and calls
    ``sys.exit(1)``; inside this context, when ``interrupted()`` is true, that
    exit (or a normal return) becomes KeyboardInterrupt again, and the SIGINT
    handler of before is restored.
    """
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
        if interrupted():
            raise KeyboardInterrupt
    except SystemExit:
        if interrupted():
            raise KeyboardInterrupt from None
        raise
    finally:
        if handler is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, handler)
