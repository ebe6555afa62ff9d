"""Process-level primitives shared by every layer, one copy each.

- :func:`histexpr_version` and :func:`dependency_versions`: what produced an output;
- :func:`model_device` and :func:`preserved_mode`: where a torch module lives and
  restoring its per-module training flags after inference or attribution;
- :func:`choose_threads` (from :func:`free_cores`) and :func:`torch_threads`: the
  thread count of every torch, LightGBM, scikit-learn and BLAS call, chosen from the
  cores other processes leave free, with OpenMP threads that sleep when they wait
  (:func:`passive_openmp`); an explicit setting wins;
- :func:`quiet_lightning`: scoped quiet Lightning;
- :func:`dask_client`: a Dask client for a local cluster or a running scheduler;
- :func:`progress`: the one progress bar (stderr, off when not wanted; plain lines
  when stderr is not a terminal) and :class:`Steps`, the overall line of a long
  command (step, elapsed time, time left);
- :func:`notice` and :func:`plain_warnings`: expected conditions told once, as one
  plain line on the command line.

This module imports only :mod:`histexpr.errors` and third-party libraries (lazily),
so every layer may use it.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
import time
from collections.abc import Iterator

from histexpr.errors import ConfigError, HistexprError

__all__ = [
    "Notice",
    "PlainProgress",
    "Steps",
    "choose_threads",
    "clock",
    "dask_client",
    "dependency_versions",
    "free_cores",
    "histexpr_version",
    "model_device",
    "notice",
    "passive_openmp",
    "plain_warnings",
    "preserved_mode",
    "progress",
    "quiet_lightning",
    "torch_threads",
    "usable_cores",
]


def histexpr_version() -> str:
    """The installed histexpr version (``0.0.0+unknown`` in an uninstalled source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("histexpr")
    except PackageNotFoundError:
        return "0.0.0+unknown"


def dependency_versions() -> dict[str, str]:
    """Versions of Python and the libraries a model's numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("numpy", "torch", "scikit-learn", "lightgbm", "lightning", "h5py", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def model_device(model):
    """The device of ``model``'s first parameter (or buffer); CPU for a stateless module."""
    import torch

    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def preserved_mode(model, device=None):
    """Run a block with ``model`` in eval mode; restore every module's flag (and device).

    Per-module flags are restored, not just the root's: a caller may have frozen
    some submodules in eval mode. With ``device`` the model is moved back to the
    device it was on.
    """
    flags = [m.training for m in model.modules()]
    original = model_device(model) if device is not None else None
    model.eval()
    try:
        yield model
    finally:
        if original is not None:
            model.to(original)
        for m, flag in zip(model.modules(), flags, strict=True):
            m.training = flag


#: Below this many rows a tree or boosting fit uses one thread: the work between two
#: thread barriers is too small for a second thread to pay off (LightGBM on 810 rows:
#: 6 s with one thread, 249 s with two beside a busy neighbour).
SMALL_WORK = 20_000
#: Seconds a :func:`free_cores` answer is reused (sampling takes SAMPLE_SECONDS).
FREE_CORES_TTL = 10.0
#: Seconds over which :func:`free_cores` samples the other processes' CPU use.
SAMPLE_SECONDS = 0.2


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _busy_elsewhere(seconds: float = SAMPLE_SECONDS) -> float:
    """Cores kept busy by other processes, sampled over ``seconds`` (Linux /proc/stat;
    elsewhere the 1-minute load average)."""

    def busy_ticks() -> float:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
        return sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)

    def own() -> float:
        t = os.times()
        return t.user + t.system

    try:
        hz = os.sysconf("SC_CLK_TCK")
        b0, o0, t0 = busy_ticks(), own(), time.monotonic()
        time.sleep(seconds)
        b1, o1, t1 = busy_ticks(), own(), time.monotonic()
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0
    return max(0.0, ((b1 - b0) / hz - (o1 - o0)) / max(t1 - t0, 1e-3))


_FREE_CORES: dict = {}


def free_cores() -> int:
    """Usable cores not kept busy by other processes right now (at least 1).

    A core counts as taken when other processes used more than about three quarters
    of one over the sample: a thread on a shared core makes every OpenMP barrier of
    the step wait for it (with spinning waits, 2 threads beside one busy neighbour on
    2 cores: 50 instead of 2,444 examples/s; docs/benchmarks.md, "Busy neighbour").
    The answer is reused for :data:`FREE_CORES_TTL` seconds.
    """
    now = time.monotonic()
    cached = _FREE_CORES.get("value")
    if cached is not None and now - _FREE_CORES["at"] < FREE_CORES_TTL:
        return cached
    cores = usable_cores()
    value = int(min(cores, max(1, math.floor(cores - _busy_elsewhere() + 0.25))))
    _FREE_CORES.update(value=value, at=now)
    return value


def choose_threads(requested: int = 0, work: float | None = None) -> int:
    """The thread count of one library call: the one owner of that choice.

    Parameters
    ----------
    requested : int
        The user's setting: ``> 0`` wins as given; ``< 0`` (scikit-learn's ``-1``)
        means every usable core; ``0`` lets histexpr choose.
    work : float, optional
        Rows of the job; under :data:`SMALL_WORK` one thread.

    Returns
    -------
    int
        ``requested`` if set; else ``OMP_NUM_THREADS`` if the environment sets it (Dask
        workers set 1); else 1 for small work, else :func:`free_cores`.
    """
    if requested > 0:
        return int(requested)
    if requested < 0:
        return usable_cores()
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    if work is not None and work < SMALL_WORK:
        return 1
    return free_cores()


def passive_openmp() -> None:
    """Make OpenMP threads sleep at barriers instead of spinning (``OMP_WAIT_POLICY``).

    Only takes effect before torch or LightGBM first load their OpenMP runtime, so
    ``import histexpr`` calls it; a value the user set wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@contextlib.contextmanager
def torch_threads(n: int = 0, work: float | None = None):
    """Within the block torch and the BLAS/OpenMP pools of numpy and scikit-learn
    (threadpoolctl) use ``n`` threads; ``n <= 0``: :func:`choose_threads` decides.

    Yields the thread count used.
    """
    import torch
    from threadpoolctl import threadpool_limits

    n = choose_threads(n, work)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def quiet_lightning():
    """Silence Lightning's informational lines (device summary, tips, its own
    deprecation notices); the progress bar and real warnings still show."""
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


#: How long a client waits for a running scheduler before giving up.
SCHEDULER_TIMEOUT = "30s"


@contextlib.contextmanager
def dask_client(workers: int = 0, scheduler: str | None = None, processes: bool = True) -> Iterator:
    """A Dask client, closed (with its local cluster) on exit.

    Parameters
    ----------
    workers : int
        Workers of a local cluster, one thread each (ignored with ``scheduler``).
    scheduler : str, optional
        Address of a running scheduler, e.g. ``tcp://10.0.0.5:8786``.
    processes : bool
        Local workers as processes bound to 127.0.0.1 (else threads in this process).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise HistexprError(
            "workers/scheduler need Dask: pip install 'dask[distributed]'"
        ) from None
    if scheduler:
        try:
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
        except OSError as exc:
            raise HistexprError(f"cannot reach Dask scheduler {scheduler} ({exc})") from None
        with client:
            yield client
        return
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    # Thread workers talk in-process; process workers only on loopback.
    host = {"host": "127.0.0.1"} if processes else {}
    with (
        LocalCluster(
            n_workers=int(workers),
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
            **host,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


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
