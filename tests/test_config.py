from dataclasses import dataclass

import pytest

from histexpr.config import from_dict, load_json, override, save_json, to_dict
from histexpr.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    a: int = 1


@dataclass(frozen=True)
class Cfg:
    channels: tuple[int, ...] = (64, 128)
    lr: float = 1e-3
    name: str = "x"
    flag: bool = False
    limit: int | None = None
    inner: Inner = Inner()


def test_json_round_trip(tmp_path):
    cfg = Cfg(channels=(1, 2, 3), lr=0.5, flag=True, limit=7, inner=Inner(4))
    save_json(cfg, tmp_path / "c.json")
    assert load_json(Cfg, tmp_path / "c.json") == cfg
    assert from_dict(Cfg, to_dict(cfg)) == cfg


def test_override_coerces_strings_like_cli_flags():
    cfg = override(Cfg(), ["channels=8,16,32", "lr=0.1", "flag=true", "limit=none"])
    assert cfg.channels == (8, 16, 32) and cfg.lr == 0.1 and cfg.flag is True and cfg.limit is None
    assert override(Cfg(), {"limit": "5"}).limit == 5


@pytest.mark.parametrize(
    "bad, message",
    [
        (["nope=1"], "unknown"),
        (["lr=fast"], "expected float"),
        (["flag=maybe"], "true/false"),
        (["lr"], "field=value"),
    ],
)
def test_bad_overrides_are_one_line_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        override(Cfg(), bad)


def test_unreadable_json_is_config_error(tmp_path):
    p = tmp_path / "c.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_json(Cfg, p)
