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
from pathlib import Path

import numpy as np

from histexpr._runtime import choose_threads, notice
from histexpr.config import describe, from_dict, override, to_dict
from histexpr.data.dataset import HistoneDataset, canonical_gene_ids, conform_marks
from histexpr.errors import HistexprError
from histexpr.estimators.baseline_config import (
    FALLBACK_ROUNDS,
    RF_LEAF_GRID,
    GeneMeanConfig,
    GlobalMeanConfig,
    LightGBMConfig,
    RandomForestConfig,
    RidgeConfig,
)
from histexpr.estimators.bundle import (
    InputContract,
    bundle_dir,
    check_input,
    read_header,
    save_metrics,
    write_header,
)
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


def pool_edges(n_bins: int, pool_bins: int) -> np.ndarray:
    """Bin edges of ``min(pool_bins, n_bins)`` near-equal groups of ``n_bins`` bins."""
    return np.linspace(0, n_bins, min(pool_bins, n_bins) + 1).astype(int)


def pooled_log1p(X: np.ndarray, pool_bins: int) -> np.ndarray:
    """log1p counts averaged over ``pool_bins`` equal groups of bins per mark
    (:func:`pool_edges`).

    Parameters
    ----------
    X : np.ndarray, shape (n, n_marks, n_bins)

    Returns
    -------
    np.ndarray, shape (n, n_marks * groups), float32
    """
    L = np.log1p(np.asarray(X, dtype=np.float32))
    edges = pool_edges(L.shape[2], pool_bins)
    pooled = np.add.reduceat(L, edges[:-1], axis=2) / np.diff(edges)[None, None, :]
    return pooled.reshape(L.shape[0], -1).astype(np.float32)


class _Baseline:
    """Shared bundle plumbing: config, input contract, save/load."""

    kind: str = ""
    config_cls: type = GlobalMeanConfig

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
        return cls(override(cls.config_cls(), overrides))

    @classmethod
    def defines(cls, name: str) -> bool:
        """Whether ``name`` is a ``--set`` setting of this kind (a field of its config)."""
        return name in {s.name for s in describe(cls.config_cls())}

    def _require_target(self, train: HistoneDataset) -> None:
        if not train.has_target:
            raise HistexprError(f"{self.kind}: training data has no expression values")
        self.contract_ = InputContract.of(train)
        self.genes_ = sorted(set(train.gene.tolist()))

    def _check(self, data: HistoneDataset) -> HistoneDataset:
        """``data`` in the model's marks, selected and ordered by name."""
        if self.marks is None:
            raise HistexprError(f"{self.kind}: model is not fitted")
        if tuple(data.marks) != tuple(self.marks):
            data = conform_marks(data, self.marks)
        check_input(self.contract_, data)
        return data

    def save(self, directory) -> Path:
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
        header = read_header(directory)
        est = cls(from_dict(cls.config_cls, header.config))
        est.contract_, est.genes_ = header.contract, list(header.train_genes or ())
        est._load_state(Path(directory))
        return est

    def _save_state(self, directory: Path) -> None:
        raise NotImplementedError

    def _load_state(self, directory: Path) -> None:
        raise NotImplementedError


def load_arrays(path: Path) -> dict[str, np.ndarray]:
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
        data = self._check(data)
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
        data = self._check(data)
        # Canonical ids on both sides: a model saved before ids were canonical still matches.
        genes, train_genes = canonical_gene_ids(data.gene), canonical_gene_ids(self.genes_)
        order = np.argsort(train_genes)
        train_genes, means = train_genes[order], self.means_[order]
        pos = np.clip(np.searchsorted(train_genes, genes), 0, len(train_genes) - 1)
        known = train_genes[pos] == genes
        self.unknown_genes_ = len(np.unique(genes[~known]))
        if self.unknown_genes_:
            notice(
                f"gene-mean: {self.unknown_genes_} of {len(np.unique(genes))} genes are not "
                "among the training genes; they get the global mean",
                stacklevel=2,
            )
        out = np.full(len(data), self.global_, dtype=np.float32)
        out[known] = means[pos[known]]
        return out

    def _save_state(self, directory):
        np.savez(
            directory / "state.npz",
            genes=self.genes_.astype("U"),
            means=self.means_,
            global_mean=np.float32(self.global_),
        )

    def _load_state(self, directory):
        z = load_arrays(directory / "state.npz")
        self.genes_, self.means_, self.global_ = (
            z["genes"].astype(str),
            z["means"],
            float(z["global_mean"]),
        )


class RidgeBaseline(_Baseline):
    """Ridge regression on standardised log1p bin counts, alpha chosen by CV over genes."""

    kind = "ridge"
    config_cls = RidgeConfig

    def fit(self, train, valid=None, run_dir=None):
        from histexpr.estimators.linear import fit_ridge_cv

        self._require_target(train)
        F = log1p_features(train.X)
        self.mu_ = F.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.sd_ = (F.std(axis=0, dtype=np.float64) + 1e-6).astype(np.float32)
        mu, sd = self.mu_.astype(np.float64), self.sd_.astype(np.float64)

        def standardised(rows):
            return (F[rows].astype(np.float64) - mu) / sd

        c = self.config
        res = fit_ridge_cv(standardised, len(F), train.y, train.gene, c.cv_folds, c.alpha)
        self.coef_ = res.coef.astype(np.float32)
        self.intercept_ = np.float32(res.intercept)
        self.alpha_ = float(res.alpha)
        self.metrics_ = {"alpha": self.alpha_, "cv_folds": res.folds}
        if res.folds > 1:
            self.metrics_.update(
                cv_mse=float(res.cv_mse.min()),
                cv_mse_mean=res.cv_mse_mean,
                selection=(
                    f"alpha={self.alpha_:.4g} chosen by {res.folds}-fold CV over genes "
                    f"(CV MSE {res.cv_mse.min():.4g}; training mean {res.cv_mse_mean:.4g})"
                ),
            )
        else:
            self.metrics_["selection"] = f"alpha={self.alpha_:.4g} (fixed)"
        return self

    def predict(self, data, batch_size=None):
        data = self._check(data)
        F = (log1p_features(data.X) - self.mu_) / self.sd_
        return (F @ self.coef_ + self.intercept_).astype(np.float32)

    def _save_state(self, directory):
        np.savez(
            directory / "state.npz",
            mu=self.mu_,
            sd=self.sd_,
            coef=self.coef_,
            intercept=self.intercept_,
            alpha=np.float64(self.alpha_),
        )

    def _load_state(self, directory):
        z = load_arrays(directory / "state.npz")
        self.mu_, self.sd_, self.coef_, self.intercept_ = (
            z["mu"],
            z["sd"],
            z["coef"],
            z["intercept"],
        )
        # Models saved before the CV search carry only the configured alpha.
        self.alpha_ = float(z["alpha"]) if "alpha" in z else self.config.alpha


def lightgbm_params(c, rows: int | None = None) -> dict:
    """LightGBM's training parameters from a config with the LightGBM fields
    (learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree,
    reg_lambda, seed, n_jobs): deterministic, row-wise, quiet; ``num_threads`` from
    :func:`histexpr._runtime.choose_threads` (``n_jobs`` 0: by the free cores and
    the ``rows`` fitted on)."""
    return {
        "objective": "regression",
        "learning_rate": c.learning_rate,
        "num_leaves": c.num_leaves,
        "min_child_samples": c.min_child_samples,
        "bagging_fraction": c.subsample,
        "bagging_freq": 1,
        "feature_fraction": c.colsample_bytree,
        "lambda_l2": c.reg_lambda,
        "seed": c.seed,
        "num_threads": choose_threads(c.n_jobs, rows),
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


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


def _valid_or_none(valid):
    return valid if (valid is not None and valid.has_target and len(valid)) else None


class RandomForestBaseline(_Baseline):
    """Random forest on the ``n_features`` mark-bins most correlated with expression.

    ``min_samples_leaf`` is chosen from :data:`RF_LEAF_GRID` on the validation data
    (or out of bag) unless configured.
    """

    kind = "random-forest"
    config_cls = RandomForestConfig

    def fit(self, train, valid=None, run_dir=None):
        from sklearn.ensemble import RandomForestRegressor

        self._require_target(train)
        c = self.config
        F = log1p_features(train.X)
        self.features_ = select_correlated_features(F, train.y.astype(np.float64), c.n_features)
        Ft = F[:, self.features_]
        del F
        valid = _valid_or_none(valid)
        Fv = None if valid is None else log1p_features(valid.X)[:, self.features_]
        if c.min_samples_leaf:
            grid = (c.min_samples_leaf,)
        else:  # candidate leaves hold at most a quarter of the bootstrap sample
            n_boot = max(1, int(c.max_samples * len(Ft)))
            grid = tuple(g for g in RF_LEAF_GRID if g <= max(1, n_boot // 4)) or (1,)

        def forest(leaf, n_trees):
            return RandomForestRegressor(
                n_estimators=n_trees,
                max_depth=c.max_depth,
                min_samples_leaf=leaf,
                max_samples=c.max_samples,
                oob_score=Fv is None and len(grid) > 1,
                random_state=c.seed,
                n_jobs=choose_threads(c.n_jobs, len(Ft)),
                warm_start=True,
            )

        scores = {}
        if len(grid) == 1:
            best = forest(grid[0], c.n_estimators).fit(Ft, train.y)
        else:
            best, best_mse = None, np.inf
            n_sel = min(c.select_trees, c.n_estimators)
            for leaf in grid:
                rf = forest(leaf, n_sel).fit(Ft, train.y)
                if Fv is None:
                    oob = rf.oob_prediction_
                    ok = np.isfinite(oob)
                    mse = float(np.mean((train.y[ok] - oob[ok]) ** 2)) if ok.any() else np.inf
                else:
                    mse = float(np.mean((valid.y - rf.predict(Fv)) ** 2))
                scores[leaf] = mse
                if best is None or mse < best_mse:
                    best, best_mse = rf, mse
            if c.n_estimators > n_sel:
                best.set_params(n_estimators=c.n_estimators, oob_score=False)
                best.fit(Ft, train.y)  # warm start: grows the chosen forest
        self.trees_ = TreeEnsembleArrays.from_sklearn(best.estimators_)
        leaf = int(best.min_samples_leaf)
        self.metrics_ = {"min_samples_leaf": leaf}
        if scores:
            on = "validation data" if Fv is not None else "out-of-bag"
            self.metrics_["selection"] = (
                f"min_samples_leaf={leaf} chosen on {on} ("
                + ", ".join(f"{k}: MSE {v:.4g}" for k, v in scores.items())
                + ")"
            )
        return self

    def predict(self, data, batch_size=None):
        data = self._check(data)
        F = log1p_features(data.X)[:, self.features_]
        return self.trees_.predict_mean(F)

    def _save_state(self, directory):
        np.savez(directory / "state.npz", features=self.features_, **self.trees_.to_arrays())

    def _load_state(self, directory):
        z = load_arrays(directory / "state.npz")
        self.features_ = z.pop("features")
        self.trees_ = TreeEnsembleArrays.from_arrays(z)


class LightGBMBaseline(_Baseline):
    """LightGBM gradient boosting on log1p bin counts.

    The number of rounds is chosen by early stopping on ``valid`` when given; else on
    ``holdout_fraction`` of the training genes, after which the model is refitted on all
    training genes with that many rounds; with fewer than 5 genes to hold out it is
    :data:`FALLBACK_ROUNDS`. The rounds used are stored in the metrics.
    """

    kind = "lightgbm"
    config_cls = LightGBMConfig

    def fit(self, train, valid=None, run_dir=None):
        from histexpr.data.splits import gene_fold_of

        self._require_target(train)
        c = self.config
        params = lightgbm_params(c, len(train))
        valid = _valid_or_none(valid)
        if valid is not None:
            self.booster_ = self._boost(params, train, valid)
            best = int(self.booster_.best_iteration or c.n_estimators)
            how = "early stopping on the validation data"
        elif c.holdout_fraction > 0 and len(np.unique(train.gene)) * c.holdout_fraction >= 5:
            # choose the rounds on held-out training genes, then refit on all of them
            held = gene_fold_of(train.gene, round(1 / c.holdout_fraction), seed=c.seed) == 0
            probe = self._boost(params, train.subset(~held), train.subset(held))
            best = int(probe.best_iteration or c.n_estimators)
            self.booster_ = self._boost(params, train, None, rounds=best)
            how = f"early stopping on {held.mean():.0%} of the training genes, then a refit"
        else:
            best = min(c.n_estimators, FALLBACK_ROUNDS)
            self.booster_ = self._boost(params, train, None, rounds=best)
            how = "fixed: too few genes to hold out"
        self.metrics_ = {"best_iteration": best, "selection": f"{best} boosting rounds ({how})"}
        return self

    def _boost(self, params, train, valid, rounds=None):
        import lightgbm as lgb

        c = self.config
        train_set = lgb.Dataset(log1p_features(train.X), train.y)
        kw = {}
        if valid is not None:
            kw = {
                "valid_sets": [lgb.Dataset(log1p_features(valid.X), valid.y, reference=train_set)],
                "callbacks": [lgb.early_stopping(c.early_stopping, verbose=False)],
            }
        return lgb.train(params, train_set, num_boost_round=rounds or c.n_estimators, **kw)

    def predict(self, data, batch_size=None):
        data = self._check(data)
        best = self.booster_.best_iteration or None
        threads = choose_threads(self.config.n_jobs, len(data))
        F = log1p_features(data.X)
        return self.booster_.predict(F, num_iteration=best, num_threads=threads).astype(np.float32)

    def _save_state(self, directory):
        self.booster_.save_model(str(directory / "model.txt"))

    def _load_state(self, directory):
        import lightgbm as lgb

        path = directory / "model.txt"
        if not path.is_file():
            raise HistexprError(f"{directory}: model directory is missing model.txt")
        self.booster_ = lgb.Booster(model_file=str(path))
