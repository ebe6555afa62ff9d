"""The residual models of atlas-ridge and atlas-lightgbm: one or two, kept or dropped.

An atlas kind predicts ``prior + residual``. Two things decide which residual a row
gets, both from the training data (issue #22, atlas models never worse than their
prior):

- genes without a training profile (no training cell type has the gene, so the
  departure block of the features is unknown) get a residual model fitted without
  that block (:meth:`ResidualModels._fit_residuals`);
- a residual model that does not lower the prior's error on training genes it was
  not fitted on is dropped, and its rows get the prior alone
  (:meth:`ResidualModels._keep_residual`).

The subclass fits, predicts, saves and loads one residual model
(``_fit_residual``, ``_predict_residual``, ``_save_residual``, ``_load_residual``)
and names the attributes that hold it (``residual_attrs``); this mixin swaps them to
hold two.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

__all__ = ["NEW_GENES", "ResidualModels", "residual_lines"]

#: The sub-directory of the residual model of genes without a training profile.
NEW_GENES = "new_genes"


class ResidualModels:
    """Mixin of :class:`~histexpr.estimators.atlas.AtlasEstimator`: its residual models."""

    #: The attributes that hold a fitted residual model (set by the subclass), swapped
    #: in and out so that one estimator holds two (:meth:`_fit_residuals`).
    residual_attrs: tuple[str, ...] = ()

    def _state(self) -> dict:
        names = (*self.residual_attrs, "residual_kept_", "metrics_residual_")
        return {a: getattr(self, a) for a in names}

    def _use(self, state: dict) -> dict:
        """Make ``state`` the residual model in use; returns the one it replaces."""
        old = self._state()
        for name, value in state.items():
            setattr(self, name, value)
        return old

    @contextmanager
    def _using_new(self):
        """The new-gene residual model in use for the block, the first one after it."""
        main = self._use(self.residual_new_)
        try:
            yield
        finally:
            self._use(main)

    def _fit_residuals(self, F, r, genes, vF, vr, departure: slice, two: bool) -> None:
        """The residual model, and with ``two`` a second one for genes without a
        training profile.

        The departure block compares a cell's pooled histone profile with the gene's
        average profile in the training cells, so it is unknown (zeros) for a gene no
        training cell has. A model fitted where it was known reads those zeros as "no
        departure" and moves such genes wrongly: on the simulator, trained on ten cell
        types with the Roadmap atlas, atlas-lightgbm scored R2 0.664 on new genes of
        E071 against its prior's 0.709, and 0.804 without the block, while on genes
        trained on in other cell types the block lifted it from 0.760 to 0.840
        (docs/benchmarks.md). So genes without a profile get a model fitted without
        the block. Not needed when no training gene has a departure (one training cell
        type) or when the atlas is the training targets (an atlas gene is then always
        a training gene). ``F`` and ``vF`` are modified (the block zeroed). Validation
        rows (``vF``, ``vr``) judge the first model where their departure is known (none
        left: the model's own held-out genes), the second on all of them.
        """
        self.residual_kept_, self.metrics_residual_ = True, {}
        mvF, mvr = vF, vr
        if two and vF is not None:  # the first model is judged on rows of its own kind
            known = vF[:, departure].any(axis=1)
            mvF, mvr = (vF[known], vr[known]) if known.any() else (None, None)
        self._fit_residual(F, r, genes, mvF, mvr)
        if not two:
            self.residual_new_ = None
            return
        main = self._state()
        F[:, departure] = 0.0
        if vF is not None:
            vF[:, departure] = 0.0
        self.residual_kept_, self.metrics_residual_ = True, {}
        self._fit_residual(F, r, genes, vF, vr)
        self.residual_new_ = self._use(main)

    def _residual(self, F, row_genes) -> np.ndarray:
        """The residual of rows ``F`` (their genes ``row_genes``): zeros where its model
        was dropped; genes without a training profile from their own model."""
        out = self._predict_residual(F) if self.residual_kept_ else np.zeros(len(F), np.float32)
        if self.residual_new_ is not None:
            new = ~np.isin(row_genes, self.features_.ref_genes)
            if new.any():
                with self._using_new():
                    out[new] = self._predict_residual(F[new]) if self.residual_kept_ else 0.0
        return out

    def _energy_residual(self, F) -> np.ndarray:
        """The residual the guard's energy factor measures, alike on training and new
        rows: with two models, the new-gene one on every row (the departure blanked),
        since the departure is known on training rows but not on a new cell's new
        genes (comparing the two models' moves measured the model, not the cell)."""
        if self.residual_new_ is None:
            return self._predict_residual(F)
        F = F.copy()
        F[:, self.features_.departure(F)] = 0.0
        with self._using_new():
            return self._predict_residual(F)

    def _any_residual(self) -> bool:
        new = self.residual_new_
        return self.residual_kept_ or (new is not None and new["residual_kept_"])

    def _keep_residual(self, mse_with: float, mse_without: float) -> None:
        """Keep the residual only if it lowers the prior's mean squared error on
        training genes it was not fitted on (``mse_with``: prior + residual,
        ``mse_without``: the prior alone; either ``nan``: no held-out genes, kept).

        This is the choice of "no residual" that early stopping (which cannot stop at
        zero rounds) and the ridge penalty grid (whose largest penalty still fits an
        intercept) lack. Trained on an ES line whose prior is already close, a LightGBM
        residual stopped after one round and raised the held-out error by 1 %; applied
        to another cell type it kept that loss (issue #22)."""
        if np.isfinite(mse_with) and np.isfinite(mse_without):
            self.residual_kept_ = bool(mse_with < mse_without)
        self.metrics_residual_["residual_kept"] = self.residual_kept_

    def _save_residuals(self, directory) -> None:
        """The residual model in ``directory``, the new-gene one in ``NEW_GENES``."""
        self._save_residual(directory)
        if self.residual_new_ is not None:
            (directory / NEW_GENES).mkdir()
            with self._using_new():
                self._save_residual(directory / NEW_GENES)

    def _load_residuals(self, directory, z) -> None:
        """Both residual models and their keep flags (``z``: the state arrays; a
        directory saved before the flags applied its one residual to every gene)."""
        self._load_residual(directory)
        self.residual_new_ = None
        if (directory / NEW_GENES).is_dir():
            main = self._state()
            self._load_residual(directory / NEW_GENES)
            self.residual_kept_ = bool(z["new_genes_kept"])
            self.residual_new_ = self._use(main)
        self.residual_kept_ = bool(z["residual_kept"]) if "residual_kept" in z else True

    def _residual_flags(self) -> dict:
        """The keep flags, for the state arrays :meth:`_load_residuals` reads."""
        new = self.residual_new_
        return {
            "residual_kept": np.bool_(self.residual_kept_),
            "new_genes_kept": np.bool_(new is not None and new["residual_kept_"]),
        }


def residual_lines(metrics: dict) -> list[str]:
    """Lines for ``histexpr info``: whether an atlas model's residual is applied, and to
    which genes (``metrics``: its ``metrics.json``; none for other kinds)."""
    if "residual_kept" not in metrics:
        return []
    kept = metrics["residual_kept"]
    new = metrics.get("new_genes_residual_kept")
    main = (
        "applied to the prior"
        if kept
        else "dropped: it did not lower the prior's error on held-out training genes, "
        "so the model predicts its prior"
    )
    lines = [f"atlas residual: {main}"]
    if new is not None:
        state = "applied" if new else "dropped (the prior alone)"
        lines.append(f"genes no training cell type has: their own residual model, {state}")
    return lines
