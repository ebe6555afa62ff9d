"""Tests for the submission CSV (histexpr.data.submission)."""

import numpy as np
import pandas as pd
import pytest

from histexpr.data.submission import read_submission, submission_ids, write_submission
from histexpr.errors import DataError


def test_round_trip_exact(tmp_path):
    rng = np.random.default_rng(0)
    pred = rng.normal(size=6)
    cell = ["E003"] * 3 + ["E071"] * 3
    gene = ["3", "5", "419"] * 2
    path = write_submission(pred, cell, gene, tmp_path / "sub.csv")
    text = path.read_text().splitlines()
    assert text[0] == "id,expression" and text[1].startswith("E003_3,")
    df = read_submission(path, expected_ids=submission_ids(cell, gene))
    assert df["id"].tolist()[3] == "E071_3"
    np.testing.assert_array_equal(df["expression"].to_numpy(), pred)
    assert df["cell"].tolist() == cell and df["gene"].tolist() == gene


def test_write_refuses_nan_and_duplicates(tmp_path):
    path = tmp_path / "s.csv"
    with pytest.raises(
        DataError, match=r"s\.csv \[expression\]: NaN or infinite prediction for id E003_5"
    ):
        write_submission([1.0, np.nan], ["E003", "E003"], ["3", "5"], path)
    with pytest.raises(DataError, match=r"s\.csv \[id\]: id E003_3 occurs more than once"):
        write_submission([1.0, 2.0], ["E003", "E003"], ["3", "3"], path)
    with pytest.raises(DataError, match="3 predictions for 2 ids"):
        write_submission([1.0, 2.0, 3.0], ["E003", "E003"], ["3", "5"], path)
    with pytest.raises(DataError, match="contains '_'"):
        write_submission([1.0], ["E_3"], ["3"], path)
    assert not path.exists()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("id,pred\nE003_3,1.0\n", "columns must be ['id', 'expression']"),
        ("id,expression\nE003_3,1.0\nE003_3,2.0\n", "id E003_3 occurs more than once"),
        ("id,expression\nE003_3,\n", "NaN or infinite prediction"),
        ("id,expression\nE003_3,abc\n", "non-numeric prediction"),
        ("id,expression\nE0033,1.0\n", "'E0033' is not of the form cell_gene"),
        ("", "malformed CSV"),
    ],
)
def test_read_rejects_malformed(tmp_path, text, needle):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError) as e:
        read_submission(path)
    assert str(path) in str(e.value) and needle in str(e.value)


def test_expected_ids(tmp_path):
    path = write_submission([1.0, 2.0], ["E003", "E004"], ["3", "3"], tmp_path / "s.csv")
    with pytest.raises(DataError, match=r"1 expected id\(s\) missing \(first E005_3\)"):
        read_submission(path, expected_ids=["E003_3", "E004_3", "E005_3"])
    with pytest.raises(DataError, match=r"1 unexpected id\(s\) \(first E004_3\)"):
        read_submission(path, expected_ids=["E003_3"])
    assert isinstance(read_submission(path), pd.DataFrame)


@pytest.mark.parametrize("name", ["pred.csv", "pred.parquet"])
def test_tidy_round_trip_exact_any_cell_id(tmp_path, name):
    from histexpr.data.submission import prediction_table, read_predictions, write_predictions

    rng = np.random.default_rng(1)
    pred = rng.normal(size=4)
    cell = ["my_cell", "my_cell", "E003", "E003"]
    gene = ["ENSG00000000003", "ENSG00000000005"] * 2
    table = prediction_table(pred, cell, gene, flags={"atlas_used": [True, False, True, True]})
    back = read_predictions(write_predictions(table, tmp_path / name))
    assert list(back.columns) == ["cell", "gene", "prediction", "atlas_used"]
    assert back.cell.tolist() == cell and back.gene.tolist() == gene
    np.testing.assert_array_equal(back.prediction.to_numpy(), pred)  # full precision
    assert back.atlas_used.tolist() == [True, False, True, True]
    # the same cell id has no place in the course format
    with pytest.raises(DataError, match="contains '_'"):
        submission_ids(cell, gene)


def test_tidy_refuses_nan_and_repeated_examples():
    from histexpr.data.submission import prediction_table

    with pytest.raises(DataError, match=r"\[E003\]: NaN or infinite prediction for gene g2"):
        prediction_table([1.0, np.inf], ["E003", "E003"], ["g1", "g2"])
    with pytest.raises(DataError, match=r"\[E003\]: gene g1 occurs more than once"):
        prediction_table([1.0, 2.0], ["E003", "E003"], ["g1", "g1"])
    # the same gene in two cell types is two examples
    assert len(prediction_table([1.0, 2.0], ["E003", "E004"], ["g1", "g1"])) == 2
