"""Decision-tree ensembles as plain arrays: saved without pickles, predicted with numpy.

scikit-learn persists forests only through pickle, which histexpr never loads
from user files. :class:`TreeEnsembleArrays` keeps the node arrays of each
fitted tree (children, split feature, threshold, leaf value) and evaluates them
level by level for a whole batch at once. LightGBM models are saved as their own
text format: :func:`lightgbm_params`, :func:`early_stopping_genes` and
:func:`load_booster` serve every LightGBM kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histexpr._runtime import choose_threads
from histexpr.data.splits import holdout_mask
from histexpr.errors import HistexprError


@dataclass
class TreeEnsembleArrays:
    """Node arrays of ``n_trees`` regression trees, concatenated.

    Attributes
    ----------
    offsets : np.ndarray, shape (n_trees + 1,), int64
        Node range of tree t is ``offsets[t]:offsets[t+1]``.
    left, right : np.ndarray, shape (n_nodes,), int64
        Child indices local to their tree; -1 marks a leaf.
    feature : np.ndarray, shape (n_nodes,), int64
    threshold : np.ndarray, shape (n_nodes,), float64
        Go left when ``x[feature] <= threshold`` (scikit-learn's convention).
    value : np.ndarray, shape (n_nodes,), float64
        Node prediction (used at leaves).
    """

    offsets: np.ndarray
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray

    @classmethod
    def from_sklearn(cls, estimators) -> TreeEnsembleArrays:
        """Collect the node arrays of fitted ``DecisionTreeRegressor``s."""
        parts = {k: [] for k in ("left", "right", "feature", "threshold", "value")}
        offsets = [0]
        for est in estimators:
            t = est.tree_
            parts["left"].append(t.children_left.astype(np.int64))
            parts["right"].append(t.children_right.astype(np.int64))
            parts["feature"].append(t.feature.astype(np.int64))
            parts["threshold"].append(t.threshold.astype(np.float64))
            parts["value"].append(t.value.reshape(t.node_count, -1)[:, 0].astype(np.float64))
            offsets.append(offsets[-1] + t.node_count)
        return cls(
            offsets=np.asarray(offsets, dtype=np.int64),
            **{k: np.concatenate(v) for k, v in parts.items()},
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "tree_offsets": self.offsets,
            "tree_left": self.left,
            "tree_right": self.right,
            "tree_feature": self.feature,
            "tree_threshold": self.threshold,
            "tree_value": self.value,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TreeEnsembleArrays:
        return cls(
            offsets=arrays["tree_offsets"],
            left=arrays["tree_left"],
            right=arrays["tree_right"],
            feature=arrays["tree_feature"],
            threshold=arrays["tree_threshold"],
            value=arrays["tree_value"],
        )

    @property
    def n_trees(self) -> int:
        return len(self.offsets) - 1

    def predict_tree(self, t: int, F: np.ndarray) -> np.ndarray:
        """Predictions of tree ``t`` for every row of ``F`` (n_examples, n_features)."""
        lo, hi = self.offsets[t], self.offsets[t + 1]
        left, right = self.left[lo:hi], self.right[lo:hi]
        feat, thr, val = self.feature[lo:hi], self.threshold[lo:hi], self.value[lo:hi]
        node = np.zeros(F.shape[0], dtype=np.int64)
        rows = np.arange(F.shape[0])
        active = left[node] != -1
        # Every sample descends one level per pass; a tree is at most max_depth deep.
        while active.any():
            idx = rows[active]
            nd = node[idx]
            go_left = F[idx, feat[nd]] <= thr[nd]
            node[idx] = np.where(go_left, left[nd], right[nd])
            active[idx] = left[node[idx]] != -1
        return val[node]

    def predict_mean(self, F: np.ndarray) -> np.ndarray:
        """Mean prediction over all trees, float32 of shape (n_examples,)."""
        F = np.asarray(F, dtype=np.float32)
        total = np.zeros(F.shape[0], dtype=np.float64)
        for t in range(self.n_trees):
            total += self.predict_tree(t, F)
        return (total / max(self.n_trees, 1)).astype(np.float32)


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


def early_stopping_genes(gene, c) -> np.ndarray:
    """The training genes a LightGBM kind without validation data stops early on.

    ``c.holdout_fraction`` of them (the ``"folds"`` draw of
    :func:`histexpr.data.splits.holdout_mask`, seeded by ``c.seed``); none when that
    is under 5 genes (the rounds are then fixed).

    Parameters
    ----------
    gene : np.ndarray, shape (n,), str
    c : a config with ``holdout_fraction`` and ``seed``

    Returns
    -------
    np.ndarray, shape (n,), bool
    """
    return holdout_mask(gene, c.holdout_fraction, c.seed, draw="folds", min_held=5)


def load_booster(directory: Path, name: str):
    """The LightGBM text model ``directory / name``; one line if it is missing."""
    import lightgbm as lgb

    path = directory / name
    if not path.is_file():
        raise HistexprError(f"{directory}: model directory is missing {name}")
    return lgb.Booster(model_file=str(path))
