"""The one base of the non-neural kinds: config, fit checks, predict in blocks, the bundle.

Every kind that is not a torch network (the single-cell baselines of
:mod:`histexpr.estimators.baselines`, atlas-ridge and atlas-lightgbm of
:mod:`histexpr.estimators.atlas`, diff-ridge and diff-lightgbm of
:mod:`histexpr.estimators.diff_levels`) is a :class:`TabularEstimator`. The base owns

- creation from a config class and ``--set`` overrides (:meth:`TabularEstimator.create`);
- the fit checks: targets present, the input contract and training genes recorded
  (:meth:`TabularEstimator._require_target`), and at predict time the data conformed
  to the model's marks and checked against the contract (:meth:`TabularEstimator._check`);
- prediction in blocks of rows (:meth:`TabularEstimator.predict`), so the feature
  matrix of a large input never exists whole;
- the bundle: ``model.json`` (kind, config, contract, training genes), the kind's
  state (arrays as ``.npz`` read with ``allow_pickle=False``, LightGBM as its text
  model; :func:`load_arrays`, :func:`histexpr.estimators.trees.load_booster`) and
  ``metrics.json`` (``metrics_``).

A kind fills in small hooks: ``kind``, ``config_cls``, ``fit``, ``_predict_rows``
(one block's predictions), ``_save_state`` / ``_load_state`` (its files), and
``block_rows`` (0: predict the whole input at once).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from histexpr.config import describe, from_dict, override, to_dict
from histexpr.data.dataset import HistoneDataset, conform_marks
from histexpr.errors import HistexprError
from histexpr.estimators.bundle import (
    InputContract,
    bundle_dir,
    check_input,
    read_header,
    save_metrics,
    write_header,
)

__all__ = ["BLOCK_ALIGN", "BLOCK_ROWS", "TabularEstimator", "load_arrays", "valid_or_none"]

#: Rows predicted at a time: the log1p features of 65,536 rows of 5 marks x 100 bins
#: take 131 MB in float32, so a genome-wide input of many cell types stays in memory.
BLOCK_ROWS = 65_536
#: Blocks start at multiples of this many rows. BLAS matrix-vector kernels compute
#: rows in groups (of 4 to 16) and the rows left over by another loop, so a ridge
#: prediction changes in the last bit when a block boundary moves a row between
#: the two; blocks aligned to 64 rows leave every row where one call put it.
BLOCK_ALIGN = 64


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path`` (no pickles); one line if it is missing."""
    if not path.is_file():
        raise HistexprError(f"{path.parent}: model directory is missing {path.name}")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def valid_or_none(valid: HistoneDataset | None) -> HistoneDataset | None:
    """``valid`` when it can score a model (it has targets and rows), else None."""
    return valid if (valid is not None and valid.has_target and len(valid)) else None


class TabularEstimator:
    """Shared plumbing of the non-neural kinds (see the module docstring).

    Attributes
    ----------
    config : frozen dataclass
        An instance of :attr:`config_cls`.
    contract_ : InputContract or None
        What the training data looked like (marks, bins, transform); None before fit.
    genes_ : list of str
        The training genes (recorded in ``model.json``).
    metrics_ : dict
        Fit metrics, saved as ``metrics.json``.
    """

    kind: str = ""
    #: The kind's frozen config dataclass (its fields are the ``--set`` settings).
    config_cls: type
    #: Rows per block of :meth:`predict`; 0 predicts the whole input in one call.
    block_rows: int = BLOCK_ROWS

    def __init__(self, config=None):
        self.config = config if config is not None else self.config_cls()
        self.contract_: InputContract | None = None
        self.genes_: list[str] = []
        self.metrics_: dict = {}

    @property
    def marks(self) -> tuple[str, ...] | None:
        return None if self.contract_ is None else self.contract_.marks

    @property
    def n_bins(self) -> int | None:
        return None if self.contract_ is None else self.contract_.n_bins

    @classmethod
    def create(cls, kind: str, overrides=None):
        """A new, unfitted estimator with ``overrides`` (dict or ``--set`` strings) applied."""
        return cls(override(cls.config_cls(), overrides))

    @classmethod
    def defines(cls, name: str) -> bool:
        """Whether ``name`` is a ``--set`` setting of this kind (a field of its config)."""
        return name in {s.name for s in describe(cls.config_cls())}

    # -- fit and predict -------------------------------------------------------------
    def _require_target(self, train: HistoneDataset) -> None:
        """Refuse training data without targets; record its contract and genes."""
        if not train.has_target:
            raise HistexprError(f"{self.kind}: training data has no expression values")
        self.contract_ = InputContract.of(train)
        self.genes_ = sorted(set(train.gene.tolist()))

    def _check(self, data: HistoneDataset) -> HistoneDataset:
        """``data`` in the model's marks, selected and ordered by name, checked against
        the contract (one line when it does not match or the model is not fitted)."""
        if self.marks is None:
            raise HistexprError(f"{self.kind}: model is not fitted")
        if tuple(data.marks) != tuple(self.marks):
            data = conform_marks(data, self.marks)
        check_input(self.contract_, data)
        return data

    def predict(self, data: HistoneDataset, batch_size: int | None = None) -> np.ndarray:
        """Predictions for every example of ``data``, ``batch_size`` (default
        :attr:`block_rows`, rounded up to :data:`BLOCK_ALIGN`) rows at a time; the
        result does not depend on the block size.

        Returns
        -------
        np.ndarray, shape (len(data),), float32
        """
        data = self._check(data)
        step = batch_size or self.block_rows
        step = -(-step // BLOCK_ALIGN) * BLOCK_ALIGN
        if not step or len(data) <= step:
            return np.asarray(self._predict_rows(data), dtype=np.float32)
        out = np.empty(len(data), dtype=np.float32)
        for start in range(0, len(data), step):
            rows = slice(start, start + step)
            out[rows] = self._predict_rows(data.subset(rows))
        return out

    def _predict_rows(self, data: HistoneDataset) -> np.ndarray:
        """Predictions of one block of checked rows, shape (len(data),)."""
        raise NotImplementedError(f"{type(self).__name__} predicts no single cell")

    # -- the bundle ------------------------------------------------------------------
    def save(self, directory) -> Path:
        """Write the model directory (atomically); returns its path."""
        if self.marks is None:
            raise HistexprError(f"{self.kind}: cannot save an unfitted model")
        with bundle_dir(directory) as tmp:
            write_header(
                tmp, self.kind, to_dict(self.config), contract=self.contract_, genes=self.genes_
            )
            self._save_state(tmp)
            save_metrics(tmp, self.metrics_)
        return Path(directory)

    @classmethod
    def load(cls, directory):
        """The estimator saved in ``directory`` by :meth:`save`."""
        header = read_header(directory)
        est = cls(from_dict(cls.config_cls, header.config))
        est.contract_, est.genes_ = header.contract, list(header.train_genes or ())
        est._load_state(Path(directory))
        return est

    def _save_state(self, directory: Path) -> None:
        """Write the kind's fitted state into ``directory``."""
        raise NotImplementedError

    def _load_state(self, directory: Path) -> None:
        """Read what :meth:`_save_state` wrote."""
        raise NotImplementedError
