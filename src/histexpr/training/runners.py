"""Runners of a model's members: in turn in this process, or in parallel on Dask workers.

:func:`fit_members` is the entry point; both paths call
:func:`histexpr.training.fit.fit_member` with the same seeds.


The members of an "ensemble" (one per cell-type fold) and of a
"celltype-weighted" model (gate and experts) do not depend on each other, so
each can be one Dask task. A task gets only plain data: the architecture as a
JSON-like dict, the member's initial weights as numpy arrays, the
:class:`~histexpr.training.fit.MemberSpec` (row indices and targets), the training
config and the input arrays (scattered once, shared by all tasks). It rebuilds
the network, trains it exactly as :func:`histexpr.training.fit.fit_member` does in
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
from pathlib import Path

import numpy as np
import torch

from histexpr._runtime import Steps, dask_client, progress, quiet_lightning, torch_threads
from histexpr.config import from_dict
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import ConfigError
from histexpr.models import Predictor, build_model, network
from histexpr.training.config import TrainConfig, check_config
from histexpr.training.ddp import is_global_zero
from histexpr.training.fingerprint import check_fingerprint
from histexpr.training.fit import MemberResult, fit_member
from histexpr.training.members import MemberSpec, build_member, member_module, member_specs
from histexpr.training.plan import write_history

__all__ = ["build_from_arch", "fit_members", "fit_members_dask", "member_seed", "train_member_task"]


def build_from_arch(arch: dict) -> Predictor:
    """An untrained model from the plain description made by ``NeuralEstimator.arch``.

    ``arch`` holds "kind", "config" (the architecture dataclass as a dict) and
    the keyword arguments of :func:`histexpr.models.build_model`.
    """
    kw = {k: v for k, v in arch.items() if k not in ("kind", "config")}
    cfg = from_dict(network(arch["kind"]).config_cls, arch["config"])
    return build_model(arch["kind"], cfg, **kw)


def _numpy_state(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def _load_numpy_state(module: torch.nn.Module, state: dict[str, np.ndarray]) -> None:
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})


def train_member_task(
    arch: dict,
    init_state: dict[str, np.ndarray],
    spec: MemberSpec,
    train_X,
    valid_X,
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
    train_X, valid_X : np.ndarray, shape (n, n_marks, n_bins), or tuples of arrays
        The data sets the spec's rows refer to (tuples: a network of several inputs).
    cfg : TrainConfig
    seed : int
        The member's seed (:func:`histexpr.training.fit.member_seed`).
    ckpt_dir : str
    resume : bool
    max_minutes : float
        This member's time budget (0: none).
    """
    model = build_from_arch(arch)
    member = build_member(spec, model, {"train": train_X, "valid": valid_X})
    _load_numpy_state(member.module, init_state)
    threads = cfg.device.threads if cfg.device.threads > 0 else 1
    with torch_threads(threads), quiet_lightning():
        result, rows = fit_member(
            member,
            dataclasses.replace(cfg, runner=dataclasses.replace(cfg.runner, progress=False)),
            seed,
            Path(ckpt_dir),
            resume,
            max_minutes=max_minutes,
        )
    return _numpy_state(member.module), result._asdict(), rows


def input_sources(train: HistoneDataset, valid: HistoneDataset | None) -> dict:
    """The inputs the rows of member specs index: ``{"train": X, "valid": X or None}``."""
    return {"train": train.X, "valid": None if valid is None else valid.X}


def _scatter(client, X):
    # Each array once to the workers; a tuple (several inputs) as a tuple of futures.
    if isinstance(X, tuple):
        return tuple(_scatter(client, x) for x in X)
    return client.scatter(np.ascontiguousarray(X), hash=False)


def fit_members_dask(
    model: Predictor,
    train: HistoneDataset,
    valid: HistoneDataset | None,
    specs: list[MemberSpec],
    cfg: TrainConfig,
    run_dir: Path | None,
    resume: bool = False,
    arch: dict | None = None,
    sources: dict | None = None,
) -> tuple[list[MemberResult], list[dict]]:
    """Train the members of ``specs`` as Dask tasks and load the weights into ``model``.

    Same contract as :func:`histexpr.training.fit.fit_members`; finished members of a
    resumed run are loaded locally without a task.
    """
    if arch is None:
        raise ConfigError("training on Dask needs the model's architecture (arch)")
    if cfg.world_size > 1:
        raise ConfigError("Dask members and DDP (devices/num_nodes > 1) cannot be combined")
    sources = sources or input_sources(train, valid)
    # The member's module without its data: workers slice the rows themselves.
    modules = [member_module(model, s.path) for s in specs]
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
            client = stack.enter_context(dask_client(cfg.runner.workers, cfg.runner.scheduler))
            from distributed import as_completed

            slots = max(1, min(len(client.scheduler_info()["workers"]), len(todo)))
            minutes = cfg.optim.max_minutes * slots / len(specs)
            train_f = _scatter(client, sources["train"])
            valid_f = (
                None
                if sources["valid"] is None
                or not any(specs[i].valid.source == "valid" for i in todo)
                else _scatter(client, sources["valid"])
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
            with progress(len(todo), "members", "member", cfg.runner.progress) as bar:
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


def fit_members(
    kind: str,
    model: Predictor,
    train: HistoneDataset,
    valid: HistoneDataset | None,
    cfg: TrainConfig,
    cells: list[str],
    run_dir: Path | None,
    resume: bool = False,
    callbacks=(),
    arch: dict | None = None,
    sources: dict | None = None,
    specs: list[MemberSpec] | None = None,
) -> tuple[list[MemberResult], list[dict]]:
    """Train every member of ``model``; return results and history rows.

    Members train in turn in this process, or in parallel on Dask workers when
    ``cfg.runner.workers`` or ``cfg.runner.scheduler`` is set (:mod:`histexpr.training.runners`;
    ``arch`` then describes the model so workers can rebuild it); both give the
    same weights. ``sources`` (default :func:`input_sources`) gives the inputs of a
    network of several inputs as tuples of row-aligned arrays; ``specs`` (default: the
    kind's registered plan, :func:`~histexpr.training.members.member_specs`) the
    members of a network outside the registry
    (:func:`~histexpr.training.members.plan_specs`).
    """
    check_config(cfg)
    if specs is None:
        specs = member_specs(kind, model, train, valid, cfg, cells)
    if run_dir is not None and is_global_zero():
        check_fingerprint(Path(run_dir), train, valid, cells, cfg, arch, resume)
    if cfg.parallel:
        if callbacks:
            raise ConfigError("extra training callbacks cannot run on Dask workers")
        return fit_members_dask(model, train, valid, specs, cfg, run_dir, resume, arch, sources)
    sources = sources or input_sources(train, valid)
    with contextlib.ExitStack() as stack:
        if run_dir is None:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="histexpr-")))
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        stack.enter_context(torch_threads(cfg.device.threads))
        stack.enter_context(quiet_lightning())
        writer = is_global_zero()
        results, rows = [], []
        # one overall line per member (member, elapsed, time left) above the epoch bars
        steps = Steps([1] * len(specs), enabled=cfg.runner.progress and len(specs) > 1 and writer)
        for i, spec in enumerate(specs):
            steps.begin(f"training member {spec.name}")
            done_rows = list(rows)

            def sink(member_rows, done_rows=done_rows):
                write_history(run_dir / "history.csv", done_rows + member_rows)

            result, member_rows = fit_member(
                build_member(spec, model, sources),
                cfg,
                member_seed(cfg, i),
                run_dir / "checkpoints" / spec.name,
                resume,
                callbacks,
                sink,
                max_minutes=cfg.optim.max_minutes / len(specs),
            )
            results.append(result)
            rows.extend(member_rows)
            if writer:
                write_history(run_dir / "history.csv", rows)
    return results, rows


def member_seed(cfg: TrainConfig, i: int) -> int:
    """Seed of member ``i`` (the same serially and on Dask workers)."""
    return cfg.optim.seed + 7919 * i
