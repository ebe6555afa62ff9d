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

import numpy as np

from histexpr._runtime import choose_threads, notice
from histexpr.data.dataset import canonical_gene_ids
from histexpr.estimators.baseline_config import (
    FALLBACK_ROUNDS,
    RF_LEAF_GRID,
    GeneMeanConfig,
    GlobalMeanConfig,
    LightGBMConfig,
    RandomForestConfig,
    RidgeConfig,
)
from histexpr.estimators.histone_features import log1p_features, select_correlated_features
from histexpr.estimators.linear import (
    apply_standardised,
    fit_standardised,
    get_ridge_arrays,
    set_ridge_arrays,
)
from histexpr.estimators.tabular import TabularEstimator, load_arrays, valid_or_none
from histexpr.estimators.trees import (
    TreeEnsembleArrays,
    early_stopping_genes,
    lightgbm_params,
    load_booster,
)

__all__ = [
    "GeneMean",
    "GlobalMean",
    "LightGBMBaseline",
    "RandomForestBaseline",
    "RidgeBaseline",
]


class GlobalMean(TabularEstimator):
    """Predict the mean training expression for every example."""

    kind = "global-mean"
    config_cls = GlobalMeanConfig

    def fit(self, train, valid=None, run_dir=None):
        self._require_target(train)
        self.mean_ = float(np.mean(train.y))
        return self

    def _predict_rows(self, data):
        return np.full(len(data), self.mean_, dtype=np.float32)

    def _save_state(self, directory):
        (directory / "state.json").write_text(json.dumps({"mean": self.mean_}))

    def _load_state(self, directory):
        self.mean_ = float(json.loads((directory / "state.json").read_text())["mean"])


class GeneMean(TabularEstimator):
    """Predict each gene's mean expression over the training cell types.

    Genes not seen in training get the global mean.
    """

    kind = "gene-mean"
    config_cls = GeneMeanConfig
    # it reads only gene ids, and one notice must count every unknown gene
    block_rows = 0

    def fit(self, train, valid=None, run_dir=None):
        self._require_target(train)
        genes, inverse = np.unique(train.gene, return_inverse=True)
        sums = np.bincount(inverse, weights=train.y, minlength=len(genes))
        counts = np.bincount(inverse, minlength=len(genes))
        self.genes_ = genes.astype(str)
        self.means_ = (sums / counts).astype(np.float32)
        self.global_ = float(np.mean(train.y))
        return self

    def _predict_rows(self, data):
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
                stacklevel=3,  # the caller of predict (TabularEstimator.predict calls this)
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


class RidgeBaseline(TabularEstimator):
    """Ridge regression on standardised log1p bin counts, alpha chosen by CV over genes."""

    kind = "ridge"
    config_cls = RidgeConfig

    def fit(self, train, valid=None, run_dir=None):
        self._require_target(train)
        c = self.config
        fitted, res = fit_standardised(
            log1p_features(train.X),
            train.y,
            train.gene,
            c.cv_folds,
            c.alpha,
            fit_on_saved_stats=True,
        )
        self.mu_, self.sd_, self.coef_, self.intercept_, self.alpha_ = fitted
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

    def _predict_rows(self, data):
        F = log1p_features(data.X)
        return apply_standardised(F, self.mu_, self.sd_, self.coef_, self.intercept_)

    def _save_state(self, directory):
        np.savez(directory / "state.npz", **get_ridge_arrays(self), alpha=np.float64(self.alpha_))

    def _load_state(self, directory):
        z = load_arrays(directory / "state.npz")
        set_ridge_arrays(self, z)
        # Models saved before the CV search carry only the configured alpha.
        self.alpha_ = float(z["alpha"]) if "alpha" in z else self.config.alpha


class RandomForestBaseline(TabularEstimator):
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
        valid = valid_or_none(valid)
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

    def _predict_rows(self, data):
        F = log1p_features(data.X)[:, self.features_]
        return self.trees_.predict_mean(F)

    def _save_state(self, directory):
        np.savez(directory / "state.npz", features=self.features_, **self.trees_.to_arrays())

    def _load_state(self, directory):
        z = load_arrays(directory / "state.npz")
        self.features_ = z.pop("features")
        self.trees_ = TreeEnsembleArrays.from_arrays(z)


class LightGBMBaseline(TabularEstimator):
    """LightGBM gradient boosting on log1p bin counts.

    The number of rounds is chosen by early stopping on ``valid`` when given; else on
    ``holdout_fraction`` of the training genes, after which the model is refitted on all
    training genes with that many rounds; with fewer than 5 genes to hold out it is
    :data:`FALLBACK_ROUNDS`. The rounds used are stored in the metrics.
    """

    kind = "lightgbm"
    config_cls = LightGBMConfig

    def fit(self, train, valid=None, run_dir=None):
        self._require_target(train)
        c = self.config
        params = lightgbm_params(c, len(train))
        valid = valid_or_none(valid)
        if valid is not None:
            self.booster_ = self._boost(params, train, valid)
            best = int(self.booster_.best_iteration or c.n_estimators)
            how = "early stopping on the validation data"
        elif (held := early_stopping_genes(train.gene, c)).any():
            # choose the rounds on held-out training genes, then refit on all of them
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

    def _predict_rows(self, data):
        best = self.booster_.best_iteration or None
        threads = choose_threads(self.config.n_jobs, len(data))
        F = log1p_features(data.X)
        return self.booster_.predict(F, num_iteration=best, num_threads=threads).astype(np.float32)

    def _save_state(self, directory):
        self.booster_.save_model(str(directory / "model.txt"))

    def _load_state(self, directory):
        self.booster_ = load_booster(directory, "model.txt")
