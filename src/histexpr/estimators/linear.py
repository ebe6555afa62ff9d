"""Ridge on standardised features, the linear model of every non-neural kind.

The solver with its penalty chosen by cross-validation over genes lives in the
training layer (:mod:`histexpr.training.ridge`), so that the networks' ridge skip path
(:mod:`histexpr.training.skip`) and the estimators share it. This module adds what the
ridge kind, diff-ridge and the atlas residual ridge have in common: standardising
the features by their training mean and spread, fitting, and applying the result
(:func:`fit_standardised`, :func:`apply_standardised`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from histexpr.training.ridge import RELATIVE_GRID, RidgeCVResult, fit_ridge_cv

__all__ = [
    "RELATIVE_GRID",
    "RidgeCVResult",
    "StandardisedRidge",
    "apply_standardised",
    "fit_ridge_cv",
    "fit_standardised",
    "get_ridge_arrays",
    "set_ridge_arrays",
]


class StandardisedRidge(NamedTuple):
    """A fitted ridge on standardised features, as saved (float32 but ``alpha``).

    Attributes
    ----------
    mu, sd : np.ndarray, shape (p,), float32
        The training mean and spread (+1e-6) of every feature.
    coef : np.ndarray, shape (p,), float32
        Coefficients on the standardised features.
    intercept : np.float32
    alpha : float
        The penalty, chosen by CV over genes unless fixed.
    """

    mu: np.ndarray
    sd: np.ndarray
    coef: np.ndarray
    intercept: np.float32
    alpha: float


def fit_standardised(
    F: np.ndarray,
    y: np.ndarray,
    gene: np.ndarray,
    cv_folds: int,
    alpha: float | None = None,
    seed: int = 0,
    *,
    fit_on_saved_stats: bool = False,
) -> tuple[StandardisedRidge, RidgeCVResult]:
    """Standardise ``F`` by its mean and spread, then :func:`fit_ridge_cv`.

    Parameters
    ----------
    F : np.ndarray, shape (n, p)
    y : np.ndarray, shape (n,)
    gene : np.ndarray, shape (n,), str
        Folds of the alpha search never split a gene.
    cv_folds : int
    alpha : float or None
        A fixed penalty; None chooses it by CV.
    seed : int
        Seed of the gene-to-fold assignment.
    fit_on_saved_stats : bool
        Standardise with the float32 mean and spread that are saved (the ``ridge``
        kind always did) rather than their float64 values (diff-ridge, the atlas
        residual): either way a saved model fits as it did.

    Returns
    -------
    StandardisedRidge, RidgeCVResult
    """
    f32 = np.float32
    mu = F.mean(axis=0, dtype=np.float64)
    sd = F.std(axis=0, dtype=np.float64) + 1e-6
    if fit_on_saved_stats:
        mu, sd = mu.astype(f32).astype(np.float64), sd.astype(f32).astype(np.float64)
    res = fit_ridge_cv(
        lambda rows: (F[rows].astype(np.float64) - mu) / sd, len(F), y, gene, cv_folds, alpha, seed
    )
    model = StandardisedRidge(
        mu.astype(f32), sd.astype(f32), res.coef.astype(f32), f32(res.intercept), float(res.alpha)
    )
    return model, res


def apply_standardised(F: np.ndarray, mu, sd, coef, intercept) -> np.ndarray:
    """``((F - mu) / sd) @ coef + intercept``, shape (n,), in ``F``'s precision."""
    return ((F - mu) / sd) @ coef + intercept


#: The saved arrays of a standardised ridge, held by an estimator as ``mu_``, ``sd_``,
#: ``coef_`` and ``intercept_``.
RIDGE_ARRAYS = ("mu", "sd", "coef", "intercept")


def get_ridge_arrays(est) -> dict[str, np.ndarray]:
    """``{"mu": est.mu_, "sd": est.sd_, "coef": est.coef_, "intercept": est.intercept_}``."""
    return {name: getattr(est, f"{name}_") for name in RIDGE_ARRAYS}


def set_ridge_arrays(est, arrays: dict[str, np.ndarray]) -> None:
    """Set ``est.mu_``, ``sd_``, ``coef_`` and ``intercept_`` from saved ``arrays``."""
    for name in RIDGE_ARRAYS:
        setattr(est, f"{name}_", arrays[name])
