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
- :func:`progress`, :class:`Steps`, :func:`notice` and :func:`plain_warnings`: the
  console (:mod:`histexpr._runtime.console`), re-exported here.

This module imports only :mod:`histexpr.errors` and third-party libraries (lazily),
so every layer may use it.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from collections.abc import Iterator

from histexpr._runtime.console import (
    Notice,
    PlainProgress,
    Steps,
    clock,
    notice,
    plain_warnings,
    progress,
)
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
    "native_bf16",
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


_CPU_FLAGS: dict = {}


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX).

    Only then is bf16 autocast faster than float32 on the CPU (about 1.7x per training
    step of the seed ConvNet, docs/benchmarks.md section 1); elsewhere oneDNN emulates
    it, slower than float32. Read once from ``/proc/cpuinfo``; ``False`` where that
    file does not exist (macOS, Windows).
    """
    if "bf16" not in _CPU_FLAGS:
        try:
            with open("/proc/cpuinfo") as f:
                flags = next((line.split() for line in f if line.startswith("flags")), [])
        except OSError:
            flags = []
        _CPU_FLAGS["bf16"] = "avx512_bf16" in flags or "amx_bf16" in flags
    return _CPU_FLAGS["bf16"]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _busy_ticks(fields: list[float], count_niced: bool) -> float:
    """Busy CPU ticks of the ``cpu`` line of ``/proc/stat`` (user, nice, system, idle,
    iowait, irq, softirq, steal, guest, guest_nice): all but idle and iowait, and the
    guest ticks only once (the kernel counts them in user and nice too). Without
    ``count_niced`` the ticks of processes at a positive nice level are left out: the
    scheduler gives them the core only when nothing of ours wants it (a nice-19 job
    gets ~1.5% of a core beside us), so they do not take one from a training step."""
    f = list(fields) + [0.0] * (10 - len(fields))
    busy = f[0] + f[2] + f[5] + f[6] + f[7] - f[8]
    if count_niced:
        busy += f[1] - f[9]
    return busy


def _busy_elsewhere(seconds: float = SAMPLE_SECONDS) -> float:
    """Cores kept busy by other processes, sampled over ``seconds`` (Linux /proc/stat;
    elsewhere the 1-minute load average). Niced processes count only when this one is
    niced too (:func:`_busy_ticks`)."""
    try:
        count_niced = os.nice(0) > 0
    except (AttributeError, OSError):
        count_niced = True

    def busy_ticks() -> float:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
        return _busy_ticks(fields, count_niced)

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
