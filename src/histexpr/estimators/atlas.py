"""Atlas-informed estimators: histone signal + what an expression atlas knows about each gene.

``atlas-ridge`` and ``atlas-lightgbm`` predict, for a gene in a (possibly new) cell
type, ``prior + f(features)`` where the prior is the reference cells' expression of
the gene weighted by how similar the cell type is to each of them
(:func:`histexpr.estimators.atlas_prior.similarity_correlations`), and the features are
histone features (every log1p bin for atlas-ridge, the pooled log1p profile for
atlas-lightgbm), the gene's atlas statistics (mean, spread, quantiles), the
prior, a histone-only score and the departure of the cell's pooled histone
profile from the gene's average profile in the training cells. The atlas part
of the features is computed by :class:`AtlasFeatures`, shared with
``atlas-convnet`` (:mod:`histexpr.estimators.atlas_neural`).

No leakage by construction: the features of an example of cell type ``c`` are
always computed from the atlas without ``c``'s column, both while training
(leave-one-cell-out) and while predicting (with an :class:`AtlasNotice`).
Genes absent from the atlas fall back to the histone-only model of the same
family (:class:`RidgeBaseline` / :class:`LightGBMBaseline`); after ``predict``,
``atlas_used_`` records per example whether the atlas was used.

A cell type's similarity to the reference cells and its softmax temperature are
estimated from all its genes in the input, never per call or per block
(:mod:`histexpr.estimators.atlas_cells`; a streamed input gets a first pass through
:meth:`AtlasEstimator.prepare_cells`), so a gene's prediction does not depend on
the other cell types predicted with it or on the memory budget.

Never worse than the prior (issue #22): the residual ``f`` is one or two models
(genes without a training profile get one fitted without the departure block) and is
dropped if it does not help on held-out training genes
(:mod:`histexpr.estimators.atlas_residual`); each new cell type's residual is
shrunk by the guard (:mod:`histexpr.estimators.atlas_guard`).
"""

from __future__ import annotations

import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np

from histexpr._runtime import choose_threads, notice
from histexpr.data.atlas import (
    Atlas,
    AtlasNotice,
    resolve_atlas,
)
from histexpr.data.dataset import canonical_gene_ids
from histexpr.estimators.atlas_config import AtlasLightGBMConfig, AtlasRidgeConfig
from histexpr.estimators.atlas_energy import ResidualEnergy, residual_energy
from histexpr.estimators.atlas_features import AtlasFeatures, cell_metrics, fit_scorer
from histexpr.estimators.atlas_guard import PriorGuard
from histexpr.estimators.atlas_residual import ResidualModels
from histexpr.estimators.baseline_config import LightGBMConfig, RidgeConfig
from histexpr.estimators.baselines import LightGBMBaseline, RidgeBaseline
from histexpr.estimators.histone_features import log1p_features, pooled_log1p
from histexpr.estimators.linear import get_ridge_arrays, set_ridge_arrays
from histexpr.estimators.tabular import TabularEstimator, load_arrays
from histexpr.estimators.trees import early_stopping_genes, lightgbm_params, load_booster


def _row_sample(n: int, cap: int, config) -> np.ndarray:
    """Sorted random rows, at most ``cap`` of ``n`` (all when ``cap`` is 0 or >= n)."""
    if not cap or n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(getattr(config, "seed", 0))
    return np.sort(rng.choice(n, cap, replace=False))


class AtlasEstimator(ResidualModels, TabularEstimator):
    """Shared fit / predict of the atlas kinds; subclasses fit the residual model."""

    fallback_cls: type = RidgeBaseline
    # one call sees every gene of the input: a cell type's similarity to the reference
    # cells comes from all its genes (or from prepare_cells), never from a block
    block_rows = 0
    #: Histone block of the residual model's features: "bins" (every log1p bin) or
    #: "pooled" (:func:`pooled_log1p`, ``pool_bins`` per mark).
    histone_features: str = "bins"

    def __init__(self, config=None):
        super().__init__(config)
        self.atlas_used_: np.ndarray | None = None
        self.prior_: np.ndarray | None = None
        self.features_: AtlasFeatures | None = None
        self.cell_states_: dict | None = None
        # what _fit_residual reports (its penalty or rounds), merged into metrics_
        self.metrics_residual_: dict = {}
        #: Per-cell shrinkage of the residual towards the prior (:mod:`atlas_guard`);
        #: ``None`` for a directory saved before it (predicts as it always did).
        self.guard_: PriorGuard | None = None
        self.guard_scales_: dict | None = None
        self.cell_energy_: dict | None = None
        #: False when the residual did not lower the prior's error on training genes it
        #: did not see (:meth:`_keep_residual`): the model then predicts its prior.
        self.residual_kept_ = True
        #: The residual model of genes without a training profile (their departure block
        #: is unknown): the saved state of :attr:`residual_attrs`, or ``None`` when one
        #: model serves every gene (:meth:`_fit_residuals`).
        self.residual_new_: dict | None = None

    # The atlas and the fitted feature state, by their historic names.
    @property
    def atlas_(self) -> Atlas:
        return self.features_.atlas

    @atlas_.setter
    def atlas_(self, atlas: Atlas) -> None:
        self.features_.atlas = atlas

    @property
    def temperature_(self) -> float:
        return self.features_.temperature

    # -- the parts -------------------------------------------------------------------
    def _fallback_config(self):
        if self.fallback_cls is RidgeBaseline:
            return RidgeConfig(alpha=self.config.alpha, cv_folds=self.config.cv_folds)
        names = {f.name for f in fields(LightGBMConfig)}
        return LightGBMConfig(**{n: getattr(self.config, n) for n in names})

    def _histone(self, X, P):
        return P if self.histone_features == "pooled" else log1p_features(X)

    def _features(self, data, genes, training, P_all, cases=None):
        """Residual-model features, order of their rows, prior and atlas-use mask."""
        H = self._histone(data.X, P_all)
        states = None if training else self.cell_states_
        return self.features_.features(data, genes, training, P_all, H, cases, states)

    def _energy(self, data, genes, P, training, energy=None) -> ResidualEnergy:
        H, g = self._histone(data.X, P), lambda F, _rows: self._energy_residual(F)
        return residual_energy(self.features_, data, genes, P, H, g, training, energy)

    def prepare_cells(self, blocks) -> None:
        """First pass over an input read in blocks: each cell type's similarity to the
        reference cells and residual energy (:mod:`atlas_guard`) from all its genes, for
        the next ``predict`` calls (not dependent on the blocks); ``None`` forgets them."""
        if blocks is None or self.features_ is None:
            self.cell_states_ = self.cell_energy_ = None
            return
        energy = ResidualEnergy() if self.guard_ is not None and self.has_model_ else None

        def seen():
            for b in blocks:
                b = self._check(b)
                if energy is not None and len(b):
                    P = pooled_log1p(b.X, self.config.pool_bins)
                    self._energy(b, canonical_gene_ids(b.gene), P, False, energy)
                yield b

        self.cell_states_ = self.features_.cell_states(seen())
        self.cell_energy_ = None if energy is None else energy.per_cell()

    # -- the surface -----------------------------------------------------------------
    def fit(self, train, valid=None, run_dir=None):
        self._require_target(train)
        c = self.config
        genes = canonical_gene_ids(train.gene)
        atlas = resolve_atlas(c.atlas, c.atlas_values, train).without(c.atlas_exclude)
        cap = getattr(c, "max_rows", 0)
        fallback_train = train.subset(_row_sample(len(train), cap, c)) if cap else train
        self.fallback_ = self.fallback_cls(self._fallback_config()).fit(fallback_train, valid)
        if isinstance(self.fallback_, RidgeBaseline):
            self.scorer_ = self.fallback_
        else:
            self.scorer_ = fit_scorer(train, c.alpha, c.cv_folds)
        P = pooled_log1p(train.X, c.pool_bins)
        self.features_, cases = AtlasFeatures.fit(
            train, atlas, self.scorer_, c.pool_bins, c.temperature, P
        )
        F, order, prior, used = self._features(train, genes, True, P, cases)
        self.has_model_ = len(order) > 0
        if not self.has_model_:
            notice(
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
            keep = _row_sample(len(order), cap, c)
            r = train.y[order] - prior[order]
            departure = self.features_.departure(F)
            two = atlas.source != "train" and bool(F[:, departure].any())
            Fk = F[keep] if len(keep) < len(F) else F  # no copy: nothing reads F after
            self._fit_residuals(Fk, r[keep], genes[order][keep], vF, vr, departure, two)
            energy = self._energy(train, genes, P, True).overall()
            self.guard_ = PriorGuard.fit(atlas, cases, energy)
        self.metrics_ = {
            **{f"fallback_{k}": v for k, v in self.fallback_.metrics_.items()},
            "atlas_cells": len(self.atlas_.cells),
            "atlas_genes": len(self.atlas_.genes),
            "atlas_source": self.atlas_.source,
            **cell_metrics(self.features_, cases),
            "train_atlas_used": int(used.sum()),
            "fallback_rows": len(fallback_train),
            "residual_rows": len(keep) if self.has_model_ else 0,
            **self.metrics_residual_,
            **{
                f"new_genes_{k}": v
                for k, v in (self.residual_new_ or {}).get("metrics_residual_", {}).items()
            },
            **(self.guard_.metrics() if self.guard_ is not None else {}),
        }
        return self

    def _predict_rows(self, data):
        out = self.fallback_.predict(data).astype(np.float32)
        genes = canonical_gene_ids(data.gene)
        P = pooled_log1p(data.X, self.config.pool_bins)
        cases = list(self.features_.cases(data, genes, False, self.cell_states_))
        F, order, prior, used = self._features(data, genes, False, P, cases)
        self.guard_scales_ = None
        if self.has_model_ and len(order):
            residual = self._residual(F, genes[order])
            if not self._any_residual():  # the prior alone: every cell's scale is 0
                self.guard_scales_ = {c: 0.0 for c, _, found, *_ in cases if found.any()}
            elif self.guard_ is not None:  # never move further from the prior than it warrants
                energies = self.cell_energy_  # streamed: the first pass's; else the input's
                energies = energies or self._energy(data, genes, P, False).per_cell()
                scales, self.guard_scales_ = self.guard_.row_scales(
                    self.atlas_, cases, len(data), energies
                )
                residual = residual * scales[order]
            out[order] = prior[order] + residual
        else:
            used[:], prior[:] = False, np.nan
        self.atlas_used_, self.prior_ = used, prior
        return out

    # -- saving ----------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        self.fallback_.save(directory / "fallback")
        self.features_.save(
            directory,
            scorer=self.scorer_ is not self.fallback_,
            has_model=np.bool_(self.has_model_),
            histone_features=np.array(self.histone_features),
            **self._residual_flags(),
        )
        if self.has_model_:
            self._save_residuals(directory)
        if self.guard_ is not None:
            self.guard_.save(directory)

    def _load_state(self, directory: Path) -> None:
        self.fallback_ = self.fallback_cls.load(directory / "fallback")
        scorer = None if (directory / "scorer").is_dir() else self.fallback_
        self.features_, z = AtlasFeatures.load(directory, self.config.pool_bins, scorer)
        self.scorer_ = self.features_.scorer
        self.has_model_ = bool(z["has_model"])
        # Directories written before the pooled histone block recorded none: every bin.
        if "histone_features" in z:
            self.histone_features = str(z["histone_features"])
        else:
            self.histone_features = "bins"
        if self.has_model_:
            self._load_residuals(directory, z)
        self.guard_ = PriorGuard.load(directory)


class AtlasRidge(AtlasEstimator):
    """Ridge on histone log1p bins + atlas features, fitted to ``y - prior``."""

    kind = "atlas-ridge"
    config_cls = AtlasRidgeConfig
    fallback_cls = RidgeBaseline
    residual_attrs = ("mu_", "sd_", "coef_", "intercept_")

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
        # the CV error of the chosen penalty against predicting no residual (pooled)
        cv = float(res.cv_mse.min()) if res.folds > 1 else float("nan")
        self._keep_residual(cv, float(np.mean(np.square(r, dtype=np.float64))))

    def _predict_residual(self, F):
        return ((F - self.mu_) / self.sd_ @ self.coef_ + self.intercept_).astype(np.float32)

    def _save_residual(self, directory):
        np.savez(directory / "residual.npz", **get_ridge_arrays(self))

    def _load_residual(self, directory):
        set_ridge_arrays(self, load_arrays(directory / "residual.npz"))


class AtlasLightGBM(AtlasEstimator):
    """LightGBM on pooled histone features + atlas features, fitted to ``y - prior``.

    The residual model reads the pooled log1p profile (``pool_bins`` per mark)
    rather than every bin: the prior already carries most of the signal, and
    boosting on all 500 bins made the fit ~3.5x slower than plain LightGBM. The
    histone-only fallback keeps every bin.
    """

    kind = "atlas-lightgbm"
    config_cls = AtlasLightGBMConfig
    fallback_cls = LightGBMBaseline
    histone_features = "pooled"
    residual_attrs = ("booster_",)

    def _fit_residual(self, F, r, genes, vF=None, vr=None):
        import lightgbm as lgb

        c = self.config
        params = lightgbm_params(c, len(F))
        # the early-stopping genes of every LightGBM kind (the one gene hold-out)
        if vF is None and (held := early_stopping_genes(genes, c)).any():
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
        if vF is not None and len(vr):
            vr = np.asarray(vr, np.float64)
            held = float(np.mean((vr - self._predict_residual(vF)) ** 2))
            self._keep_residual(held, float(np.mean(vr**2)))

    def _predict_residual(self, F):
        best = self.booster_.best_iteration or None
        return self.booster_.predict(
            F, num_iteration=best, num_threads=choose_threads(self.config.n_jobs, len(F))
        ).astype(np.float32)

    def _save_residual(self, directory):
        self.booster_.save_model(str(directory / "residual.txt"))

    def _load_residual(self, directory):
        self.booster_ = load_booster(directory, "residual.txt")
