"""Prediction intervals: Mondrian split-conformal calibration, stored with the model.

Coverage is checked on simulated data the model never saw: 800 genes held out of
training in every cell type, and a whole cell type (E004) left out, drawn from the
same population as the training cell types (exchangeable, which is what split
conformal assumes). Widths are checked where the model is less certain: new genes
for gene-mean (it knows a known gene's mean, nothing of a new one), cell types
with a shifted signal depth for ridge (unseen cell types).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_planted, run_cli
from histexpr.data.dataset import MARKS, HistoneDataset
from histexpr.data.h5writer import write_h5
from histexpr.data.splits import hold_out_genes
from histexpr.errors import HistexprError
from histexpr.estimators import make_estimator
from histexpr.estimators.intervals import (
    MIN_PER_CELL,
    MIN_RESIDUALS,
    POOLED,
    Calibration,
    calibrate,
    check_level,
    load_calibration,
)

TEST_CELL = "E004"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Simulated train/test files and a ridge model trained with ``--intervals``."""
    from histexpr.simulator import simulate
    from histexpr.simulator.config import SimulatorConfig
    from histexpr.workflows import train_model

    d = tmp_path_factory.mktemp("intervals")
    cells = ("E003", "E004", "E005", "E006", "E007", "E066")
    data = simulate(SimulatorConfig(seed=1, cells=cells, n_genes=2500))
    test_genes = np.random.default_rng(0).choice(np.unique(data.gene), 800, replace=False)
    train = data.select_genes(test_genes, exclude=True).select_cells([TEST_CELL], exclude=True)
    test = data.subset(np.isin(data.gene, test_genes) | (data.cell == TEST_CELL))
    write_h5(train, d / "train.h5")
    write_h5(test, d / "test.h5")
    train_model(
        d / "train.h5", d / "ridge", "ridge", valid_fraction=0.3, intervals=True, log=lambda s: s
    )
    return d


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_coverage_on_held_out_simulated_data_is_nominal(sim, level):
    from histexpr.workflows.evaluate import evaluate_model

    table = evaluate_model(sim / "ridge", sim / "test.h5", interval=level).intervals
    groups = set(table.group)
    assert {"all", "seen/new", "unseen/known", "unseen/new"} <= groups
    for row in table.itertuples():
        assert row.n > 1000, row
        assert abs(row.coverage - level) <= 0.03, row
    assert (table.level == level).all()


def _shifted(n_genes=300, n_cells=6, seed=0) -> HistoneDataset:
    """Planted data whose activating mark's depth grows 2.5x per cell type."""
    rng = np.random.default_rng(seed)
    a_gene = rng.normal(size=n_genes)
    parts = []
    for ci in range(n_cells):
        a = a_gene + 0.3 * rng.normal(size=n_genes)
        rate = np.full((n_genes, len(MARKS), 20), 0.5)
        rate[:, 3, 8:12] = np.exp(1.0 + a)[:, None]
        rate[:, 0, :] = np.exp(0.5 - a)[:, None]
        rate[:, 3] *= 2.5**ci
        y = (3 + 2 * a + 0.3 * rng.normal(size=n_genes)).astype(np.float32)
        X = rng.poisson(rate).astype(np.float32)
        genes = np.array([f"g{i}" for i in range(n_genes)])
        parts.append(HistoneDataset(X, y, np.full(n_genes, f"C{ci}"), genes))
    return HistoneDataset.concat(parts)


def _calibrated(kind, data) -> Calibration:
    train, valid = hold_out_genes(data, 0.3, 0)
    est = make_estimator(kind).fit(train, valid)
    return calibrate(kind, None, est, train, valid, log=lambda s: s)


@pytest.mark.filterwarnings("ignore:gene-mean")
@pytest.mark.parametrize("level", [0.8, 0.9])
def test_widths_are_wider_where_the_model_is_less_certain(level):
    # unseen cell types: ridge meets a depth it was not fitted on
    cal = _calibrated("ridge", _shifted())
    seen = cal.quantile("seen/new", level)
    assert cal.quantile("unseen/new", level) > 1.1 * seen
    assert cal.quantile("unseen/known", level) > 1.1 * seen
    # new genes: gene-mean knows a known gene's mean, of a new gene only the global one
    cal = _calibrated("gene-mean", make_planted(n_genes=300, cells=tuple("ABCDEF"), seed=2))
    assert cal.quantile("unseen/new", level) > 2 * cal.quantile("unseen/known", level)


def test_conformal_quantile_categories_and_fallback():
    rng = np.random.default_rng(0)
    big = np.sort(rng.uniform(0, 1, 199))
    cal = Calibration(
        {
            "seen/new": big,
            "seen/new@A": np.sort(rng.uniform(0, 3, MIN_PER_CELL)),
            "seen/new@B": np.sort(rng.uniform(0, 3, MIN_PER_CELL - 1)),  # too few for a cell
            "unseen/new": np.sort(rng.uniform(10, 11, MIN_RESIDUALS - 1)),
        }
    )
    # ceil((n + 1) * level)-th smallest: 199 residuals, level 0.9 -> the 180th
    assert cal.quantile("seen/new", 0.9) == big[179]
    group = np.array(["seen/new", "seen/new", "seen/new", "unseen/new", "seen/train"])
    half, used = cal.half_widths(0.9, group, np.array(["A", "B", "C", "X", "A"]))
    assert used.tolist() == ["seen/new@A", "seen/new", "seen/new", POOLED, POOLED]
    assert half[1] == half[2] == big[179]
    assert half[3] == cal.quantile(POOLED, 0.9)
    # a level the residuals cannot support is a one-line error
    with pytest.raises(HistexprError, match="calibration residuals"):
        Calibration({"seen/new": big[:5]}).half_widths(0.9, group[:1])


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1])
def test_level_is_checked(level):
    with pytest.raises(HistexprError, match=r"in \(0, 1\)"):
        check_level(level)


def test_final_model_is_unchanged_by_intervals(tmp_path):
    from histexpr.estimators import load_estimator
    from histexpr.workflows import train_model

    data = make_planted(n_genes=120, cells=("E003", "E004", "E005"))
    write_h5(data, tmp_path / "d.h5")
    for name, flag in (("plain", False), ("cal", True)):
        train_model(tmp_path / "d.h5", tmp_path / name, "ridge", intervals=flag, log=lambda s: s)
    a = load_estimator(tmp_path / "plain").predict(data)
    b = load_estimator(tmp_path / "cal").predict(data)
    np.testing.assert_array_equal(a, b)
    cal = load_calibration(tmp_path / "cal")
    assert {"seen/new", "unseen/known", "unseen/new"} <= set(cal.residuals)
    with pytest.raises(HistexprError, match="--intervals"):
        load_calibration(tmp_path / "plain")
    # the report of a calibrated model has the section, that of the other none
    from histexpr.report import write_report

    html = write_report(tmp_path / "cal").read_text()
    assert "Prediction intervals" in html and "unseen/new" in html
    # with the estimated coverage per category (one half calibrates, the other is scored)
    assert "coverage should reach the nominal 90%" in html
    assert "Prediction intervals" not in write_report(tmp_path / "plain").read_text()


def test_two_cell_types_are_noted_and_fall_back_to_pooled():
    data = make_planted(n_genes=200, cells=("A", "B"))
    cal = _calibrated("ridge", data)
    assert set(cal.residuals) == {"seen/new", "seen/new@A", "seen/new@B"}
    assert any("not calibrated" in n for n in cal.notes)
    _, used = cal.half_widths(0.9, np.array(["unseen/new"]))
    assert used.tolist() == [POOLED]


def test_cli_predict_and_evaluate_intervals(sim, tmp_path, capsys):
    out = tmp_path / "p.parquet"
    assert run_cli("predict", sim / "ridge", sim / "test.h5", "-o", out, "--interval", 0.9) == 0
    df = pd.read_parquet(out)
    assert list(df.columns[:5]) == ["cell", "gene", "prediction", "lower", "upper"]
    assert (df.lower < df.prediction).all() and (df.prediction < df.upper).all()
    # unseen cell type and new genes get their own widths
    width = (df.upper - df.lower).groupby(df.cell == TEST_CELL).mean()
    assert width[True] != width[False]
    csv = tmp_path / "p.csv"
    assert run_cli("predict", sim / "ridge", sim / "test.h5", "-o", csv, "--interval", 0.8) == 0
    assert {"lower", "upper"} <= set(pd.read_csv(csv).columns)
    capsys.readouterr()
    ev = tmp_path / "ev.csv"
    assert run_cli("evaluate", sim / "ridge", sim / "test.h5", "-o", ev, "--no-progress") == 0
    text = capsys.readouterr().out
    assert "prediction intervals" in text and "coverage" in text
    table = pd.read_csv(tmp_path / "ev.intervals.csv")
    assert set(table.columns) == {"group", "level", "n", "coverage", "mean_width"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--interval", "1.5"], "in (0, 1)"),
        (["--interval", "0.9", "--format", "submission"], "tidy format"),
    ],
)
def test_cli_interval_errors_are_one_line(sim, tmp_path, capsys, args, needle):
    code = run_cli("predict", sim / "ridge", sim / "test.h5", "-o", tmp_path / "p.csv", *args)
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_uncalibrated_model_says_how_to_get_one(tmp_path, capsys):
    data = make_planted(n_genes=60, cells=("E003", "E004"))
    write_h5(data, tmp_path / "d.h5")
    assert run_cli("train", tmp_path / "d.h5", "--model", "ridge", "-o", tmp_path / "m") == 0
    capsys.readouterr()
    code = run_cli("predict", tmp_path / "m", tmp_path / "d.h5", "-o", tmp_path / "p.csv",
                   "--interval", "0.9")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "histexpr train ... --intervals" in err
    assert len(err.strip().splitlines()) == 1


def test_differential_kind_intervals(tmp_path, capsys):
    data = make_planted(n_genes=300, cells=("E003", "E004", "E005", "E006"), seed=4)
    write_h5(data, tmp_path / "d.h5")
    m = tmp_path / "diff"
    assert run_cli("train", tmp_path / "d.h5", "--model", "diff-ridge", "-o", m,
                   "--intervals", "--valid-fraction", "0.3") == 0  # fmt: skip
    cal = load_calibration(m)
    assert {"seen/new", "unseen/known", "unseen/new"} <= set(cal.residuals)
    out = tmp_path / "lfc.csv"
    assert run_cli("predict", m, tmp_path / "d.h5", "--pair", "E003:E004", "-o", out,
                   "--interval", "0.9") == 0  # fmt: skip
    df = pd.read_csv(out)
    assert (df.lower <= df.predicted_lfc).all() and (df.predicted_lfc <= df.upper).all()
    capsys.readouterr()
    assert run_cli("evaluate", m, tmp_path / "d.h5", "--pair", "E003:E004") == 0
    assert "coverage" in capsys.readouterr().out


def test_no_validation_genes_calibrate_a_copy_and_damage_is_caught(tmp_path):
    from histexpr.workflows import train_model

    data = make_planted(n_genes=200, cells=("E003", "E004", "E005"))
    write_h5(data, tmp_path / "d.h5")
    m = tmp_path / "m"
    train_model(tmp_path / "d.h5", m, "ridge", valid_fraction=0, intervals=True, log=print)
    cal = load_calibration(m)
    assert len(cal.residuals["seen/new"]) == round(0.2 * 200) * 3
    assert any("copy fitted without" in n for n in cal.notes)
    # the calibration is checksummed with the rest of the model directory
    path = m / "calibration.npz"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(HistexprError, match=r"calibration\.npz: damaged"):
        load_calibration(m)
