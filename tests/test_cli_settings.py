"""``train --help`` lists every model kind; ``--show-settings`` prints every field of a kind."""

from __future__ import annotations

import re

import pytest

from histexpr.cli import main
from histexpr.estimators import KINDS, settings


def test_help_lists_exactly_the_registered_kinds(capsys):
    # the CLI keeps no copy of the kinds: --help reads them from the table of kinds
    try:
        main(["train", "--help"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    text = re.sub(r"[\s│]+", "", capsys.readouterr().out)  # the help panel's wrapping gone
    listed = text.split("Modelkind:", 1)[1].split(";", 1)[0]
    assert set(listed.split(",")) == set(KINDS)


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
