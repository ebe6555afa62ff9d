"""Workflow of ``histexpr protocol``: the per-cell protocol of the DeepChrome papers.

DeepChrome (Singh et al. 2016) and its follow-ups (AttentiveChrome, ...) train one
model per cell type on ``train.csv``, choose it on ``valid.csv`` and report the AUC
on ``test.csv``, then the mean over cell types. :func:`run_protocol` does that over
every cell type of a DeepChrome folder, with one model per cell type
(``joint=False``) or one model trained on the train files of all cell types
(``joint=True``), and writes a per-cell table: AUC always; MSE and Pearson r as well
when the target is continuous (``target="rpkm"``: log2(RPKM+1) joined from the
packaged Roadmap matrix; the AUC is then that of the median split of each cell
type, DeepChrome's own labelling rule).

Outputs under ``out``: ``protocol.csv`` (one row per cell type, then a ``mean``
row: the mean of each metric, the example counts left blank) and the model(s):
``models/<cell>/`` or ``model/``. The folder is written under a temporary name and
moved into place when complete (``histexpr.atomic.atomic_dir``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from histexpr.atomic import PROTOCOL_TABLE, atomic_dir, atomic_path, is_protocol_dir
from histexpr.data.dataset import HistoneDataset
from histexpr.errors import HistexprError
from histexpr.estimators import fit_estimator, make_estimator
from histexpr.evaluate import compute_metrics, is_label

#: Columns of the protocol table (metrics of the test split).
COLUMNS = ("cell", "n_train", "n_valid", "n_test", "auc", "mse", "pearson")


@dataclass
class ProtocolResult:
    """Outcome of :func:`run_protocol`.

    Attributes
    ----------
    table : pd.DataFrame
        :data:`COLUMNS`; one row per cell type, then ``cell == "mean"`` (the mean of
        each metric over cell types; its counts are missing). ``mse``/``pearson`` are
        NaN for binary labels.
    table_path : Path
        ``out/protocol.csv``.
    model_dirs : dict of str to Path
        Cell type (or ``"joint"``) -> saved model directory.
    """

    table: pd.DataFrame
    table_path: Path
    model_dirs: dict[str, Path]


def _split(part: HistoneDataset, name: str) -> HistoneDataset | None:
    if part.split is None or name not in part.splits:
        return None
    return part.select_split(name)


def _score(test: HistoneDataset, pred: np.ndarray) -> dict[str, float]:
    m = compute_metrics(test.y, pred, test.cell)
    continuous = not is_label(test.y)
    return {
        "auc": m.auc,
        "mse": m.mse if continuous else float("nan"),
        "pearson": m.pearson if continuous else float("nan"),
    }


def run_protocol(
    folder,
    out,
    model: str = "ridge",
    joint: bool = False,
    cells: Sequence[str] | None = None,
    target: str = "label",
    missing: str = "error",
    overrides: Sequence[str] | dict = (),
    log: Callable[[str], None] = print,
) -> ProtocolResult:
    """Train on train, choose on valid, score on test, for every cell type of ``folder``.

    Parameters
    ----------
    folder : path
        A DeepChrome folder (cell-type folders, either layout, or one cell folder).
    out : path
        Output folder (created).
    model : str
        Model kind (see ``histexpr.estimators.KINDS``).
    joint : bool
        One model on the train files of all cell types instead of one per cell type.
    cells : sequence of str, optional
        Cell types to run (default: all).
    target : {"label", "rpkm"}
        The DeepChrome label, or log2(RPKM+1) from the packaged Roadmap matrix.
    missing : {"error", "drop"}
        Genes without RPKM (``target="rpkm"``).
    overrides : field=value strings or dict
        Config overrides of the model kind.
    log : callable

    Returns
    -------
    ProtocolResult
    """
    from histexpr.data.deepchrome import iter_deepchrome

    if target not in ("label", "rpkm"):
        raise HistexprError(f"--target must be label or rpkm, got {target!r}")
    out = Path(out)
    parts = {}
    for d in iter_deepchrome(folder, cells=cells, target=target, missing=missing):
        cell = d.data.cells[0]
        train = _split(d.data, "train")
        test = _split(d.data, "test")
        if train is None or test is None:
            log(f"{cell}: skipped (needs train.csv and test.csv)")
            continue
        parts[cell] = (train, _split(d.data, "valid"), test)
    if not parts:
        raise HistexprError(f"{folder}: no cell type has both train.csv and test.csv")
    ov = (dict(overrides) if isinstance(overrides, dict) else list(overrides)) or None
    # the folder appears complete or not at all; an earlier protocol folder is replaced
    # only once the new one is (callers guard ``out``: histexpr.atomic.guard_output)
    with atomic_dir(out, ours=is_protocol_dir) as tmp:
        table, saved = _run(tmp, parts, model, joint, ov, log)
        path = tmp / PROTOCOL_TABLE
        with atomic_path(path, suffix=".csv") as tmp_table:
            table.to_csv(tmp_table, index=False)
    model_dirs = {cell: out / Path(d).relative_to(tmp) for cell, d in saved.items()}
    return ProtocolResult(table, out / PROTOCOL_TABLE, model_dirs)


def _run(out: Path, parts: dict, model: str, joint: bool, ov, log) -> tuple[pd.DataFrame, dict]:
    """Train, choose and score every cell type of ``parts`` into ``out``; the table
    and the saved model directories."""
    rows, model_dirs, preds = [], {}, {}
    if joint:
        train = HistoneDataset.concat([p[0] for p in parts.values()])
        valids = [p[1] for p in parts.values() if p[1] is not None]
        valid = HistoneDataset.concat(valids) if valids else None
        log(f"training one {model} on {len(train)} examples of {len(parts)} cell types")
        est = fit_estimator(make_estimator(model, ov), train, valid, run_dir=out / "model")
        if est.metrics_.get("selection"):
            log(f"{model}: {est.metrics_['selection']}")
        model_dirs["joint"] = est.save(out / "model")
        preds = {c: est.predict(test) for c, (_, _, test) in parts.items()}
    for cell, (train, valid, test) in parts.items():
        if not joint:
            est = fit_estimator(
                make_estimator(model, ov), train, valid, run_dir=out / "models" / cell
            )
            model_dirs[cell] = est.save(out / "models" / cell)
            preds[cell] = est.predict(test)
        row = {
            "cell": cell,
            "n_train": len(train),
            "n_valid": 0 if valid is None else len(valid),
            "n_test": len(test),
            **_score(test, preds[cell]),
        }
        log(f"{cell}: test AUC {row['auc']:.3f}")
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    # the mean row averages the metrics; counts of examples are per cell type (blank)
    mean = {"cell": "mean", **{c: table[c].mean() for c in ("auc", "mse", "pearson")}}
    table = pd.concat([table, pd.DataFrame([mean])], ignore_index=True)
    counts = ("n_train", "n_valid", "n_test")
    table = table.astype(dict.fromkeys(counts, "Int64"))[list(COLUMNS)]
    return table, model_dirs
