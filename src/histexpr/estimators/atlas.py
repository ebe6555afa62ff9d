"""Atlas-informed estimators: histone signal + what an expression atlas knows about each gene.

``atlas-ridge`` and ``atlas-lightgbm`` predict, for a gene in a (possibly new) cell
type, ``prior + f(features)`` where the prior is the reference cells' expression of
the gene weighted by how similar the cell type is to each of them
(:func:`histexpr.data.atlas.similarity_correlations`), and the features are the
histone log1p bins, the gene's atlas statistics (mean, spread, quantiles), the
prior, a histone-only score and the departure of the cell's pooled histone
profile from the gene's average profile in the training cells.

No leakage by construction: the features of an example of cell type ``c`` are
always computed from the atlas without ``c``'s column, both while training
(leave-one-cell-out) and while predicting (with an :class:`AtlasNotice`).
Genes absent from the atlas fall back to the histone-only model of the same
family (:class:`RidgeBaseline` / :class:`LightGBMBaseline`); after ``predict``,
``atlas_used_`` records per example whether the atlas was used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from histexpr.data.atlas import (
    Atlas,
    AtlasNotice,
    choose_temperature,
    gene_statistics,
    resolve_atlas,
    similarity_correlations,
    softmax_weights,
    weighted_prior,
)
from histexpr.data.dataset import HistoneDataset, canonical_gene_ids
from histexpr.errors import ConfigError, HistexprError
from histexpr.estimators.baselines import (
    LightGBMBaseline,
    LightGBMConfig,
    RidgeBaseline,
    RidgeConfig,
    _Baseline,
    _load_arrays,
    lightgbm_params,
    log1p_features,
)


def _check_atlas_fields(cfg) -> None:
    if cfg.atlas_values not in ("rpkm", "transformed"):
        raise ConfigError(f"atlas_values must be rpkm or transformed, got {cfg.atlas_values!r}")
    if not cfg.temperature >= 0:
        raise ConfigError(
            f"temperature must be >= 0 (0 = chosen on training cells), got {cfg.temperature}"
        )
    if not 1 <= cfg.pool_bins <= 100:
        raise ConfigError(f"pool_bins must be in 1..100, got {cfg.pool_bins}")
    if cfg.alpha is not None and not cfg.alpha > 0:
        raise ConfigError(f"alpha must be > 0 (or none: chosen by CV), got {cfg.alpha}")
    if not 2 <= cfg.cv_folds <= 20:
        raise ConfigError(f"cv_folds must be in 2..20, got {cfg.cv_folds}")


@dataclass(frozen=True)
class AtlasRidgeConfig:
    """``atlas``: "" (training targets), "roadmap" or a table path; ``atlas_values``:
    rpkm or transformed (tables only); ``atlas_exclude``: cell columns always dropped;
    ``temperature``: softmax temperature of the prior (0 = chosen leave-one-cell-out);
    ``pool_bins``: bins per mark of the pooled histone profile."""

    alpha: float | None = None
    cv_folds: int = 5
    atlas: str = ""
    atlas_values: str = "rpkm"
    atlas_exclude: tuple[str, ...] = ()
    temperature: float = 0.0
    pool_bins: int = 10

    def __post_init__(self):
        _check_atlas_fields(self)


@dataclass(frozen=True)
class AtlasLightGBMConfig(LightGBMConfig, AtlasRidgeConfig):
    """LightGBM fields plus the atlas fields of :class:`AtlasRidgeConfig` (``alpha`` is
    the ridge penalty of the histone score that drives the cell similarity)."""

    def __post_init__(self):
        LightGBMConfig.__post_init__(self)
        _check_atlas_fields(self)


def pooled_log1p(X: np.ndarray, pool_bins: int) -> np.ndarray:
    """log1p counts averaged over ``pool_bins`` equal groups of bins per mark.

    Parameters
    ----------
    X : np.ndarray, shape (n, n_marks, n_bins)

    Returns
    -------
    np.ndarray, shape (n, n_marks * pool_bins), float32
    """
    L = np.log1p(np.asarray(X, dtype=np.float32))
    edges = np.linspace(0, L.shape[2], min(pool_bins, L.shape[2]) + 1).astype(int)
    pooled = np.add.reduceat(L, edges[:-1], axis=2) / np.diff(edges)[None, None, :]
    return pooled.reshape(L.shape[0], -1).astype(np.float32)


def _gene_sums(genes: np.ndarray, P: np.ndarray):
    """Sorted unique genes, per-gene sums of ``P`` rows and counts."""
    uniq, inv = np.unique(genes, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(len(uniq)))
    sums = np.add.reduceat(P[order].astype(np.float64), starts, axis=0)
    return uniq, sums.astype(np.float32), np.bincount(inv, minlength=len(uniq))


class _AtlasEstimator(_Baseline):
    """Shared fit / predict of the atlas kinds; subclasses fit the residual model."""

    fallback_cls: type = RidgeBaseline

    def __init__(self, config=None):
        super().__init__(config)
        self.atlas_used_: np.ndarray | None = None
        self.prior_: np.ndarray | None = None

    # -- the parts -------------------------------------------------------------------
    def _fallback_config(self):
        if self.fallback_cls is RidgeBaseline:
            return RidgeConfig(alpha=self.config.alpha, cv_folds=self.config.cv_folds)
        names = {f.name for f in fields(LightGBMConfig)}
        return LightGBMConfig(**{n: getattr(self.config, n) for n in names})

    def _cells(self, data: HistoneDataset, genes: np.ndarray, training: bool):
        """Per cell type: its rows, atlas rows found, reference values, correlations."""
        for c in data.cells:
            idx = np.flatnonzero(data.cell == c)
            if not training and c in set(self.atlas_.cells):
                warnings.warn(
                    f"atlas column {c} excluded while predicting {c} (no leakage)",
                    AtlasNotice,
                    stacklevel=3,
                )
            atlas = self.atlas_.without([c])
            rows, found = atlas.rows(genes[idx])
            ref = atlas.values[rows[found]]
            score = self.scorer_.predict(data.subset(idx)).astype(np.float64)
            corr = similarity_correlations(score[found], ref)
            yield c, idx, found, ref, corr, score

    def _features(self, data, genes, training, P_all, cases=None):
        """Atlas feature matrix, prior and mask of the rows that use the atlas."""
        n = len(data)
        used = np.zeros(n, dtype=bool)
        prior = np.full(n, np.nan, dtype=np.float32)
        parts, rows_out = [], []
        if cases is None:
            cases = list(self._cells(data, genes, training))
        for _c, idx, found, ref, corr, score in cases:
            if not found.any():
                continue
            sel = idx[found]
            p = weighted_prior(ref, softmax_weights(corr, self.temperature_))
            stats = gene_statistics(ref)
            P = P_all[sel]
            pos = np.clip(np.searchsorted(self.ref_genes_, genes[sel]), 0, len(self.ref_genes_) - 1)
            known = self.ref_genes_[pos] == genes[sel]
            s, k = self.ref_sum_[pos], self.ref_count_[pos].astype(np.float32)
            if training:  # leave the example's own cell out of its reference profile
                s, k = s - P, k - 1
            known &= k > 0
            ref_p = np.divide(s, np.maximum(k, 1)[:, None])
            delta = np.where(known[:, None], P - ref_p, 0.0).astype(np.float32)
            F = np.hstack(
                [log1p_features(data.X[sel]), delta, stats, p[:, None], score[found, None]]
            )
            parts.append(F.astype(np.float32))
            rows_out.append(sel)
            prior[sel], used[sel] = p, True
        order = np.concatenate(rows_out) if rows_out else np.zeros(0, dtype=np.int64)
        F = np.vstack(parts) if parts else np.zeros((0, 0), np.float32)
        return F, order, prior, used

    # -- the surface -----------------------------------------------------------------
    def fit(self, train, valid=None, run_dir=None):
        self._require_target(train)
        c = self.config
        genes = canonical_gene_ids(train.gene)
        self.atlas_ = resolve_atlas(c.atlas, c.atlas_values, train).without(c.atlas_exclude)
        self.fallback_ = self.fallback_cls(self._fallback_config()).fit(train, valid)
        if isinstance(self.fallback_, RidgeBaseline):
            self.scorer_ = self.fallback_
        else:
            self.scorer_ = RidgeBaseline(RidgeConfig(c.alpha, c.cv_folds)).fit(train)
        P = pooled_log1p(train.X, c.pool_bins)
        self.ref_genes_, self.ref_sum_, self.ref_count_ = _gene_sums(genes, P)
        cases = list(self._cells(train, genes, True))
        if c.temperature > 0:
            self.temperature_ = float(c.temperature)
        else:  # chosen leave-one-cell-out: each cell's prior from the other cells
            loo = [(corr, ref, train.y[idx][found]) for _, idx, found, ref, corr, _ in cases]
            self.temperature_ = choose_temperature(loo)
        F, order, prior, used = self._features(train, genes, True, P, cases)
        self.has_model_ = len(order) > 0
        if not self.has_model_:
            warnings.warn(
                f"{self.kind}: no training gene is in the atlas without its own cell; "
                "predicting with the histone-only model",
                AtlasNotice,
                stacklevel=2,
            )
        else:
            vF = vr = None
            if valid is not None and valid.has_target and len(valid):
                vg = canonical_gene_ids(valid.gene)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", AtlasNotice)
                    vP = pooled_log1p(valid.X, c.pool_bins)
                    vF, vo, vp, _ = self._features(valid, vg, False, vP)
                vr = valid.y[vo] - vp[vo] if len(vo) else None
                vF = vF if len(vo) else None
            self._fit_residual(F, train.y[order] - prior[order], genes[order], vF, vr)
        self.metrics_ = {
            **{f"fallback_{k}": v for k, v in self.fallback_.metrics_.items()},
            "atlas_cells": len(self.atlas_.cells),
            "atlas_genes": len(self.atlas_.genes),
            "atlas_source": self.atlas_.source,
            "temperature": self.temperature_ if np.isfinite(self.temperature_) else "inf",
            "train_atlas_used": int(used.sum()),
            **getattr(self, "metrics_residual_", {}),
        }
        return self

    def predict(self, data, batch_size=None):
        data = self._check(data)  # the model's marks, by name (extras dropped, reordered)
        out = self.fallback_.predict(data).astype(np.float32)
        genes = canonical_gene_ids(data.gene)
        P = pooled_log1p(data.X, self.config.pool_bins)
        F, order, prior, used = self._features(data, genes, False, P)
        if self.has_model_ and len(order):
            out[order] = prior[order] + self._predict_residual(F)
        else:
            used[:], prior[:] = False, np.nan
        self.atlas_used_, self.prior_ = used, prior
        return out

    # -- saving ----------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        self.atlas_.save(directory)
        self.fallback_.save(directory / "fallback")
        if self.scorer_ is not self.fallback_:
            self.scorer_.save(directory / "scorer")
        np.savez(
            directory / "state.npz",
            ref_genes=self.ref_genes_.astype("U"),
            ref_sum=self.ref_sum_,
            ref_count=self.ref_count_,
            temperature=np.float64(self.temperature_),
            has_model=np.bool_(self.has_model_),
        )
        if self.has_model_:
            self._save_residual(directory)

    def _load_state(self, directory: Path) -> None:
        self.atlas_ = Atlas.load(directory)
        self.fallback_ = self.fallback_cls.load(directory / "fallback")
        scorer = directory / "scorer"
        self.scorer_ = RidgeBaseline.load(scorer) if scorer.is_dir() else self.fallback_
        z = _load_arrays(directory / "state.npz")
        self.ref_genes_ = z["ref_genes"].astype(str)
        self.ref_sum_, self.ref_count_ = z["ref_sum"], z["ref_count"]
        self.temperature_ = float(z["temperature"])
        self.has_model_ = bool(z["has_model"])
        if self.has_model_:
            self._load_residual(directory)


class AtlasRidge(_AtlasEstimator):
    """Ridge on histone log1p bins + atlas features, fitted to ``y - prior``."""

    kind = "atlas-ridge"
    config_cls = AtlasRidgeConfig
    fallback_cls = RidgeBaseline

    def _fit_residual(self, F, r, genes, vF=None, vr=None):
        from histexpr.estimators.linear import fit_ridge_cv

        mu = F.mean(axis=0, dtype=np.float64)
        sd = F.std(axis=0, dtype=np.float64) + 1e-6
        c = self.config
        res = fit_ridge_cv(
            lambda rows: (F[rows].astype(np.float64) - mu) / sd,
            len(F),
            r,
            genes,
            c.cv_folds,
            c.alpha,
        )
        self.mu_, self.sd_ = mu.astype(np.float32), sd.astype(np.float32)
        self.coef_, self.intercept_ = res.coef.astype(np.float32), np.float32(res.intercept)
        self.metrics_residual_ = {"residual_alpha": float(res.alpha)}

    def _predict_residual(self, F):
        return ((F - self.mu_) / self.sd_ @ self.coef_ + self.intercept_).astype(np.float32)

    def _save_residual(self, directory):
        np.savez(
            directory / "residual.npz",
            mu=self.mu_,
            sd=self.sd_,
            coef=self.coef_,
            intercept=self.intercept_,
        )

    def _load_residual(self, directory):
        z = _load_arrays(directory / "residual.npz")
        self.mu_, self.sd_, self.coef_, self.intercept_ = (
            z["mu"],
            z["sd"],
            z["coef"],
            z["intercept"],
        )


class AtlasLightGBM(_AtlasEstimator):
    """LightGBM on histone log1p bins + atlas features, fitted to ``y - prior``."""

    kind = "atlas-lightgbm"
    config_cls = AtlasLightGBMConfig
    fallback_cls = LightGBMBaseline

    def _fit_residual(self, F, r, genes, vF=None, vr=None):
        import lightgbm as lgb

        from histexpr.estimators.linear import gene_folds

        c = self.config
        params = lightgbm_params(c)
        n_genes = len(np.unique(genes))
        if vF is None and c.holdout_fraction > 0 and n_genes * c.holdout_fraction >= 5:
            held = gene_folds(genes, round(1 / c.holdout_fraction), seed=c.seed) == 0
            F, r, vF, vr = F[~held], r[~held], F[held], r[held]
        train_set = lgb.Dataset(F, r)
        kw = {}
        if vF is not None:
            kw = {
                "valid_sets": [lgb.Dataset(vF, vr, reference=train_set)],
                "callbacks": [lgb.early_stopping(c.early_stopping, verbose=False)],
            }
        self.booster_ = lgb.train(params, train_set, num_boost_round=c.n_estimators, **kw)
        best = int(self.booster_.best_iteration or c.n_estimators)
        self.metrics_residual_ = {"residual_rounds": best}

    def _predict_residual(self, F):
        best = self.booster_.best_iteration or None
        return self.booster_.predict(F, num_iteration=best).astype(np.float32)

    def _save_residual(self, directory):
        self.booster_.save_model(str(directory / "residual.txt"))

    def _load_residual(self, directory):
        import lightgbm as lgb

        path = directory / "residual.txt"
        if not path.is_file():
            raise HistexprError(f"{directory}: model directory is missing residual.txt")
        self.booster_ = lgb.Booster(model_file=str(path))
