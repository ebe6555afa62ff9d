"""Summary statistics that calibrate the simulator against real data.

Two real sources (read-only, in the shared data folder, never needed at run
time): per-base coverage of 100 E003 genes (Chromoformer demo; summed into
100-bp bins over TSS +/- 5 kb, divided by the 36-bp read length, flipped for
minus-strand genes) and DeepChrome's toy CSVs (real binned read counts of 30
genes). :func:`profile_stats` computes the same per-mark statistics on real and
simulated data; :func:`realism_metrics` measures the ridge baseline and the
oracle the way ``docs/simulator.md`` reports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from histexpr.data.dataset import MARKS, HistoneDataset
from histexpr.errors import DataError
from histexpr.evaluate import auc

#: Mark order of the Chromoformer per-base arrays.
DEMO_MARKS: tuple[str, ...] = (
    "H3K4me1",
    "H3K4me3",
    "H3K9me3",
    "H3K27me3",
    "H3K36me3",
    "H3K27ac",
    "H3K9ac",
)
#: Read length that turns Roadmap coverage sums into read counts.
READ_LENGTH = 36
#: Bin ranges of the statistics: TSS +/- 500 bp, the 3 kb upstream and downstream ends.
CENTER, UP, DOWN = slice(45, 55), slice(0, 30), slice(70, 100)


class RealBinned(NamedTuple):
    """Real binned data in the simulator's layout.

    Attributes
    ----------
    X : np.ndarray, shape (n, 5, 100)
        Read counts (canonical mark order, transcript orientation).
    high : np.ndarray, shape (n,), bool
        Expression above the median.
    y : np.ndarray, shape (n,) or None
        log2(RPKM+1) when known.
    """

    X: np.ndarray
    high: np.ndarray
    y: np.ndarray | None


def bin_demo(data_dir: str | Path, orient: bool = True, marks=MARKS) -> RealBinned:
    """Bin the Chromoformer per-base arrays of 100 E003 genes.

    Parameters
    ----------
    data_dir : path
        The shared data folder (holding ``chromoformer_demo/``).
    orient : bool
        Flip minus-strand genes into transcript orientation.
    marks : sequence of str
        Marks to bin, in this order (any of :data:`DEMO_MARKS`; default the core five).

    Returns
    -------
    RealBinned
    """
    root = Path(data_dir) / "chromoformer_demo"
    meta_path = root / "demo_meta.csv"
    if not meta_path.exists():
        raise DataError("file not found", meta_path)
    meta = pd.read_csv(meta_path)
    order = [DEMO_MARKS.index(m) for m in marks]
    X = np.empty((len(meta), len(order), 100))
    for i, row in enumerate(meta.itertuples()):
        path = root / "promoters" / f"{row.chrom}:{row.start - 20000}-{row.start + 20000}.npy"
        a = np.load(path, allow_pickle=False).astype(np.float64)
        binned = a[order, 15000:25000].reshape(len(order), 100, 100).sum(axis=2) / READ_LENGTH
        X[i] = binned[:, ::-1] if (orient and row.strand == "-") else binned
    y = np.log2(meta["expression"].to_numpy(dtype=np.float64) + 1.0)
    return RealBinned(X, y > np.median(y), y)


def load_toy(data_dir: str | Path) -> RealBinned:
    """DeepChrome's real toy rows (30 genes), labels = above-median expression."""
    root = Path(data_dir) / "deepchrome" / "toy"
    parts = []
    for name in ("train", "valid", "test"):
        path = root / f"{name}.csv"
        if not path.exists():
            raise DataError("file not found", path)
        parts.append(pd.read_csv(path, header=None))
    df = pd.concat(parts, ignore_index=True)
    X = df.iloc[:, 2:7].to_numpy(dtype=np.float64).reshape(-1, 100, 5).transpose(0, 2, 1)
    high = df.iloc[::100, 7].to_numpy() == 1
    return RealBinned(X, high, None)


def profile_stats(X: np.ndarray, high: np.ndarray, marks=MARKS) -> pd.DataFrame:
    """Per-mark summary statistics of binned counts.

    Parameters
    ----------
    X : np.ndarray, shape (n, 5, 100)
    high : np.ndarray, shape (n,), bool
        Which genes are highly expressed.

    Returns
    -------
    pd.DataFrame, index = marks
        ``mean``; mean reads per bin at the TSS (``center_*``), 3 kb upstream end
        (``up_*``) and downstream end (``down_*``) for high (``_hi``) and low
        (``_lo``) genes; ``frac_zero`` (bins below half a read), ``var_mean``
        (variance / mean over all bins) and the 99th percentile ``q99``.
    """
    X = np.asarray(X, dtype=np.float64)
    high = np.asarray(high, dtype=bool)
    rows = {}
    for m, mark in enumerate(marks):
        v = X[:, m].ravel()
        row = {"mean": v.mean()}
        for name, sl in (("center", CENTER), ("up", UP), ("down", DOWN)):
            row[f"{name}_hi"] = X[high, m, sl].mean()
            row[f"{name}_lo"] = X[~high, m, sl].mean()
        row["frac_zero"] = float((v < 0.5).mean())
        row["var_mean"] = v.var() / v.mean() if v.mean() > 0 else float("nan")
        row["q99"] = float(np.percentile(v, 99))
        rows[mark] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def dataset_stats(ds: HistoneDataset, cell: str) -> pd.DataFrame:
    """:func:`profile_stats` of one cell type of a data set, median split of its ``y``."""
    sub = ds.select_cells([cell])
    return profile_stats(sub.X, sub.y > np.median(sub.y), sub.marks)


class RealismMetrics(NamedTuple):
    """Held-out performance of the ridge baseline and of the oracle.

    Attributes
    ----------
    var_y, ridge_mse, oracle_mse : float
        Variance of y, MSE of ridge and of the oracle on the held-out examples.
    ridge_r2, oracle_r2 : float
    ridge_auc, oracle_auc : float
        Mean over cell types of the median-split AUC.
    n_test : int
    """

    var_y: float
    ridge_mse: float
    oracle_mse: float
    ridge_r2: float
    oracle_r2: float
    ridge_auc: float
    oracle_auc: float
    n_test: int


def _median_auc(ds: HistoneDataset, test: np.ndarray, pred: np.ndarray) -> float:
    aucs = []
    for cell in np.unique(ds.cell[test]):
        in_cell = ds.cell == cell
        label = ds.y > np.median(ds.y[in_cell])
        idx = test & in_cell
        if 0 < label[idx].sum() < idx.sum():
            aucs.append(auc(label[idx].astype(np.int8), pred[idx]))
    return float(np.mean(aucs))


def realism_metrics(
    ds: HistoneDataset,
    train_cells,
    test_cells=None,
    test_frac: float = 1 / 3,
    alpha: float = 1.0,
    seed: int = 0,
    oracle: np.ndarray | None = None,
) -> RealismMetrics:
    """Ridge on log1p counts vs the oracle, on genes held out of training.

    Parameters
    ----------
    ds : HistoneDataset
        A simulated data set (its config is read from ``ds.meta``).
    train_cells : sequence of str
        Cell types ridge is trained on (with the non-held-out genes).
    test_cells : sequence of str, optional
        Cell types evaluated (default: ``train_cells``, i.e. unseen genes only).
    test_frac : float
        Fraction of genes held out.
    alpha : float
        Ridge penalty.
    seed : int
        Seed of the gene split.
    oracle : np.ndarray, shape (n,), optional
        Precomputed oracle predictions for ``ds``.

    Returns
    -------
    RealismMetrics
    """
    from sklearn.linear_model import Ridge

    from histexpr.data.splits import holdout_mask
    from histexpr.simulator.oracle import oracle_for_dataset

    held = holdout_mask(ds.gene, test_frac, seed, draw="choice")  # the one gene hold-out
    train = ~held & np.isin(ds.cell, list(train_cells))
    test = held & np.isin(ds.cell, list(train_cells if test_cells is None else test_cells))
    F = np.log1p(ds.X.reshape(len(ds), -1))
    ridge = Ridge(alpha=alpha).fit(F[train], ds.y[train])
    pred = ridge.predict(F)
    orc = oracle_for_dataset(ds) if oracle is None else oracle
    y = ds.y[test].astype(np.float64)
    var = float(y.var())
    mse_r = float(((y - pred[test]) ** 2).mean())
    mse_o = float(((y - orc[test]) ** 2).mean())
    return RealismMetrics(
        var_y=var,
        ridge_mse=mse_r,
        oracle_mse=mse_o,
        ridge_r2=1 - mse_r / var,
        oracle_r2=1 - mse_o / var,
        ridge_auc=_median_auc(ds, test, pred),
        oracle_auc=_median_auc(ds, test, orc),
        n_test=int(test.sum()),
    )
