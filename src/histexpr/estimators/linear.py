"""Ridge with its penalty chosen by cross-validation over genes: see :mod:`histexpr.training.ridge`.

The solver lives in the training layer, so that the networks' ridge skip path
(:mod:`histexpr.training.skip`) and the ``ridge`` kind share it; this module keeps
the estimator layer's old import path.
"""

from __future__ import annotations

from histexpr.training.ridge import RELATIVE_GRID, RidgeCVResult, fit_ridge_cv

__all__ = ["RELATIVE_GRID", "RidgeCVResult", "fit_ridge_cv"]
