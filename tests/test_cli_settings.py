"""``train --help`` lists every model kind; ``--show-settings`` prints every field of a kind."""

from __future__ import annotations

import pytest

from histexpr.cli import main
from histexpr.cli.models import KIND_NAMES
from histexpr.estimators import KINDS, settings


def test_help_lists_exactly_the_registered_kinds():
    assert set(KIND_NAMES) == set(KINDS)


@pytest.mark.parametrize("kind", ["ridge", "convnet", "ensemble"])
def test_show_settings_prints_every_field(kind, capsys):
    try:
        main(["train", "--model", kind, "--show-settings"])
    except SystemExit as exc:  # a successful typer command may also exit 0
        assert exc.code in (0, None)
    out = capsys.readouterr().out
    fields = settings(kind)
    assert fields
    for s in fields:
        assert s.name in out


def test_show_settings_of_unknown_kind_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "no-such-kind", "--show-settings"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "unknown model kind" in err and len(err.splitlines()) == 1


def test_train_without_data_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "ridge"])
    assert exc.value.code == 2
    assert "DATA" in capsys.readouterr().err
