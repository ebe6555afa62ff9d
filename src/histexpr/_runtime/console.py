"""The console side of the runtime: notices, the progress bar and the overall step line.

- :func:`notice` and :func:`plain_warnings`: expected conditions told once, as one
  plain line on the command line (``--debug`` shows Python's full warnings);
- :func:`progress`: the one progress bar (stderr, off when not wanted; plain lines
  when stderr is not a terminal) and :class:`Steps`, the overall line of a long
  command (step, elapsed time, time left).

Re-exported by :mod:`histexpr._runtime`; imports only the standard library and tqdm.
"""

from __future__ import annotations

import contextlib
import sys
import time


class Notice(UserWarning):
    """An expected condition the user should hear of once, as one plain line (genes
    without training data, atlas columns excluded); not a fault."""


def notice(message: str, category: type[Warning] = Notice, stacklevel: int = 1) -> None:
    """Tell the user of an expected condition: the one notice channel of library code.

    A warning of ``category`` (a :class:`Notice` by default), so library callers can
    filter or record it as usual; the command line shows it as one plain line, once
    (:func:`plain_warnings`). ``stacklevel`` as for :func:`warnings.warn`.
    """
    import warnings

    warnings.warn(str(message), category, stacklevel=stacklevel + 1)


@contextlib.contextmanager
def plain_warnings(emit, debug: bool = False):
    """Within the block each warning reaches ``emit`` as one plain line, once per text.

    ``note: MESSAGE`` for a :class:`Notice`, ``warning: MESSAGE`` for any other
    warning: no file name, no source line. With ``debug`` Python shows every warning
    its own way (source line included) and ``emit`` gets nothing.
    """
    import warnings

    seen: set[str] = set()
    # a caller recording warnings (catch_warnings(record=True), pytest.warns) still
    # gets every one: its recorder replaced the module's printing function
    impl = getattr(warnings, "_showwarnmsg_impl", None)
    recorder = impl if getattr(impl, "__module__", "warnings") != "warnings" else None

    def show(message, category, filename, lineno, file=None, line=None):
        if recorder is not None:
            recorder(warnings.WarningMessage(message, category, filename, lineno, file, line))
        text = " ".join(str(message).split())
        if text in seen:
            return
        seen.add(text)
        emit(f"{'note' if issubclass(category, Notice) else 'warning'}: {text}")

    with warnings.catch_warnings():
        if debug:
            warnings.simplefilter("default")
        else:
            warnings.showwarning = show
        yield


#: Seconds between two plain progress lines (output that is not a terminal).
PLAIN_EVERY = 30.0


def clock(seconds: float) -> str:
    """``seconds`` as ``M:SS`` (``H:MM:SS`` from an hour)."""
    m, sec = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class PlainProgress:
    """A progress bar's stand-in for a log: a plain line (count, elapsed time, time
    left) at most every ``every`` seconds and when the count completes; no
    carriage returns, no bar."""

    def __init__(self, total, desc, unit="it", iterable=None, initial=0, every=PLAIN_EVERY):
        self.total, self.desc, self.unit, self.iterable = total, desc, unit, iterable
        self.n, self.every, self.postfix = initial, every, ""
        self.start = self.last = time.monotonic()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every or (self.total and self.n >= self.total):
            self.last = now
            self.line()

    def line(self) -> None:
        """Print the current count, elapsed time and an estimate of the time left."""
        elapsed = time.monotonic() - self.start
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        text = f"{self.desc}: {count} {self.unit}, {clock(elapsed)} elapsed"
        if self.total and 0 < self.n < self.total:
            text += f", about {clock(elapsed / self.n * (self.total - self.n))} left"
        print(text + (f" ({self.postfix})" if self.postfix else ""), file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def progress(total: int | None, desc: str, unit: str = "it", enabled: bool = True, **kwargs):
    """The progress bar of every long step (stderr; a no-op when disabled).

    On a terminal a tqdm bar (count, elapsed, time left); otherwise (a log, a pipe)
    a :class:`PlainProgress` line every :data:`PLAIN_EVERY` seconds. Use as a
    context manager (or iterate with ``iterable=``); call ``update(n)`` as work completes.
    """
    from tqdm.auto import tqdm

    if enabled and not sys.stderr.isatty():
        keep = {k: kwargs[k] for k in ("iterable", "initial") if k in kwargs}
        return PlainProgress(total, desc, unit, **keep)
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, **kwargs)


class Steps:
    """The overall progress of a long command: one line as each step starts, with the
    step, the elapsed time and an estimate of the time left.

    Parameters
    ----------
    weights : sequence of float
        Expected relative cost of each step (the estimate scales the time spent so
        far by the weight still to come).
    emit : callable, optional
        Receives each line (default: stderr); ``None`` lines when ``enabled`` is false.
    """

    def __init__(self, weights, emit=None, enabled: bool = True):
        self.weights = [float(w) for w in weights]
        self.emit = emit or (lambda line: print(line, file=sys.stderr, flush=True))
        self.enabled, self.index = enabled, -1
        self.start, self.first = time.monotonic(), None

    def begin(self, what: str) -> None:
        """Step ``what`` starts (the previous one, if any, is done)."""
        i = self.index = min(self.index + 1, len(self.weights) - 1)
        now = time.monotonic()
        self.first = now if self.first is None else self.first
        if not self.enabled:
            return
        elapsed = now - self.start
        # the rate of the steps done so far (not of the set-up before the first step)
        spent, left = sum(self.weights[:i]), sum(self.weights[i:])
        eta = f", about {clock((now - self.first) / spent * left)} left" if spent > 0 else ""
        self.emit(f"[step {i + 1}/{len(self.weights)}, {clock(elapsed)} elapsed{eta}] {what}")
