"""Process-level primitives shared by every layer, one copy each.

- :func:`histexpr_version` and :func:`dependency_versions`: what produced an output;
- :func:`model_device` and :func:`preserved_mode`: where a torch module lives and
  restoring its per-module training flags after inference or attribution;
- :func:`torch_threads` and :func:`quiet_lightning`: scoped process settings;
- :func:`dask_client`: a Dask client for a local cluster or a running scheduler;
- :func:`progress`: the one progress bar (stderr, off when not wanted).

This module imports only :mod:`histexpr.errors` and third-party libraries (lazily),
so every layer may use it.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator

from histexpr.errors import ConfigError, HistexprError

__all__ = [
    "dask_client",
    "dependency_versions",
    "histexpr_version",
    "model_device",
    "preserved_mode",
    "progress",
    "quiet_lightning",
    "torch_threads",
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


@contextlib.contextmanager
def torch_threads(n: int):
    """Within the block torch uses ``n`` intra-op threads (``n <= 0``: unchanged)."""
    import torch

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
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


def progress(total: int | None, desc: str, unit: str = "it", enabled: bool = True, **kwargs):
    """The progress bar of every long step (tqdm on stderr; a no-op when disabled).

    Use as a context manager; call ``update(n)`` as work completes.
    """
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, **kwargs)
