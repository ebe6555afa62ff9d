import json

import pytest

from histexpr.data.dataset import MARKS
from histexpr.errors import HistexprError
from histexpr.estimators.bundle import BUNDLE_FORMAT_VERSION, check_input, read_header, write_header


def test_header_round_trip_records_versions(tmp_path):
    write_header(tmp_path, "ridge", {"alpha": 1.0}, MARKS, 100)
    h = read_header(tmp_path)
    assert h.kind == "ridge" and h.config == {"alpha": 1.0} and h.marks == MARKS and h.n_bins == 100
    assert h.format_version == BUNDLE_FORMAT_VERSION
    assert {"python", "numpy", "torch"} <= set(h.versions)


def test_newer_format_gives_clear_message(tmp_path):
    write_header(tmp_path, "ridge", {}, MARKS, 100)
    data = json.loads((tmp_path / "model.json").read_text())
    data["format_version"] = BUNDLE_FORMAT_VERSION + 1
    (tmp_path / "model.json").write_text(json.dumps(data))
    with pytest.raises(HistexprError, match="newer histexpr"):
        read_header(tmp_path)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(HistexprError, match="not a model directory"):
        read_header(tmp_path)
    (tmp_path / "model.json").write_text("{")
    with pytest.raises(HistexprError, match="unreadable"):
        read_header(tmp_path)


def test_check_input_refuses_other_marks_or_bins(tmp_path):
    h = write_header(tmp_path, "ridge", {}, MARKS, 100)
    check_input(h, MARKS, 100)
    with pytest.raises(HistexprError, match="marks"):
        check_input(h, MARKS[::-1], 100)
    with pytest.raises(HistexprError, match="bins"):
        check_input(h, MARKS, 50)
