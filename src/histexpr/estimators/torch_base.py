"""The one torch estimator: seeding, building, training, metrics, saving and loading.

:class:`TorchEstimator` owns everything the neural kinds share; a kind is a subclass
that fills in small hooks, in the spirit of scvi-tools' model base (its data splitter,
training plan and runner are class attributes):

- :meth:`~TorchEstimator._prepare` sets what the network's shape depends on (widths
  chosen by data size, the atlas features, the training pairs);
- :meth:`~TorchEstimator._fit_inputs` says what the members train on: the targets,
  the input ``sources`` of the runner (plain arrays, tuples of row-aligned arrays, or
  :class:`~histexpr.training.plan.Gathered` views) and the member ``specs`` (default:
  the kind's registered member plan);
- :meth:`~TorchEstimator._build` builds the untrained model (normaliser + network);
- optional: :meth:`~TorchEstimator._init_weights` (start values, e.g. a head's bias),
  :meth:`~TorchEstimator._member_spec` (e.g. where a member's output starts),
  :meth:`~TorchEstimator._scores` (metrics after training), :meth:`_save_state` and
  :meth:`_load_state` (files beside the weights), :meth:`_header_extra`.

Training always goes through :func:`histexpr.training.runners.fit_members` (members in
turn, on Dask workers or under DDP; checkpoints and ``history.csv`` in ``run_dir``;
``--resume``). A model directory (:mod:`histexpr.estimators.bundle`) holds
``model.json``, ``weights.safetensors`` (the whole state dict, normaliser included),
``normalization.json``, ``metrics.json`` and ``history.csv``, plus a kind's own files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from histexpr.config import check_choice, to_dict
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators import bundle
from histexpr.estimators.bundle import InputContract
from histexpr.estimators.kinds import kind_of
from histexpr.evaluate import fit_metrics
from histexpr.models import norm_stats
from histexpr.models.heads import rename_legacy_keys
from histexpr.predict import PRECISIONS
from histexpr.training.config import ALIASES
from histexpr.training.members import plan_specs, task_targets
from histexpr.training.plan import read_history, write_history
from histexpr.training.runners import fit_members

__all__ = [
    "NEURAL_ALIASES",
    "WEIGHTS",
    "FitInputs",
    "InferenceConfig",
    "TorchEstimator",
    "read_network_files",
    "write_network_files",
]

WEIGHTS = "weights.safetensors"
#: Old flat ``--set`` names of the neural kinds -> the dotted field they mean now.
NEURAL_ALIASES = {**ALIASES, "inference_precision": "inference.precision"}


@dataclass(frozen=True)
class InferenceConfig:
    """How a fitted neural model predicts."""

    precision: str = field(
        default="32",
        metadata={"help": "prediction precision: 32, or bf16 (about 2x faster, ~3 digits)"},
    )

    def __post_init__(self):
        check_choice("inference.precision", self.precision, tuple(PRECISIONS))


class FitInputs(NamedTuple):
    """What the members of a torch estimator train on (see :meth:`TorchEstimator._fit_inputs`).

    Attributes
    ----------
    train, valid : HistoneDataset or None
        The data whose targets and rows the member specs refer to (``valid`` None:
        validation on rows of ``train``).
    sources : dict or None
        ``{"train": inputs, "valid": inputs or None}``; inputs are an array
        (n, marks, bins) or a tuple of row-aligned arrays or Gathered views (None:
        the data's ``X``).
    specs : list of MemberSpec, str or None
        The members; a member plan's name (:data:`histexpr.models.PLANS`), laid out on
        the built network; None: the kind's registered plan.
    metrics : dict
        Entries for ``metrics_`` known before training.
    """

    train: HistoneDataset
    valid: HistoneDataset | None
    sources: dict | None = None
    specs: list | str | None = None
    metrics: dict | None = None


def write_network_files(tmp: Path, model, marks, metrics: dict, history) -> None:
    """The files every network model directory holds, written into ``tmp``.

    ``weights.safetensors`` (the whole state dict, normaliser included),
    ``normalization.json`` (the per-mark statistics, for people), ``metrics.json`` and
    ``history.csv``. The caller writes ``model.json`` (:func:`bundle.write_header`).
    """
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp / WEIGHTS)
    stats = model.normalizer.stats()
    norm = {
        "transform": "(log1p(max(x, 0)) - mean[mark]) / std[mark]",
        "marks": list(marks),
        "mean": [float(v) for v in stats.mean],
        "std": [float(v) for v in stats.std],
    }
    (tmp / "normalization.json").write_text(json.dumps(norm, indent=2) + "\n")
    bundle.save_metrics(tmp, metrics)
    write_history(tmp / "history.csv", history)


def read_network_files(directory: Path, model: torch.nn.Module) -> tuple[dict, list[dict]]:
    """Load ``weights.safetensors`` into ``model`` (parameter names of directories saved
    before the trunk + head layout renamed, :func:`~histexpr.models.heads.rename_legacy_keys`;
    one-line error when they do not fit); return the directory's metrics and history rows."""
    from safetensors.torch import load_file

    weights = directory / WEIGHTS
    if not weights.is_file():
        raise HistexprError(f"{directory}: no {WEIGHTS}")
    try:
        state = rename_legacy_keys(load_file(weights), model.state_dict().keys())
        model.load_state_dict(state)
    except (RuntimeError, OSError) as exc:
        raise HistexprError(f"{weights}: weights do not fit the model ({exc})") from None
    history = directory / "history.csv"
    return bundle.load_metrics(directory), read_history(history) if history.is_file() else []


class TorchEstimator:
    """Base of every neural kind (see the module docstring for the hooks).

    A subclass sets ``kind`` and exposes its configs as ``model_cfg`` and ``train_cfg``
    (and ``inference_cfg``, or None where it has none).

    Attributes
    ----------
    model_ : torch.nn.Module or None
        The fitted model (normaliser + network), raw counts in.
    contract_ : InputContract or None
        Marks, bins, bin size, target and training cell types, set by ``fit``/``load``.
    genes_ : list of str
        Training genes.
    metrics_ : dict
    history_ : list of dict
        Per member and epoch: member, epoch, split, loss.
    """

    kind: str = ""
    inference_cfg: InferenceConfig | None = None

    def __init__(self):
        self.model_: torch.nn.Module | None = None
        self.contract_: InputContract | None = None
        self.genes_: list[str] = []
        self.metrics_: dict = {}
        self.history_: list[dict] = []

    # -- hooks -----------------------------------------------------------------------
    def _prepare(self, train: HistoneDataset) -> None:
        """Set what the network's shape depends on, from the training data (default: nothing)."""

    def _fit_inputs(self, train: HistoneDataset, valid: HistoneDataset | None) -> FitInputs:
        """The data, inputs and members the runner trains on (default: as given)."""
        return FitInputs(train, valid)

    def _build(self) -> torch.nn.Module:
        """The untrained model: input normaliser + network."""
        raise NotImplementedError

    def _normaliser_input(self, train: HistoneDataset, fit: FitInputs) -> np.ndarray:
        """The counts the input normaliser's statistics come from (default: ``train.X``)."""
        return train.X

    def _init_weights(self, model: torch.nn.Module, fit: FitInputs) -> None:
        """Start values beyond the network's own initialisation (default: none)."""

    def _member_spec(self, spec, fit: FitInputs):
        """A member's spec as the estimator wants it (default: as laid out)."""
        return spec

    def config_dict(self) -> dict:
        """The configs as plain data (``model.json``'s "config")."""
        raise NotImplementedError

    def arch(self) -> dict:
        """The architecture as plain data (what ``--resume`` must match, what Dask
        workers rebuild from)."""
        return {"kind": self.kind, "config": to_dict(self.model_cfg)}

    def _header_extra(self) -> dict | None:
        return None

    def _save_state(self, tmp: Path) -> None:
        """Write the kind's own files beside the weights (default: none)."""

    def _load_state(self, directory: Path, header) -> None:
        """Read the kind's own files, before the model is built (default: none)."""

    @classmethod
    def _from_header(cls, header) -> TorchEstimator:
        """A new estimator with the configs of a model directory's header."""
        raise NotImplementedError

    # -- training --------------------------------------------------------------------
    def fit(
        self,
        train: HistoneDataset,
        valid: HistoneDataset | None = None,
        run_dir=None,
        resume: bool = False,
        callbacks=(),
    ):
        """Train on ``train`` (early stopping on ``valid``, cell folds or held-out genes).

        Parameters
        ----------
        train : HistoneDataset
            Training data with targets.
        valid : HistoneDataset, optional
            Validation data (early stopping; reported metrics).
        run_dir : path, optional
            Where checkpoints and ``history.csv`` go (default: a temporary directory).
        resume : bool
            Continue an interrupted run in ``run_dir`` (refused when its data, cells
            or settings differ, see :mod:`histexpr.training.fingerprint`).
        callbacks : sequence of lightning Callback
            Extra callbacks for every member's Trainer.
        """
        if not train.has_target:
            raise HistexprError(f"{self.kind}: training data has no expression values")
        self.contract_ = InputContract.of(train)
        if valid is not None:
            bundle.check_input(self.contract_, valid, source="validation data")
        self.genes_ = sorted(set(train.gene.tolist()))
        cfg = self.train_cfg
        self._prepare(train)
        fit = self._fit_inputs(train, valid)
        torch.manual_seed(cfg.optim.seed)
        model = self._build()
        model.normalizer.set_stats(norm_stats(self._normaliser_input(train, fit)))
        self._init_weights(model, fit)
        cells = list(self.contract_.cells)
        specs = fit.specs
        if isinstance(specs, str):
            specs = plan_specs(specs, self.kind, model.net, fit.train, fit.valid, cfg, cells)
        if specs is not None:
            specs = [self._member_spec(s, fit) for s in specs]
        results, self.history_ = fit_members(
            self.kind,
            model,
            fit.train,
            fit.valid,
            cfg,
            cells,
            Path(run_dir) if run_dir is not None else None,
            resume,
            callbacks,
            arch=self.arch(),
            sources=fit.sources,
            specs=specs,
        )
        self.model_ = model.cpu().eval()
        self.metrics_ = {"kind": self.kind, **(fit.metrics or {})}
        self.metrics_["members"] = [r._asdict() for r in results]
        self.metrics_.update(self._after_fit(train))
        self.metrics_.update(self._scores(train, valid))
        return self

    def _after_fit(self, train: HistoneDataset) -> dict:
        """What the kind derives from the trained model before it is scored (e.g. the
        atlas guard); returns metrics (default: none)."""
        return {}

    def _scores(self, train: HistoneDataset, valid: HistoneDataset | None) -> dict:
        """Training metrics on at most ``trainval_max`` examples (a full pass on large
        data would cost as much as an epoch) and metrics on ``valid``."""
        task, cfg = self.train_cfg.task, self.train_cfg
        seen, cap = train, cfg.validation.trainval_max
        if 0 < cap < len(train):
            rng = np.random.default_rng(cfg.optim.seed)
            seen = train.subset(np.sort(rng.choice(len(train), cap, replace=False)))
        out = {"n_train": len(train), "n_train_metrics": len(seen)}
        out.update(fit_metrics(task_targets(seen, task), self.predict(seen), task, "train"))
        if valid is not None and valid.has_target:
            out["n_valid"] = len(valid)
            out.update(fit_metrics(task_targets(valid, task), self.predict(valid), task, "valid"))
        return out

    # -- prediction ------------------------------------------------------------------
    def _require_fitted(self) -> torch.nn.Module:
        if self.model_ is None or self.contract_ is None:
            raise HistexprError(f"{self.kind} model is not fitted")
        return self.model_

    @property
    def precision(self) -> str | None:
        """Prediction precision (None: the predict default)."""
        return None if self.inference_cfg is None else self.inference_cfg.precision

    # -- saving ----------------------------------------------------------------------
    def save(self, directory) -> Path:
        """Write the model directory (atomically, with checksums) and return its path.

        Under DDP only the global-zero process writes (all hold the same model).
        """
        from histexpr.training.ddp import is_global_zero

        model = self._require_fitted()
        directory = Path(directory)
        if not is_global_zero():
            return directory
        with bundle.bundle_dir(directory) as tmp:
            marks = self.contract_.marks
            write_network_files(tmp, model, marks, self.metrics_, self.history_)
            bundle.write_header(
                tmp,
                self.kind,
                self.config_dict(),
                extra=self._header_extra(),
                contract=self.contract_,
                task=self.train_cfg.task,
                genes=self.genes_,
            )
            self._save_state(tmp)
        return directory

    @classmethod
    def load(cls, directory):
        """Rebuild a saved model from its directory alone."""
        directory = Path(directory)
        header = bundle.read_header(directory)
        if not kind_of(header.kind).estimator.endswith(f":{cls.__name__}"):
            raise HistexprError(f"{directory}: {header.kind!r} is not a {cls.__name__} model")
        try:
            est = cls._from_header(header)
        except (KeyError, TypeError, ConfigError) as exc:
            raise HistexprError(f"{directory / bundle.HEADER}: malformed config ({exc})") from None
        est.contract_ = header.contract
        est.genes_ = list(header.train_genes or ())
        est._load_state(directory, header)
        model = est._build()
        est.metrics_, est.history_ = read_network_files(directory, model)
        est.model_ = model.eval()
        return est
