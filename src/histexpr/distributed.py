"""Independent members trained in parallel on Dask workers.

The members of an "ensemble" (one per cell-type fold) and of a
"celltype-weighted" model (gate and experts) do not depend on each other, so
each can be one Dask task. A task gets only plain data: the architecture as a
JSON-like dict, the member's initial weights as numpy arrays, the
:class:`~histexpr.members.MemberSpec` (row indices and targets), the training
config and the input arrays (scattered once, shared by all tasks). It rebuilds
the network, trains it exactly as :func:`histexpr.members.fit_member` does in
the serial path, with the same seed, and returns the trained weights as numpy
arrays. No module is pickled.

Results equal the serial ones bit for bit when torch uses the same number of
threads in both places (set ``threads``; workers default to one thread, as
Dask sets ``OMP_NUM_THREADS=1`` for its worker processes); otherwise they agree
to float rounding.

Checkpoints are written by the workers under ``run_dir/checkpoints/<member>``,
so resuming, and the run directory itself, need a file system the workers share
with the client (always true for the local cluster). ``history.csv`` is written
by the client once all members are done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from histexpr.config import from_dict
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import ConfigError, HistexprError
from histexpr.lightning_plan import write_history
from histexpr.member_data import MemberSpec, build_member
from histexpr.members import (
    MemberResult,
    TrainConfig,
    _quiet_lightning,
    _torch_threads,
    fit_member,
    member_seed,
)
from histexpr.models import MODEL_CONFIGS, Predictor, build_model

__all__ = ["build_from_arch", "dask_client", "fit_members_dask", "train_member_task"]


@contextlib.contextmanager
def dask_client(workers: int = 0, scheduler: str = "") -> Iterator:
    """A Dask client, closed (with its local cluster) on exit.

    Parameters
    ----------
    workers : int
        Processes of a local cluster bound to 127.0.0.1, one thread each
        (ignored when ``scheduler`` is given).
    scheduler : str
        Address of a running scheduler, e.g. ``tcp://10.0.0.5:8786``.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise HistexprError(
            "workers/scheduler need Dask: pip install 'dask[distributed]'"
        ) from None

    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as exc:
            raise HistexprError(f"cannot reach Dask scheduler {scheduler}: {exc}") from None
        with client:
            yield client
        return
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def build_from_arch(arch: dict) -> Predictor:
    """An untrained model from the plain description made by ``NeuralEstimator.arch``.

    ``arch`` holds "kind", "config" (the architecture dataclass as a dict) and
    the keyword arguments of :func:`histexpr.models.build_model`.
    """
    kw = {k: v for k, v in arch.items() if k not in ("kind", "config")}
    cfg = from_dict(MODEL_CONFIGS[arch["kind"]], arch["config"])
    return build_model(arch["kind"], cfg, **kw)


def _numpy_state(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def _load_numpy_state(module: torch.nn.Module, state: dict[str, np.ndarray]) -> None:
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})


def train_member_task(
    arch: dict,
    init_state: dict[str, np.ndarray],
    spec: MemberSpec,
    train_X: np.ndarray,
    valid_X: np.ndarray | None,
    cfg: TrainConfig,
    seed: int,
    ckpt_dir: str,
    resume: bool,
    max_minutes: float,
) -> tuple[dict[str, np.ndarray], dict, list[dict]]:
    """Train one member on a worker; return (weights, result as dict, history rows).

    Parameters
    ----------
    arch : dict
        See :func:`build_from_arch`.
    init_state : dict of str to np.ndarray
        State dict of the member (normaliser + network) before training.
    spec : MemberSpec
    train_X, valid_X : np.ndarray, shape (n, n_marks, n_bins)
        The data sets the spec's rows refer to.
    cfg : TrainConfig
    seed : int
        The member's seed (:func:`histexpr.members.member_seed`).
    ckpt_dir : str
    resume : bool
    max_minutes : float
        This member's time budget (0: none).
    """
    model = build_from_arch(arch)
    member = build_member(spec, model, {"train": train_X, "valid": valid_X})
    _load_numpy_state(member.module, init_state)
    threads = cfg.threads if cfg.threads > 0 else 1
    with _torch_threads(threads), _quiet_lightning():
        result, rows = fit_member(
            member,
            dataclasses.replace(cfg, progress=False),
            seed,
            Path(ckpt_dir),
            resume,
            max_minutes=max_minutes,
        )
    return _numpy_state(member.module), result._asdict(), rows


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="members", unit="member", disable=not enabled)


def fit_members_dask(
    model: Predictor,
    train: HistoneDataset,
    valid: HistoneDataset | None,
    specs: list[MemberSpec],
    cfg: TrainConfig,
    run_dir: Path | None,
    resume: bool = False,
    arch: dict | None = None,
) -> tuple[list[MemberResult], list[dict]]:
    """Train the members of ``specs`` as Dask tasks and load the weights into ``model``.

    Same contract as :func:`histexpr.members.fit_members`; finished members of a
    resumed run are loaded locally without a task.
    """
    if arch is None:
        raise ConfigError("training on Dask needs the model's architecture (arch)")
    if cfg.devices * cfg.num_nodes > 1:
        raise ConfigError("Dask members and DDP (devices/num_nodes > 1) cannot be combined")
    sources = {"train": train.X, "valid": None if valid is None else valid.X}
    # The member's module without its data: workers slice the rows themselves.
    modules = [Predictor(model.normalizer, model.get_submodule(s.path)) for s in specs]
    with contextlib.ExitStack() as stack:
        if run_dir is None:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="histexpr-")))
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        outputs: dict[int, tuple[MemberResult, list[dict]]] = {}
        todo = []
        for i, spec in enumerate(specs):
            ckpt = run_dir / "checkpoints" / spec.name
            if resume and (ckpt / "done.json").is_file() and (ckpt / "final.safetensors").is_file():
                member = build_member(spec, model, sources)
                outputs[i] = fit_member(member, cfg, member_seed(cfg, i), ckpt, resume=True)
            else:
                todo.append(i)
        if todo:
            client = stack.enter_context(dask_client(cfg.workers, cfg.scheduler))
            from distributed import as_completed

            slots = max(1, min(len(client.scheduler_info()["workers"]), len(todo)))
            minutes = cfg.max_minutes * slots / len(specs)
            train_f = client.scatter(np.ascontiguousarray(train.X), hash=False)
            valid_f = (
                None
                if valid is None or not any(specs[i].valid.source == "valid" for i in todo)
                else client.scatter(np.ascontiguousarray(valid.X), hash=False)
            )
            futures = {}
            for i in todo:
                spec = specs[i]
                fut = client.submit(
                    train_member_task,
                    arch,
                    _numpy_state(modules[i]),
                    spec,
                    train_f,
                    valid_f,
                    cfg,
                    member_seed(cfg, i),
                    str(run_dir / "checkpoints" / spec.name),
                    resume,
                    minutes,
                    pure=False,
                    key=f"histexpr-member-{spec.name}-{id(specs)}",
                )
                futures[fut] = i
            with _progress(len(todo), cfg.progress) as bar:
                for fut in as_completed(futures):
                    i = futures[fut]
                    state, result, rows = fut.result()
                    _load_numpy_state(modules[i], state)
                    outputs[i] = (MemberResult(**result), rows)
                    bar.update(1)
        results = [outputs[i][0] for i in range(len(specs))]
        rows = [r for i in range(len(specs)) for r in outputs[i][1]]
        write_history(run_dir / "history.csv", rows)
    return results, rows
