"""--model auto: grouped CV picks the planted model family, records the comparison."""

import json

import numpy as np
import pytest

from conftest import FAST, make_planted, run_cli
from histexpr.data.dataset import MARKS, HistoneDataset
from histexpr.data.hdf5 import write_h5
from histexpr.errors import HistexprError
from histexpr.estimators import auto
from histexpr.estimators.auto import AutoConfig, CandidateRow, candidates, cv_folds, select

#: Small trees, one thread: a candidate's fold takes well under a second.
QUICK = {
    "lightgbm": {"n_estimators": 150, "learning_rate": 0.1, "n_jobs": 1},
    "random-forest": {"n_estimators": 30, "min_samples_leaf": 5, "n_jobs": 1},
    "diff-lightgbm": {"n_estimators": 150, "learning_rate": 0.1, "n_jobs": 1},
}
QUICK_SET = [
    f"{k}:{n}={v}" for k, over in QUICK.items() if k != "diff-lightgbm" for n, v in over.items()
]


def make_interaction(n_genes=240, cells=("A", "B", "C"), seed=0) -> HistoneDataset:
    """y depends on the sign of the product of two latent marks' levels: no linear signal."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n_genes), rng.normal(size=n_genes)
    parts = []
    for c in cells:
        rate = np.full((n_genes, len(MARKS), 20), 0.5)
        rate[:, 3, 8:12] = np.exp(1.0 + a)[:, None]
        rate[:, 0, :] = np.exp(1.0 + b)[:, None]
        y = 3 + 2 * np.sign(a) * np.sign(b) + 0.3 * rng.normal(size=n_genes)
        genes = np.array([f"g{i}" for i in range(n_genes)])
        parts.append(
            HistoneDataset(rng.poisson(rate).astype(np.float32), y, np.full(n_genes, c), genes)
        )
    return HistoneDataset.concat(parts)


def test_linear_signal_picks_ridge():
    res = select(make_planted(n_genes=120), AutoConfig(folds=3), QUICK, log=lambda s: None)
    assert res.chosen == "ridge"
    done = {r.candidate: r for r in res.rows if r.folds}
    assert set(done) == {"ridge", "lightgbm", "random-forest"}
    assert all(r.folds == 3 and r.spread >= 0 and r.fit_seconds > 0 for r in done.values())
    assert "auto: chose ridge" in res.summary() and "3 gene folds" in res.summary()


def test_interaction_picks_trees():
    res = select(make_interaction(), AutoConfig(folds=4), QUICK, log=lambda s: None)
    assert res.chosen in ("lightgbm", "random-forest")
    score = {r.candidate: r.score for r in res.rows if r.folds}
    assert score[res.chosen] < 0.8 * score["ridge"]


def test_candidates_follow_the_data():
    small = dict(candidates(make_planted(n_genes=50)))
    assert small["ridge"] == "" and small["lightgbm"] == ""
    assert "networks from" in small["convnet"] and "atlas" in small["atlas-ridge"]
    big = dict(candidates(make_planted(n_genes=1100, cells=("A", "B")), atlas=True))
    assert big["convnet"] == "" and big["atlas-ridge"] == "" and "3" in big["ensemble"]
    assert [k for k, _ in candidates(make_planted(50), diff=True)] == list(auto.DIFF_ORDER)
    assert auto.fold_count(30, 90) == 3 and auto.fold_count(5000, 15000) == 5
    assert auto.fold_count(20000, 1_000_000) == 3 and auto.fold_count(8, 8) == 2


@pytest.mark.parametrize("goal", ["new-genes", "unseen-cells", "unseen-cells-new-genes"])
def test_folds_hold_out_genes_and_cells(goal):
    data = make_planted(n_genes=40, cells=("A", "B", "C", "D"))
    folds = cv_folds(data, 3, goal)
    if goal != "unseen-cells":
        tested = np.concatenate([np.unique(te.gene) for _, te in folds])
        assert len(tested) == len(np.unique(tested)) == 40  # every gene scored once
    else:  # every cell type scored once, on all genes (known from the other cell types)
        assert sorted(c for _, te in folds for c in te.cells) == ["A", "B", "C", "D"]
        assert all(len(np.unique(te.gene)) == 40 for _, te in folds)
    for train, test in folds:
        assert len(test) and len(train)
        if goal != "unseen-cells":
            assert not set(train.gene) & set(test.gene)
        if goal != "new-genes":
            assert not set(train.cells) & set(test.cells)
    with pytest.raises(HistexprError, match="cell types"):
        cv_folds(make_planted(n_genes=40, cells=("A", "B")), 3, "unseen-cells")


def test_tie_rule_keeps_the_simpler_kind():
    rows = [
        CandidateRow("lightgbm", 1.00, 0.2, 1.0, 4),
        CandidateRow("ridge", 1.05, 0.2, 0.1, 4),  # within one SE (0.1) of the best
        CandidateRow("convnet", None, skipped_reason="x"),
    ]
    pick, why = auto._choose(rows, auto.ORDER)
    assert pick.candidate == "ridge" and "standard error" in why and pick.chosen
    rows[1].score = 1.2
    rows[1].chosen = False
    assert auto._choose(rows, auto.ORDER)[0].candidate == "lightgbm"


def test_time_budget_stops_candidates():
    with pytest.raises(HistexprError, match="max-minutes"):
        select(make_planted(n_genes=60), AutoConfig(folds=3, max_minutes=1e-6), QUICK, log=print)


def test_network_candidate_with_tiny_settings(monkeypatch):
    monkeypatch.setattr(auto, "MIN_NETWORK_EXAMPLES", 0)
    over = {"convnet": {**FAST, "epochs": 2}}
    res = select(
        make_planted(n_genes=60),
        AutoConfig(folds=2, candidates=("ridge", "convnet")),
        over,
        log=lambda s: None,
    )
    row = {r.candidate: r for r in res.rows}
    assert row["convnet"].folds == 2 and np.isfinite(row["convnet"].score)
    assert set(row) == {"ridge", "convnet"}


def test_cli_auto_records_and_refits_like_the_named_kind(tmp_path, capsys):
    from histexpr.estimators import load_estimator
    from histexpr.estimators.bundle import read_auto
    from histexpr.workflows import train_model

    data = tmp_path / "d.h5"
    write_h5(make_interaction(n_genes=200), data)
    sets = [a for s in [*QUICK_SET, "folds=3"] for a in ("--set", s)]
    assert run_cli("train", data, "--model", "auto", "-o", tmp_path / "m", *sets) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("auto: chose"))
    chosen = line.split()[2]
    assert chosen in ("lightgbm", "random-forest") and "3 gene folds" in line
    rows = read_auto(tmp_path / "m")
    assert [r["candidate"] for r in rows if r["chosen"]] == [chosen]
    assert {
        "candidate",
        "score",
        "spread",
        "fit_seconds",
        "folds",
        "chosen",
        "skipped_reason",
    } <= set(rows[0])
    header = json.loads((tmp_path / "m" / "model.json").read_text())
    assert header["kind"] == chosen and header["auto"] == rows
    load_estimator(tmp_path / "m")  # checksums still hold
    assert run_cli("info", tmp_path / "m") == 0
    shown = capsys.readouterr().out
    assert "auto: cross-validated comparison" in shown and "* " + chosen in shown
    from histexpr.report import write_report

    page = write_report(tmp_path / "m").read_text(encoding="utf-8")
    assert "Automatic model choice" in page and "skipped_reason" in page
    # the refit winner is the named kind trained directly with the same settings
    train_model(data, tmp_path / "direct", chosen, overrides=QUICK[chosen], log=lambda s: None)
    ds = make_interaction(n_genes=200)
    a = load_estimator(tmp_path / "m").predict(ds)
    b = load_estimator(tmp_path / "direct").predict(ds)
    np.testing.assert_array_equal(a, b)


def test_diff_auto_chooses_among_diff_kinds(tmp_path):
    from histexpr.estimators.bundle import read_auto
    from histexpr.workflows.train import train_model

    data = tmp_path / "d.h5"
    write_h5(make_planted(n_genes=120), data)
    res = train_model(
        data,
        tmp_path / "m",
        "diff-auto",
        overrides={
            "folds": 3,
            **{f"diff-lightgbm:{k}": v for k, v in QUICK["diff-lightgbm"].items()},
        },
        log=lambda s: None,
    )
    rows = read_auto(tmp_path / "m")
    assert res.kind in ("diff-ridge", "diff-lightgbm")
    assert [r["candidate"] for r in rows if r["chosen"]] == [res.kind]
    assert any(r["candidate"] == "diff-convnet" and r["skipped_reason"] for r in rows)
    with pytest.raises(HistexprError, match="new-genes only"):
        select(make_planted(n_genes=30), AutoConfig(goal="unseen-cells"), diff=True)


def test_unseen_cells_goal_with_an_atlas_picks_an_atlas_kind():
    """New cell types on known genes: the atlas (the gene in other cell types) wins."""
    from histexpr.estimators.auto import choose

    data = make_planted(n_genes=100, cells=("E003", "E004", "E005", "E006"), seed=3)
    over = {"atlas": "", "goal": "unseen-cells", "candidates": "ridge,atlas-ridge"}
    res = choose(data, over, log=lambda s: None)
    assert res.chosen == "atlas-ridge" and res.n_folds == 4
    assert "4 cell-type folds" in res.summary()
    score = {r.candidate: r.score for r in res.rows}
    assert score["atlas-ridge"] < 0.9 * score["ridge"]


def test_budget_stops_a_slow_candidate_after_its_first_fold(monkeypatch):
    """A clock that only advances in fits: lightgbm's fold takes 100 s, the others 1 s."""
    import histexpr.estimators as registry

    class Clock:
        t = 0.0

        def perf_counter(self):
            return self.t

    clock, real = Clock(), registry.make_estimator

    def timed(kind, over=None):
        est = real(kind, over)
        fit = est.fit

        def slow_fit(*a, **k):
            clock.t += 100.0 if kind == "lightgbm" else 1.0
            return fit(*a, **k)

        est.fit = slow_fit
        return est

    monkeypatch.setattr(auto, "time", clock)
    monkeypatch.setattr(registry, "make_estimator", timed)
    res = select(make_planted(n_genes=60), AutoConfig(folds=3, max_minutes=2), QUICK, log=print)
    row = {r.candidate: r for r in res.rows}
    assert row["lightgbm"].folds == 1 and "time budget" in row["lightgbm"].skipped_reason
    assert row["lightgbm"].spread is None and not row["lightgbm"].chosen
    assert row["ridge"].folds == row["random-forest"].folds == 3
    assert res.chosen in ("ridge", "random-forest")


def test_cli_auto_settings_and_unknown_setting(tmp_path, capsys):
    assert run_cli("train", "--model", "auto", "--show-settings") == 0
    out = capsys.readouterr().out
    assert "goal" in out and "max_minutes" in out and "unseen-cells" in out
    data = tmp_path / "d.h5"
    write_h5(make_planted(n_genes=30), data)
    assert run_cli("train", data, "--model", "auto", "-o", tmp_path / "m", "--set", "nope=1") == 2
    assert "no candidate has the setting 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "m" / "model.json").exists()
