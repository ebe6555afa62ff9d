"""Non-neural baselines with the estimator surface of :mod:`histexpr.estimators`.

- :class:`GlobalMean`: the mean training expression (the floor every model must beat).
- :class:`GeneMean`: each gene's mean over the training cell types; the natural
  baseline for cell types never seen in training.
- :class:`RidgeBaseline`: ridge regression on log1p bin counts (the seed's linear baseline).
- :class:`RandomForestBaseline`: a random forest on the mark-bins most correlated
  with expression (r-value selection, as in the seed and Dong et al., Genome
  Biology 13:R53, 2012).
- :class:`LightGBMBaseline`: gradient-boosted trees on log1p bin counts.

All of them save to a bundle directory without pickles: coefficients and tree
arrays as ``.npz`` (loaded with ``allow_pickle=False``), LightGBM as its text model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histexpr.atomic import atomic_dir
from histexpr.config import from_dict, override, to_dict
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import HistexprError
from histexpr.estimators.bundle import check_input, read_header, save_metrics, write_header
from histexpr.estimators.trees import TreeEnsembleArrays


def log1p_features(X: np.ndarray) -> np.ndarray:
    """Flatten log1p counts.

    Parameters
    ----------
    X : np.ndarray, shape (n_examples, n_marks, n_bins)

    Returns
    -------
    np.ndarray, shape (n_examples, n_marks * n_bins), float32
    """
    X = np.asarray(X, dtype=np.float32)
    return np.log1p(X.reshape(X.shape[0], -1))


@dataclass(frozen=True)
class GlobalMeanConfig:
    pass


@dataclass(frozen=True)
class GeneMeanConfig:
    pass


@dataclass(frozen=True)
class RidgeConfig:
    alpha: float = 1.0


@dataclass(frozen=True)
class RandomForestConfig:
    n_features: int = 50
    n_estimators: int = 100
    max_depth: int = 12
    min_samples_leaf: int = 5
    max_samples: float = 0.5
    seed: int = 0
    n_jobs: int = -1


@dataclass(frozen=True)
class LightGBMConfig:
    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 20
    subsample: float = 0.8
    colsample_bytree: float = 0.5
    seed: int = 0
    n_jobs: int = 2


class _Baseline:
    """Shared bundle plumbing: config, input contract, save/load."""

    kind: str = ""
    config_cls: type = GlobalMeanConfig

    def __init__(self, config=None):
        self.config = config if config is not None else self.config_cls()
        self.marks: tuple[str, ...] | None = None
        self.n_bins: int | None = None
        self.metrics_: dict = {}

    @classmethod
    def create(cls, kind: str, overrides=None):
        return cls(override(cls.config_cls(), overrides))

    def _require_target(self, train: HistoneDataset) -> None:
        if not train.has_target:
            raise HistexprError(f"{self.kind}: training data has no expression values")
        self.marks, self.n_bins = train.marks, train.n_bins

    def _check(self, data: HistoneDataset) -> None:
        if self.marks is None:
            raise HistexprError(f"{self.kind}: model is not fitted")
        if tuple(data.marks) != tuple(self.marks) or data.n_bins != self.n_bins:
            from histexpr.estimators.bundle import BundleHeader

            check_input(
                BundleHeader(self.kind, {}, self.marks, self.n_bins), data.marks, data.n_bins
            )

    def save(self, directory) -> Path:
        if self.marks is None:
            raise HistexprError(f"{self.kind}: cannot save an unfitted model")
        with atomic_dir(directory) as tmp:
            write_header(tmp, self.kind, to_dict(self.config), self.marks, self.n_bins)
            self._save_state(tmp)
            save_metrics(tmp, self.metrics_)
        return Path(directory)

    @classmethod
    def load(cls, directory):
        header = read_header(directory)
        est = cls(from_dict(cls.config_cls, header.config))
        est.marks, est.n_bins = header.marks, header.n_bins
        est._load_state(Path(directory))
        return est

    def _save_state(self, directory: Path) -> None:
        raise NotImplementedError

    def _load_state(self, directory: Path) -> None:
        raise NotImplementedError


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise HistexprError(f"{path.parent}: model directory is missing {path.name}")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class GlobalMean(_Baseline):
    """Predict the mean training expression for every example."""

    kind = "global-mean"
    config_cls = GlobalMeanConfig

    def fit(self, train, valid=None, run_dir=None):
        self._require_target(train)
        self.mean_ = float(np.mean(train.y))
        return self

    def predict(self, data, batch_size=None):
        self._check(data)
        return np.full(len(data), self.mean_, dtype=np.float32)

    def _save_state(self, directory):
        (directory / "state.json").write_text(json.dumps({"mean": self.mean_}))

    def _load_state(self, directory):
        self.mean_ = float(json.loads((directory / "state.json").read_text())["mean"])


class GeneMean(_Baseline):
    """Predict each gene's mean expression over the training cell types.

    Genes not seen in training get the global mean.
    """

    kind = "gene-mean"
    config_cls = GeneMeanConfig

    def fit(self, train, valid=None, run_dir=None):
        self._require_target(train)
        genes, inverse = np.unique(train.gene, return_inverse=True)
        sums = np.bincount(inverse, weights=train.y, minlength=len(genes))
        counts = np.bincount(inverse, minlength=len(genes))
        self.genes_ = genes.astype(str)
        self.means_ = (sums / counts).astype(np.float32)
        self.global_ = float(np.mean(train.y))
        return self

    def predict(self, data, batch_size=None):
        self._check(data)
        pos = np.searchsorted(self.genes_, data.gene)
        pos = np.clip(pos, 0, len(self.genes_) - 1)
        known = self.genes_[pos] == data.gene
        out = np.full(len(data), self.global_, dtype=np.float32)
        out[known] = self.means_[pos[known]]
        return out

    def _save_state(self, directory):
        np.savez(
            directory / "state.npz",
            genes=self.genes_.astype("U"),
            means=self.means_,
            global_mean=np.float32(self.global_),
        )

    def _load_state(self, directory):
        z = _load_arrays(directory / "state.npz")
        self.genes_, self.means_, self.global_ = (
            z["genes"].astype(str),
            z["means"],
            float(z["global_mean"]),
        )


class RidgeBaseline(_Baseline):
    """Ridge regression on standardised log1p bin counts."""

    kind = "ridge"
    config_cls = RidgeConfig

    def fit(self, train, valid=None, run_dir=None):
        from sklearn.linear_model import Ridge

        self._require_target(train)
        F = log1p_features(train.X)
        self.mu_ = F.mean(axis=0)
        self.sd_ = F.std(axis=0) + 1e-6
        model = Ridge(alpha=self.config.alpha).fit((F - self.mu_) / self.sd_, train.y)
        self.coef_ = model.coef_.astype(np.float32)
        self.intercept_ = np.float32(model.intercept_)
        return self

    def predict(self, data, batch_size=None):
        self._check(data)
        F = (log1p_features(data.X) - self.mu_) / self.sd_
        return (F @ self.coef_ + self.intercept_).astype(np.float32)

    def _save_state(self, directory):
        np.savez(
            directory / "state.npz",
            mu=self.mu_,
            sd=self.sd_,
            coef=self.coef_,
            intercept=self.intercept_,
        )

    def _load_state(self, directory):
        z = _load_arrays(directory / "state.npz")
        self.mu_, self.sd_, self.coef_, self.intercept_ = (
            z["mu"],
            z["sd"],
            z["coef"],
            z["intercept"],
        )


def select_correlated_features(F: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` feature columns with the largest |Pearson r| with ``y``.

    Parameters
    ----------
    F : np.ndarray, shape (n_examples, n_features)
    y : np.ndarray, shape (n_examples,)
    k : int

    Returns
    -------
    np.ndarray, shape (k,), sorted column indices
    """
    Fc = F - F.mean(axis=0)
    yc = y - y.mean()
    denom = np.sqrt((Fc**2).sum(axis=0) * (yc**2).sum())
    r = np.divide(Fc.T @ yc, denom, out=np.zeros(F.shape[1]), where=denom > 0)
    k = min(k, F.shape[1])
    return np.sort(np.argsort(-np.abs(r), kind="stable")[:k])


class RandomForestBaseline(_Baseline):
    """Random forest on the ``n_features`` mark-bins most correlated with expression."""

    kind = "random-forest"
    config_cls = RandomForestConfig

    def fit(self, train, valid=None, run_dir=None):
        from sklearn.ensemble import RandomForestRegressor

        self._require_target(train)
        c = self.config
        F = log1p_features(train.X)
        self.features_ = select_correlated_features(F, train.y.astype(np.float64), c.n_features)
        rf = RandomForestRegressor(
            n_estimators=c.n_estimators,
            max_depth=c.max_depth,
            min_samples_leaf=c.min_samples_leaf,
            max_samples=c.max_samples,
            random_state=c.seed,
            n_jobs=c.n_jobs,
        ).fit(F[:, self.features_], train.y)
        self.trees_ = TreeEnsembleArrays.from_sklearn(rf.estimators_)
        return self

    def predict(self, data, batch_size=None):
        self._check(data)
        F = log1p_features(data.X)[:, self.features_]
        return self.trees_.predict_mean(F)

    def _save_state(self, directory):
        np.savez(directory / "state.npz", features=self.features_, **self.trees_.to_arrays())

    def _load_state(self, directory):
        z = _load_arrays(directory / "state.npz")
        self.features_ = z.pop("features")
        self.trees_ = TreeEnsembleArrays.from_arrays(z)


class LightGBMBaseline(_Baseline):
    """LightGBM gradient boosting on log1p bin counts (early stopping on ``valid``)."""

    kind = "lightgbm"
    config_cls = LightGBMConfig

    def fit(self, train, valid=None, run_dir=None):
        import lightgbm as lgb

        self._require_target(train)
        c = self.config
        params = {
            "objective": "regression",
            "learning_rate": c.learning_rate,
            "num_leaves": c.num_leaves,
            "min_child_samples": c.min_child_samples,
            "bagging_fraction": c.subsample,
            "bagging_freq": 1,
            "feature_fraction": c.colsample_bytree,
            "seed": c.seed,
            "num_threads": c.n_jobs,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        train_set = lgb.Dataset(log1p_features(train.X), train.y)
        kw = {}
        if valid is not None and valid.has_target and len(valid):
            kw = {
                "valid_sets": [lgb.Dataset(log1p_features(valid.X), valid.y, reference=train_set)],
                "callbacks": [lgb.early_stopping(30, verbose=False)],
            }
        self.booster_ = lgb.train(params, train_set, num_boost_round=c.n_estimators, **kw)
        best = self.booster_.best_iteration or c.n_estimators
        self.metrics_ = {"best_iteration": int(best)}
        return self

    def predict(self, data, batch_size=None):
        self._check(data)
        best = self.booster_.best_iteration or None
        return self.booster_.predict(log1p_features(data.X), num_iteration=best).astype(np.float32)

    def _save_state(self, directory):
        self.booster_.save_model(str(directory / "model.txt"))

    def _load_state(self, directory):
        import lightgbm as lgb

        path = directory / "model.txt"
        if not path.is_file():
            raise HistexprError(f"{directory}: model directory is missing model.txt")
        self.booster_ = lgb.Booster(model_file=str(path))
