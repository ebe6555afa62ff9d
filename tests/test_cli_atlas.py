"""The atlas kinds from the command line, with each atlas source (via ``--set``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_planted, run_cli
from histexpr.data.hdf5 import write_h5
from histexpr.data.reference import load_expression


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_atlas")
    genes = load_expression().index[:60].to_numpy()
    ds = make_planted(n_genes=60, cells=("E003", "E004", "E005", "E071"), seed=2)
    ds.gene = np.tile(genes, 4)
    write_h5(ds.select_cells(["E071"], exclude=True), d / "train.h5")
    write_h5(ds.select_cells(["E071"]), d / "test.h5")
    table = load_expression().iloc[:60, :5]  # transformed values of 5 Roadmap cells
    table.to_csv(d / "atlas.csv")
    return d


@pytest.mark.parametrize(
    "source",
    [
        [],
        ["--set", "atlas=roadmap"],
        ["--set", "atlas={d}/atlas.csv", "--set", "atlas_values=transformed"],
    ],
)
def test_train_and_predict_with_each_atlas_source(files, tmp_path, source):
    model = tmp_path / "m"
    source = [s.replace("{d}", str(files)) for s in source]
    args = ["train", files / "train.h5", "--model", "atlas-ridge", "-o", model, "--set", "alpha=10"]
    assert run_cli(*args, *source) == 0
    assert (model / "atlas.npz").is_file()
    out = tmp_path / "pred.csv"
    assert run_cli("predict", model, files / "test.h5", "-o", out) == 0
    pred = pd.read_csv(out)
    assert len(pred) == 60 and np.isfinite(pred.select_dtypes("number").to_numpy()).all()


def test_bad_atlas_source_is_a_one_line_error(files, tmp_path, capsys):
    args = ["train", files / "train.h5", "--model", "atlas-ridge", "-o", tmp_path / "m"]
    assert run_cli(*args, "--set", f"atlas={tmp_path}/nope.tsv") == 2
    err = capsys.readouterr().err
    assert "atlas table not found" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "flags",
    [["--atlas", "roadmap"], ["--atlas", "{d}/atlas.csv", "--atlas-values", "transformed"]],
)
def test_atlas_flags_choose_the_source(files, tmp_path, flags):
    model = tmp_path / "m"
    flags = [f.replace("{d}", str(files)) for f in flags]
    args = ["train", files / "train.h5", "--model", "atlas-ridge", "-o", model, "--set", "alpha=10"]
    assert run_cli(*args, *flags) == 0
    with np.load(model / "atlas.npz", allow_pickle=False) as z:
        source, n_cells = str(z["source"]), z["cells"].shape[0]
    assert source == ("roadmap" if flags[1] == "roadmap" else "atlas.csv")
    assert n_cells == (56 if source == "roadmap" else 5)


def test_atlas_flags_are_refused_for_other_kinds_and_missing_tables(files, tmp_path, capsys):
    base = ["train", files / "train.h5", "-o", tmp_path / "m"]
    assert run_cli(*base, "--model", "ridge", "--atlas", "roadmap") == 2
    assert "apply to the atlas kinds" in capsys.readouterr().err
    assert run_cli(*base, "--model", "atlas-ridge", "--atlas", tmp_path / "none.csv") == 2
    err = capsys.readouterr().err
    assert "atlas table not found" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()
