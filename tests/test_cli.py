"""End-to-end tests of the command line (baseline models; neural ones in test_train)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import make_planted, run_cli
from histexpr.data.hdf5 import write_h5


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    ds = make_planted(n_genes=150)
    write_h5(ds, d / "train.h5")
    test = make_planted(n_genes=150, cells=("E003", "E071"), seed=1)
    write_h5(test, d / "test.h5")
    write_h5(test.without_target(), d / "eval.h5")
    return d


def test_train_evaluate_predict_round_trip(data_files, tmp_path, capsys):
    model = tmp_path / "ridge"
    assert run_cli("train", data_files / "train.h5", "--model", "ridge", "-o", model) == 0
    assert (model / "model.json").is_file()
    assert (
        run_cli(
            "evaluate", model, data_files / "test.h5", "--unseen", "E071", "-o", tmp_path / "m.csv"
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "m.csv")
    # groups from the model's record: E003 seen, E071 unseen; its genes known or held out
    assert {"all", "seen/new", "unseen/known", "unseen/new"} <= set(table.group)
    assert (table.r2 > 0.5).all()
    sub = tmp_path / "sub.csv"
    assert (
        run_cli(
            "predict",
            model,
            data_files / "eval.h5",
            "-o",
            sub,
            "--memory",
            "100k",
            "--format",
            "submission",
        )
        == 0
    )
    df = pd.read_csv(sub)
    assert list(df.columns) == ["id", "expression"]
    assert len(df) == 300 and df.id.is_unique
    assert df.id.iloc[0].startswith("E003_ENSG")
    # streaming in small blocks gives the same predictions as one block
    sub2 = tmp_path / "sub2.csv"
    assert (
        run_cli("predict", model, data_files / "eval.h5", "-o", sub2, "--format", "submission") == 0
    )
    np.testing.assert_allclose(pd.read_csv(sub2).expression, df.expression)


def test_info_prints_summary(data_files, capsys):
    assert run_cli("info", data_files / "train.h5") == 0
    out = capsys.readouterr().out
    assert "E003" in out and "H3K4me3" in out


def test_user_errors_are_one_line_exit_2(tmp_path, capsys):
    assert run_cli("info", tmp_path / "missing.h5") == 2
    err = capsys.readouterr().err
    assert "missing.h5" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert run_cli("train", tmp_path / "missing.h5", "--model", "nope", "-o", tmp_path / "m") == 2


def test_unknown_option_exits_2():
    assert run_cli("train", "--bogus") == 2


def test_predict_refuses_model_dir_that_is_not_a_model(data_files, tmp_path, capsys):
    assert run_cli("predict", tmp_path, data_files / "eval.h5", "-o", tmp_path / "x.csv") == 2
    assert "not a model directory" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_debug_flag_shows_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "histexpr", "--debug", "info", str(tmp_path / "missing.h5")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "histexpr", "info", str(tmp_path / "missing.h5")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_course_npz_round_trip_to_submission(tmp_path):
    """Issue #2's done condition: writer-made course npz -> convert -> train -> predict."""
    from histexpr.data.npz import write_npz
    from histexpr.data.submission import read_submission

    assert (
        run_cli(
            "simulate", "-o", tmp_path / "train.npz", "--cells", "E003,E004", "--n-genes", "120"
        )
        == 0
    )
    assert run_cli("convert", tmp_path / "train.npz", tmp_path / "train.h5", "--no-progress") == 0
    assert (
        run_cli(
            "train",
            tmp_path / "train.h5",
            "--model",
            "lightgbm",
            "--set",
            "n_estimators=20",
            "-o",
            tmp_path / "lgb",
        )
        == 0
    )
    # an eval file: same layout, expression column meaningless (zeros)
    test = make_planted(n_genes=40, cells=("E071",), seed=3)
    test.gene = np.array([f"ENSG{i:011d}" for i in range(1, 41)])
    write_npz(test.without_target(), tmp_path / "eval.npz")
    assert (
        run_cli(
            "predict",
            tmp_path / "lgb",
            tmp_path / "eval.npz",
            "-o",
            tmp_path / "sub.csv",
            "--format",
            "submission",
        )
        == 0
    )
    sub = read_submission(tmp_path / "sub.csv")
    assert len(sub) == 40
    assert sub.id.iloc[0] == "E071_1"  # course ids are integers: {cell}_{gene id}
    assert np.isfinite(sub.expression).all()


def test_simulate_records_unseen_cells(tmp_path):
    from histexpr.data.hdf5 import open_h5

    out = tmp_path / "sim.h5"
    assert (
        run_cli(
            "simulate", "-o", out, "--cells", "E003,E071,E084", "--n-genes", "50", "--no-progress"
        )
        == 0
    )
    with open_h5(out) as h:
        assert h.meta["unseen_cells"] == ["E071", "E084"]
        assert h.n == 150
    assert run_cli("simulate", "-o", out, "--cells", "E003", "--unseen", "E071") == 2


def test_featurize_bigwig_through_cli(tmp_path):
    pyBigWig = pytest.importorskip("pyBigWig")
    from histexpr.data.dataset import MARKS
    from histexpr.data.hdf5 import read_h5

    tss = tmp_path / "tss.tsv"
    tss.write_text(
        "chrom\tstart\tend\tstrand\tgene_id\tname\n"
        "chr1\t20000\t20001\t+\tENSG1\tA\nchr1\t40000\t40001\t-\tENSG2\tB\n"
    )
    specs = []
    for i, mark in enumerate(MARKS):
        path = tmp_path / f"{mark}.bw"
        bw = pyBigWig.open(str(path), "w")
        bw.addHeader([("chr1", 100000)])
        # constant coverage i+1 over [10000, 50000): every bin of both genes sums to 100*(i+1)
        bw.addEntries(["chr1"], [10000], ends=[50000], values=[float(i + 1)])
        bw.close()
        specs += ["--mark", f"{mark}={path}"]
    out = tmp_path / "f.h5"
    assert (
        run_cli("featurize", "-o", out, "--tss", tss, "--cell", "E999", *specs, "--no-progress")
        == 0
    )
    ds = read_h5(out)
    assert ds.X.shape == (2, 5, 100) and not ds.has_target
    for i in range(5):
        np.testing.assert_allclose(ds.X[:, i], 100.0 * (i + 1))


def test_predict_streams_within_memory_budget(tmp_path, monkeypatch):
    """A file 100x the budget is predicted block by block, never loaded whole."""
    import tracemalloc

    from histexpr.data.hdf5 import H5Dataset
    from histexpr.workflows import predict_file, rows_for_budget

    sizes = []
    original_read = H5Dataset.read

    def recording_read(self, index=None):
        block = original_read(self, index)
        sizes.append(len(block))
        return block

    ds = make_planted(n_genes=10000, cells=("E003", "E004"))  # 20,000 examples, 40 MB of X
    write_h5(ds, tmp_path / "big.h5")
    assert run_cli("train", tmp_path / "big.h5", "--model", "ridge", "-o", tmp_path / "m") == 0
    budget = 400_000
    rows = rows_for_budget(budget, 5, 100)
    assert rows < 100
    monkeypatch.setattr(H5Dataset, "read", recording_read)
    tracemalloc.start()
    n = predict_file(tmp_path / "m", tmp_path / "big.h5", tmp_path / "p.csv", memory_budget=budget)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 20000
    assert sum(sizes) == 20000 and max(sizes) <= rows
    # peak: one block plus the outputs (ids and predictions), far below X itself
    assert peak < 0.4 * ds.X.nbytes
    whole = tmp_path / "p2.csv"
    predict_file(tmp_path / "m", tmp_path / "big.h5", whole, memory_budget="1GB")
    np.testing.assert_allclose(
        pd.read_csv(whole).prediction,
        pd.read_csv(tmp_path / "p.csv").prediction,
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "kind, extra",
    [
        ("ridge", []),
        (
            "convnet",
            ["--set", "channels=8,8,8,8,8,8,8,8", "--set", "epochs=1", "--set", "progress=false"],
        ),
    ],
)
def test_train_records_heldout_gene_metrics(kind, extra, data_files, tmp_path):
    import json

    out = tmp_path / kind
    assert run_cli("train", data_files / "train.h5", "--model", kind, "-o", out, *extra) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    held = metrics["heldout_genes"]
    assert held["n"] > 0 and np.isfinite(held["mse"])
