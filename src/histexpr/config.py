"""Frozen-dataclass configuration serialised to JSON.

Every configurable object in histexpr is described by a frozen dataclass. The
helpers here turn such a dataclass into JSON and back, and apply overrides from
the command line (``field=value`` strings) with type checking.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

from histexpr.errors import ConfigError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict:
    """Return a JSON-ready dict of a (possibly nested) config dataclass."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, name) for v in value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, name)
            except (ConfigError, ValueError, TypeError):
                continue
        raise ConfigError(f"config field {name!r}: cannot interpret {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"config field {name!r}: expected true/false, got {value!r}")
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"config field {name!r}: expected {tp.__name__}, got {value!r}"
            ) from None
    return value


def from_dict(cls: type[T], data: dict) -> T:
    """Build the dataclass ``cls`` from a dict, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(hints[k], v, k) for k, v in data.items()}
    return cls(**kwargs)


def parse_overrides(overrides: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    """``["field=value", ...]`` (as given on the command line) or a dict -> dict."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form field=value")
        k, v = item.split("=", 1)
        parsed[k.strip()] = v.strip()
    return parsed


def override(cfg: T, overrides: dict[str, Any] | list[str] | None) -> T:
    """Return a copy of ``cfg`` with fields replaced.

    Parameters
    ----------
    cfg : dataclass instance
    overrides : dict or list of "field=value" strings
        Values are coerced to the field's declared type (tuples from
        comma-separated strings).
    """
    if not overrides:
        return cfg
    overrides = parse_overrides(overrides)
    data = to_dict(cfg)
    names = set(data)
    unknown = set(overrides) - names
    if unknown:
        raise ConfigError(
            f"unknown {type(cfg).__name__} field(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(names))}"
        )
    data.update(overrides)
    return from_dict(type(cfg), data)


def save_json(cfg: Any, path: str | os.PathLike) -> None:
    """Write a config dataclass (or plain dict) to ``path`` as indented JSON."""
    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_json(cls: type[T], path: str | os.PathLike) -> T:
    """Read a config dataclass from a JSON file written by :func:`save_json`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    return from_dict(cls, data)
