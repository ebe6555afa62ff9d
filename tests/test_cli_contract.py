"""The model contract through the CLI: bin size, target transform, damaged files."""

import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace

import pytest

from conftest import make_planted
from histexpr.cli import main
from histexpr.data.hdf5 import write_h5


def cli(*args) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            return exc.code, err.getvalue()
    return 0, err.getvalue()


@pytest.fixture(scope="module")
def ridge(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contract")
    data = make_planted(60, cells=("E003", "E004"))
    train = write_h5(data, tmp / "train.h5")
    assert cli("train", train, "--model", "ridge", "-o", tmp / "m")[0] == 0
    return tmp, data


@pytest.mark.parametrize(
    "change, command, message",
    [
        ({"meta": {"bin_size": 200}}, "predict", "200-bp bins, the model was trained on 100-bp"),
        ({"target": "label(RPKM > cell median)"}, "evaluate", "differs from the model's"),
    ],
)
def test_data_outside_the_contract_is_one_line(change, command, message, ridge):
    tmp, data = ridge
    other = write_h5(replace(data, **change), tmp / f"{command}.h5")
    out = tmp / f"{command}.csv"
    code, err = cli(command, tmp / "m", other, "-o", out)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_evaluate_on_the_training_target_still_works(ridge):
    tmp, _ = ridge
    code, err = cli("evaluate", tmp / "m", tmp / "train.h5", "-o", tmp / "ok.csv")
    assert code == 0, err
