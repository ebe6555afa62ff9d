"""The Bayes oracle: E[y | X, cell] under the simulator's own likelihood.

Every count is negative binomial given (grid point g, class k, cell c) and
independent of the others, so the log-likelihood of an example is linear in
``X`` up to terms that cancel in the posterior:

    log p(X | g, k, c) = X . log(mu / (mu + r)) + sum r log(r / (mu + r)) + f(X)

With ``W[c] = log(mu / (mu + r))`` (features x (g, k)) and ``b[c]`` the second
term plus the log prior, the posterior over the grid is a softmax of one matrix
product. The prior is exact: the gene's expression bin ``g`` is distributed as
the cell type's empirical histogram over the simulated genes, the class as
``p(k)`` independently, and within a bin the expected ``y`` is the mean of the
real ``y`` values in that bin (counts depend on ``y`` only through its bin).
Hence ``E[y | X] = sum_g p(g | X) * ybar[g]`` is the Bayes posterior mean for a
model that sees ``X`` and the cell type (not the gene id).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from histexpr.config import from_dict
from histexpr.data.dataset import N_BINS, HistoneDataset
from histexpr.errors import DataError
from histexpr.simulator.config import (
    SimulatorConfig,
    class_table,
    gene_classes,
    mark_dispersion,
)
from histexpr.simulator.generate import expression, simulated_genes
from histexpr.simulator.profiles import mean_counts, y_to_bin


class OracleTable(NamedTuple):
    """Linear posterior of one cell type over its J = (non-empty bin, class) pairs.

    Attributes
    ----------
    W : np.ndarray, shape (n_marks * n_bins, J)
    b : np.ndarray, shape (J,)
    value : np.ndarray, shape (J,)
        Mean expression of the grid bin of each column.
    """

    W: np.ndarray
    b: np.ndarray
    value: np.ndarray


class Simulator:
    """The simulator's likelihood and oracle for one config (tables cached per cell).

    Parameters
    ----------
    config : SimulatorConfig
    """

    def __init__(self, config: SimulatorConfig):
        self.config = config
        self.genes = simulated_genes(config)
        self._tables: dict[str, OracleTable] = {}
        self._Y: np.ndarray | None = None

    @property
    def Y(self) -> np.ndarray:
        """Real targets, shape (n_genes, n_cells)."""
        if self._Y is None:
            self._Y = expression(self.config, self.genes)
        return self._Y

    @property
    def classes(self) -> np.ndarray:
        """Latent class of every simulated gene, shape (n_genes,)."""
        return gene_classes(self.config, self.genes)

    def table(self, cell: str) -> OracleTable:
        """Build (once) the oracle table of ``cell``."""
        if cell in self._tables:
            return self._tables[cell]
        cfg = self.config
        if cell not in cfg.cells:
            raise DataError(f"cell type {cell} is not in the simulator config", key="cell")
        y = self.Y[:, list(cfg.cells).index(cell)].astype(np.float64)
        g = y_to_bin(y, cfg)
        count = np.bincount(g, minlength=cfg.n_grid).astype(np.float64)
        total = np.bincount(g, weights=y, minlength=cfg.n_grid)
        used = np.flatnonzero(count > 0)
        ybar = total[used] / count[used]
        log_prior_g = np.log(count[used] / count.sum())
        cls = class_table(cfg)
        mu = mean_counts(cfg, cell)[used]  # (Gu, K, M, B)
        r = mark_dispersion(cfg)[None, None, :, None]
        log_p = np.log(mu / (mu + r))
        const = (r * np.log(r / (mu + r))).sum(axis=(2, 3))  # (Gu, K)
        Gu, K = const.shape
        W = log_p.reshape(Gu * K, -1).T.copy()  # (M*B, Gu*K), columns (g, k) row-major
        b = (const + log_prior_g[:, None] + np.log(cls.prob)[None, :]).reshape(-1)
        value = np.repeat(ybar, K)
        self._tables[cell] = OracleTable(W, b, value)
        return self._tables[cell]

    def posterior_mean(self, X: np.ndarray, cell: str, batch_size: int = 4096) -> np.ndarray:
        """E[y | X] for examples of one cell type.

        Parameters
        ----------
        X : np.ndarray, shape (n, n_marks, 100)
            Counts of ``config.marks`` (in that order), transcript orientation.
        cell : str
        batch_size : int

        Returns
        -------
        np.ndarray, shape (n,), float64
        """
        X = np.asarray(X)
        n_marks = len(self.config.marks)
        if X.ndim != 3 or X.shape[1:] != (n_marks, N_BINS):
            raise DataError(f"X must have shape (n, {n_marks}, {N_BINS}), got {X.shape}")
        t = self.table(cell)
        out = np.empty(len(X), dtype=np.float64)
        for lo in range(0, len(X), batch_size):
            xb = X[lo : lo + batch_size].reshape(-1, t.W.shape[0]).astype(np.float64)
            logits = xb @ t.W + t.b
            logits -= logits.max(axis=1, keepdims=True)
            post = np.exp(logits)
            out[lo : lo + batch_size] = (post @ t.value) / post.sum(axis=1)
        return out

    def predict(self, ds: HistoneDataset) -> np.ndarray:
        """Oracle prediction for every example of a data set, shape (n,)."""
        if tuple(ds.marks) != tuple(self.config.marks):
            ds = ds.select_marks(self.config.marks)  # by name (the simulator's order)
        out = np.empty(len(ds), dtype=np.float64)
        for cell in ds.cells:
            idx = np.flatnonzero(ds.cell == cell)
            out[idx] = self.posterior_mean(ds.X[idx], cell)
        return out


def oracle_predict(X: np.ndarray, cell: str, config: SimulatorConfig) -> np.ndarray:
    """Bayes posterior mean E[y | X, cell] under ``config``'s likelihood and prior.

    Parameters
    ----------
    X : np.ndarray, shape (n, n_marks, 100)
        Counts of ``config.marks``.
    cell : str
    config : SimulatorConfig

    Returns
    -------
    np.ndarray, shape (n,)
    """
    return Simulator(config).posterior_mean(X, cell)


def config_from_meta(meta: dict, path=None) -> SimulatorConfig:
    """The :class:`SimulatorConfig` stored in a data set's ``meta["simulator"]``."""
    if "simulator" not in meta:
        raise DataError("not a simulated data set (no simulator config in meta)", path, "meta")
    return from_dict(SimulatorConfig, meta["simulator"])


def oracle_for_dataset(ds: HistoneDataset) -> np.ndarray:
    """Oracle predictions for a simulated data set (config read from ``ds.meta``), shape (n,)."""
    return Simulator(config_from_meta(ds.meta)).predict(ds)
