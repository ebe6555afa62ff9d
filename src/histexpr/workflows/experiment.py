"""The main job: train models side by side and evaluate them on held-out data.

Protocol (the seed's): genes are split into train / valid / test; cell types into
*seen* (training) and *unseen*. Every model trains on train genes of seen cell
types (validating on valid genes of seen cell types). It is scored on

- ``seen/new``: the test genes of the seen cell types (genes never trained on),
- ``unseen/known``: the training genes of the unseen cell types (cell types never
  trained on, as in the seed's test set, where the genes' expression in other
  cell types is known: the per-gene mean is the natural baseline there), and
- ``unseen/new``: the other genes of the unseen cell types (neither known),
as defined in :data:`histexpr.evaluate.GROUPS`; "all" pools the three.
On simulated data the Bayes oracle is scored too, and each model's MSE is given
relative to it.

The run directory (:mod:`histexpr.runs`) receives ``run.json``, ``results.csv``,
``per_cell.csv``, ``predictions.csv`` and one saved model per kind under ``models/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histexpr._runtime import Steps
from histexpr.config import to_dict
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import KIND_TABLE, defines, fit_estimator, kind_of, make_estimator
from histexpr.estimators.bundle import holds_labels, model_task, read_header
from histexpr.evaluate import (
    METRIC_NAMES,
    Evaluation,
    assign_groups,
    evaluate_predictions,
    fitting_metrics,
    keep_metrics,
)
from histexpr.runs import start_run, write_run

DEFAULT_MODELS = ("global-mean", "gene-mean", "ridge", "random-forest", "lightgbm", "ensemble")


@dataclass(frozen=True)
class ExperimentConfig:
    """What to train and how to split.

    Attributes
    ----------
    models : tuple of str
        Model kinds (see :data:`histexpr.estimators.KINDS`).
    unseen_cells : tuple of str
        Cell types held out of training. Empty: taken from the data (the
        simulator records them), else none.
    gene_split : str
        "random", "chromosome" or "deepchrome" (see :mod:`histexpr.data.splits`).
    valid_fraction, test_fraction : float
        Gene fractions for validation and test (random split).
    seed : int
    neural : tuple of str
        ``field=value`` overrides for the neural models; each model takes those
        its configs define (e.g. ``channels`` reaches the ConvNet kinds only). A
        field that no requested neural model defines is an error.
    neural_kind : tuple of str
        ``kind:field=value`` overrides for one neural kind, applied after ``neural``
        (the demo's ensemble trains shorter than its atlas-convnet).
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    unseen_cells: tuple[str, ...] = ()
    gene_split: str = "random"
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    neural: tuple[str, ...] = ()
    neural_kind: tuple[str, ...] = ()


@dataclass
class ExperimentResult:
    """Outcome of :func:`run_experiment`."""

    run_dir: Path
    evaluation: Evaluation
    seconds: dict[str, float]
    train_cells: list[str]
    unseen_cells: list[str]


def resolve_unseen_cells(data: HistoneDataset, requested) -> list[str]:
    """Unseen cell types: as requested, else those recorded in the data (the simulator does), else none."""
    if requested:
        missing = sorted(set(requested) - set(data.cells))
        if missing:
            raise HistexprError(f"unseen cell type(s) not in data: {', '.join(missing)}")
        return list(requested)
    unseen = data.meta.get("unseen_cells") or [] if isinstance(data.meta, dict) else []
    return [c for c in unseen if c in data.cells]


def split_examples(data: HistoneDataset, config: ExperimentConfig, unseen: list[str]):
    """Train, valid and test subsets following the module protocol."""
    from histexpr.data.splits import split_genes

    genes = np.unique(data.gene)
    split = split_genes(
        genes,
        method=config.gene_split,
        valid_fraction=config.valid_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )
    seen_mask = ~np.isin(data.cell, unseen)
    if not seen_mask.any():
        raise HistexprError("every cell type is marked unseen; nothing to train on")
    train = data.subset(seen_mask & np.isin(data.gene, split.train))
    valid = data.subset(seen_mask & np.isin(data.gene, split.valid))
    test = data.subset((seen_mask & np.isin(data.gene, split.test)) | ~seen_mask)
    return train, valid, test


def _neural_overrides(config: ExperimentConfig) -> dict[str, list[str]]:
    """The ``config.neural`` overrides that each requested neural kind defines.

    Names are matched by the one resolver (:func:`histexpr.config.resolve_overrides`
    through :func:`histexpr.estimators.defines`): flat, dotted or old aliases. The kinds
    are those that train a network (``kind_of(kind).network``).
    """
    from histexpr.config import parse_overrides

    overrides = parse_overrides(list(config.neural))
    kinds = [k for k in config.models if kind_of(k).network]
    out, used = {}, set()
    for kind in kinds:
        names = [k for k in overrides if defines(kind, k)]
        out[kind] = [f"{k}={overrides[k]}" for k in names]
        used |= set(names)
    unknown = set(overrides) - used if kinds else set()
    if unknown:
        raise ConfigError(
            f"neural override field(s) {', '.join(sorted(unknown))} are defined by none of "
            f"{', '.join(kinds)}"
        )
    for item in config.neural_kind:
        kind, _, setting = item.partition(":")
        name = setting.split("=", 1)[0].strip()
        if kind not in out or not defines(kind, name):
            raise ConfigError(
                f"neural override {item!r}: {kind} is not a requested neural kind defining {name!r}"
            )
        mine = parse_overrides(out[kind] + [setting])
        out[kind] = [f"{k}={v}" for k, v in mine.items()]
    return out


def model_weights(kinds) -> list[float]:
    """Expected relative training cost of each kind, for the time-left estimate."""
    return [10.0 if kind_of(k).network else 1.0 for k in kinds]


def check_models(models) -> None:
    """Refuse, in one line and before any training, kinds a run cannot score.

    A run scores each model's expression of every held-out example; a differential kind
    (``kind_of(kind).pairs``) predicts the change between two cell types instead: it is
    trained with ``histexpr train`` and scored with ``evaluate --pair`` (the demo's
    differential section, :func:`histexpr.workflows.demo.run_diff_demo`, scores pairs).
    """
    unknown = [m for m in models if m not in KIND_TABLE]
    if unknown:
        raise ConfigError(
            f"unknown model kind(s) {', '.join(unknown)}; choose from {', '.join(KIND_TABLE)}"
        )
    pairs = [m for m in models if kind_of(m).pairs]
    if pairs:
        raise ConfigError(
            f"{', '.join(pairs)} predict(s) the change between two cell types, not the "
            "expression a run scores: train with histexpr train --model KIND and score with "
            "histexpr evaluate MODEL DATA --pair A:B"
        )


def run_experiment(
    data: HistoneDataset,
    run_dir,
    config: ExperimentConfig = ExperimentConfig(),
    data_path: str | None = None,
    log: Callable[[str], None] = print,
    steps: Steps | None = None,
    progress: bool = True,
) -> ExperimentResult:
    """Train every model of ``config`` on ``data`` and evaluate on held-out genes.

    Parameters
    ----------
    data : HistoneDataset
        With targets.
    run_dir : path
        Output directory (created).
    config : ExperimentConfig
    data_path : str, optional
        Recorded in ``run.json`` so later commands (report, explain) find the data.
    log : callable
        Receives the data summary and one line per step.
    steps : Steps, optional
        The caller's overall progress (the demo's, with its later steps); by default
        one step per model, a network weighing as much as ten other models.
    progress : bool
        Log the step lines (step, elapsed time, time left); false also turns off the
        networks' member lines and epoch bars.
    """
    if not data.has_target:
        raise HistexprError("the data set has no expression values; cannot train or evaluate")
    check_models(config.models)
    unseen = resolve_unseen_cells(data, config.unseen_cells)
    train, valid, test = split_examples(data, config, unseen)
    run_dir = start_run(run_dir)
    train_cells = train.cells
    log(
        f"data: {len(data)} examples, {len(data.cells)} cell types ({len(unseen)} unseen); "
        f"train {len(train)}, valid {len(valid)}, test {len(test)}"
    )
    predictions: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    if "simulator" in data.meta:
        from histexpr.simulator import oracle_for_dataset

        t0 = time.perf_counter()
        predictions["oracle"] = oracle_for_dataset(test)
        seconds["oracle"] = time.perf_counter() - t0
    neural_overrides = _neural_overrides(config)
    tasks: dict[str, str] = {}
    if not progress:  # no member lines or epoch bars either
        for kind, sets in neural_overrides.items():
            sets += ["progress=false"] if defines(kind, "progress") else []
    if steps is None:
        steps = Steps(model_weights(config.models), emit=log, enabled=progress)
    for kind in config.models:
        est = make_estimator(kind, neural_overrides.get(kind))
        model_dir = run_dir / "models" / kind
        steps.begin(f"training {kind} ...")
        t0 = time.perf_counter()
        fit_estimator(est, train, valid, run_dir=model_dir)
        seconds[kind] = time.perf_counter() - t0
        predictions[kind] = est.predict(test)
        est.save(model_dir)
        tasks[kind] = model_task(read_header(model_dir))
        if progress:
            log(f"  {kind}: {seconds[kind]:.1f} s")
    # groups (histexpr.evaluate.GROUPS): seen/new = test genes of seen cell types;
    # unseen/known and unseen/new = training and held-out genes of unseen cell types
    evaluation = evaluate_predictions(
        test.y,
        test.cell,
        predictions,
        unseen,
        gene=test.gene,
        train_cells=train_cells,
        train_genes=np.unique(train.gene),
    )
    # a classifier is scored by the metrics that fit it (the AUC of the median split)
    labels = holds_labels(data.target, test.y)
    for kind, task in tasks.items():
        fitting = fitting_metrics(task, labels)
        if len(fitting) < len(METRIC_NAMES):
            keep_metrics(evaluation, fitting, model=kind)
            evaluation.notes.append(f"{kind} is a classifier: scored by {', '.join(fitting)} only")
    evaluation.table["train_seconds"] = evaluation.table["model"].map(seconds)
    write_run(
        run_dir,
        results=evaluation.table,
        per_cell=evaluation.per_cell,
        cell=test.cell,
        gene=test.gene,
        y=test.y,
        predictions=predictions,
        config=to_dict(config),
        n_examples=len(data),
        cells=data.cells,
        train_cells=train_cells,
        unseen_cells=unseen,
        target=data.target,
        data_path=data_path,
        group=assign_groups(test.cell, test.gene, unseen, train_cells, np.unique(train.gene)),
    )
    return ExperimentResult(run_dir, evaluation, seconds, train_cells, unseen)
