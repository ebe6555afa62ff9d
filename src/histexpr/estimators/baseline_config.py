"""Config dataclasses of the baseline kinds (:mod:`histexpr.estimators.baselines`).

Each is frozen and validated in ``__post_init__``; the fields left ``None`` by default
(ridge ``alpha``, random-forest ``min_samples_leaf``) are chosen from the data at fit time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histexpr.errors import ConfigError


@dataclass(frozen=True)
class GlobalMeanConfig:
    pass


@dataclass(frozen=True)
class GeneMeanConfig:
    pass


@dataclass(frozen=True)
class RidgeConfig:
    """Ridge settings.

    alpha : float or None
        The penalty on standardised features; None (default) chooses it by
        ``cv_folds``-fold cross-validation over genes from a log grid
        (:mod:`histexpr.estimators.linear`).
    cv_folds : int
        Folds of that search, 2-20.
    """

    alpha: float | None = None
    cv_folds: int = 5

    def __post_init__(self):
        if self.alpha is not None and not (self.alpha >= 0 and np.isfinite(self.alpha)):
            raise ConfigError(f"ridge alpha must be >= 0 (or none: chosen by CV), got {self.alpha}")
        if not 2 <= self.cv_folds <= 20:
            raise ConfigError(f"ridge cv_folds must be in 2..20, got {self.cv_folds}")


@dataclass(frozen=True)
class RandomForestConfig:
    """Random-forest settings.

    min_samples_leaf : int or None
        None (default) chooses it from :data:`RF_LEAF_GRID`, each candidate a forest of
        ``select_trees`` trees scored on the validation data when given, else out of bag;
        the chosen forest then grows to ``n_estimators`` trees.
    max_depth : int
        Depth limit, 2-40 (bounds the saved model's size at large n).
    n_jobs : int
        Threads: 0 (default) lets histexpr choose from the cores other processes leave
        free (one for small data); N > 0 uses N; -1 every core.
    """

    n_features: int = 50
    n_estimators: int = 100
    max_depth: int = 14
    min_samples_leaf: int | None = None
    max_samples: float = 0.5
    select_trees: int = 10
    seed: int = 0
    n_jobs: int = 0

    def __post_init__(self):
        if self.n_features < 1:
            raise ConfigError(f"random-forest n_features must be >= 1, got {self.n_features}")
        if self.n_estimators < 1:
            raise ConfigError(f"random-forest n_estimators must be >= 1, got {self.n_estimators}")
        if not 2 <= self.max_depth <= 40:
            raise ConfigError(f"random-forest max_depth must be in 2..40, got {self.max_depth}")
        if self.min_samples_leaf is not None and self.min_samples_leaf < 1:
            raise ConfigError(
                f"random-forest min_samples_leaf must be >= 1 (or none), got {self.min_samples_leaf}"
            )
        if not 0 < self.max_samples <= 1:
            raise ConfigError(
                f"random-forest max_samples must be in (0, 1], got {self.max_samples}"
            )
        if self.select_trees < 2:
            raise ConfigError(f"random-forest select_trees must be >= 2, got {self.select_trees}")


#: Boosting rounds of LightGBM when there are too few genes to choose them on.
FALLBACK_ROUNDS = 100
#: Candidate ``min_samples_leaf`` of the random forest's model choice.
RF_LEAF_GRID = (1, 5, 20, 50)


@dataclass(frozen=True)
class LightGBMConfig:
    """LightGBM settings.

    n_estimators : int
        Most boosting rounds; training stops early after ``early_stopping`` rounds
        without improvement on the validation data, or (without validation data) on
        ``holdout_fraction`` of the training genes, then refits on all of them.
    n_jobs : int
        Threads: 0 (default) lets histexpr choose from the cores other processes leave
        free (one for small data); N > 0 uses N; -1 every core.
    """

    n_estimators: int = 2000
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 20
    subsample: float = 0.8
    colsample_bytree: float = 0.5
    reg_lambda: float = 1.0
    early_stopping: int = 50
    holdout_fraction: float = 0.1
    seed: int = 0
    n_jobs: int = 0

    def __post_init__(self):
        if self.n_estimators < 1:
            raise ConfigError(f"lightgbm n_estimators must be >= 1, got {self.n_estimators}")
        if not 0 < self.learning_rate <= 1:
            raise ConfigError(f"lightgbm learning_rate must be in (0, 1], got {self.learning_rate}")
        if self.num_leaves < 2:
            raise ConfigError(f"lightgbm num_leaves must be >= 2, got {self.num_leaves}")
        if self.early_stopping < 1:
            raise ConfigError(f"lightgbm early_stopping must be >= 1, got {self.early_stopping}")
        if not 0 <= self.holdout_fraction < 0.5:
            raise ConfigError(
                f"lightgbm holdout_fraction must be in [0, 0.5), got {self.holdout_fraction}"
            )
