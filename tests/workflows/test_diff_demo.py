"""The demo's differential section on planted data: two pairs, both models, a table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from conftest import make_planted
from histexpr.workflows.demo import run_diff_demo


def test_run_diff_demo_scores_a_seen_and_an_unseen_pair(tmp_path):
    data = make_planted(120, ("E003", "E004", "E005", "E071"), seed=5)
    test_genes = np.unique(data.gene)[:40]
    ev = run_diff_demo(
        data, tmp_path, ["E003", "E004", "E005"], ["E071"], test_genes, log=lambda _: None
    )
    table = pd.read_csv(tmp_path / "differential.csv")
    assert list(table.model) == ["diff-ridge"] * 2 + ["ridge difference"] * 2
    assert list(table.pair) == ["E003:E004", "E071:E003"] * 2
    assert list(table.cells) == ["seen", "unseen"] * 2 and (table.n == 40).all()
    assert (table.pearson > 0.3).all() and len(ev.table) == 4
