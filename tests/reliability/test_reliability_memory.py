"""Memory: ``evaluate`` streams an HDF5 dataset larger than its memory budget.

The companion of ``tests/test_cli.py::test_predict_streams_within_memory_budget``:
every block read stays within the budget's row count, the peak of traced
allocations stays far below the size of ``X``, and the numbers equal those of
an unconstrained run.
"""

from __future__ import annotations

import io
import tracemalloc
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pandas as pd

from conftest import make_planted
from histexpr.cli import main
from histexpr.data.hdf5 import H5Dataset, write_h5
from histexpr.workflows import evaluate_model, rows_for_budget


def cli(*args) -> int:
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            return exc.code
    return 0


def test_evaluate_streams_within_memory_budget(tmp_path, monkeypatch):
    ds = make_planted(n_genes=5000, cells=("E003", "E004"))  # 10,000 examples, 20 MB of X
    write_h5(ds, tmp_path / "big.h5")
    write_h5(make_planted(n_genes=200, cells=("E003", "E004")), tmp_path / "train.h5")
    assert cli("train", tmp_path / "train.h5", "--model", "ridge", "-o", tmp_path / "m") == 0
    sizes = []
    original_read = H5Dataset.read

    def recording_read(self, index=None):
        block = original_read(self, index)
        sizes.append(len(block))
        return block

    budget = 1_000_000
    rows = rows_for_budget(budget, 5, 100)
    # the unconstrained run first: it also imports what loading the model needs, so the
    # traced peak below is the streaming itself, not one-time module imports
    whole = evaluate_model(tmp_path / "m", tmp_path / "big.h5", memory_budget="1GB")
    monkeypatch.setattr(H5Dataset, "read", recording_read)
    tracemalloc.start()
    small = evaluate_model(tmp_path / "m", tmp_path / "big.h5", memory_budget=budget)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sum(sizes) == 10000 and max(sizes) <= rows < 200
    # one block plus per-example outputs (targets, ids, predictions), far below X itself
    assert peak < 0.4 * ds.X.nbytes
    pd.testing.assert_frame_equal(small.table, whole.table, rtol=1e-5, atol=1e-6)

    # the same through the command line, --memory included, written as CSV
    sizes.clear()
    out = tmp_path / "eval.csv"
    assert cli("evaluate", tmp_path / "m", tmp_path / "big.h5", "--memory", "1MB", "-o", out) == 0
    assert sum(sizes) == 10000 and max(sizes) <= rows_for_budget(2**20, 5, 100)
    table = pd.read_csv(out)
    np.testing.assert_allclose(table["mse"], whole.table["mse"], rtol=1e-5)
    per_cell = pd.read_csv(tmp_path / "eval.per_cell.csv")
    np.testing.assert_allclose(per_cell["mse"], whole.per_cell["mse"], rtol=1e-5)
    assert cli("evaluate", tmp_path / "m", tmp_path / "big.h5", "--memory", "lots") == 2
