"""Frozen-dataclass configuration serialised to JSON.

Every configurable object in histexpr is described by a frozen dataclass. The
helpers here turn such a dataclass into JSON and back, apply overrides from the
command line (``field=value`` strings) with type checking, route ``--set`` names
onto a group of nested configs (:func:`resolve_overrides`, the one resolver),
validate fields (:func:`check_range`, :func:`check_choice`) and list every field
with its default and meaning (:func:`describe`).
"""

from __future__ import annotations

import dataclasses
import json
import math
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


def plain_json(value: Any) -> Any:
    """``value`` as standard JSON data: NaN and infinities become ``null``, numpy
    scalars and arrays plain numbers and lists, tuples lists."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy
        return plain_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value: Any, indent: int | None = 2, sort_keys: bool = True) -> str:
    """Standard JSON text of ``value`` (see :func:`plain_json`), ending with a newline."""
    return json.dumps(plain_json(value), indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"


def save_json(cfg: Any, path: str | os.PathLike) -> None:
    """Write a config dataclass (or plain dict) to ``path`` as indented standard JSON."""
    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    Path(path).write_text(json_text(data))


def load_json(cls: type[T], path: str | os.PathLike) -> T:
    """Read a config dataclass from a JSON file written by :func:`save_json`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    return from_dict(cls, data)


def check_range(
    name: str,
    value,
    low=None,
    high=None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Refuse a number outside ``[low, high]`` (open ends optional) in one line naming ``name``."""
    bad = isinstance(value, bool) or not isinstance(value, int | float) or value != value
    if not bad and low is not None:
        bad = value <= low if low_open else value < low
    if not bad and high is not None:
        bad = value >= high if high_open else value > high
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        allowed = " and ".join(p for p in (lo, hi) if p) or "a number"
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")


def check_choice(name: str, value, choices) -> None:
    """Refuse a value that is not one of ``choices`` in one line naming ``name``."""
    if value not in tuple(choices):
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def leaf_paths(cfg: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths (as tuples) of every non-dataclass field of a nested config instance."""
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.extend(leaf_paths(value, (*prefix, f.name)))
        else:
            out.append((*prefix, f.name))
    return out


def _match(name: str, leaves: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    parts = tuple(name.split("."))
    return [p for p in leaves if p[-len(parts) :] == parts]


def find_setting(
    configs: dict[str, Any], name: str, aliases: dict[str, str] | None = None
) -> tuple[str, ...] | None:
    """The full path (config key first) that ``name`` means, or None when it means none.

    Raises
    ------
    ConfigError
        ``name`` matches several fields (the message names the candidates).
    """
    target = (aliases or {}).get(name, name)
    leaves = [(key, *p) for key, cfg in configs.items() for p in leaf_paths(cfg)]
    found = _match(target, leaves)
    if len(found) > 1:
        names = ", ".join(".".join(p) for p in found)
        raise ConfigError(f"ambiguous setting {name!r}: one of {names} (use the dotted name)")
    return found[0] if found else None


def resolve_overrides(
    configs: dict[str, Any],
    overrides: dict[str, Any] | list[str] | None,
    aliases: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Apply ``--set`` overrides to a group of (nested) config dataclasses.

    Parameters
    ----------
    configs : dict of str to dataclass instance
        E.g. ``{"model": ConvNetConfig(), "train": TrainConfig()}``.
    overrides : dict or list of "name=value" strings
        A name is a field's flat name (``lr``), or dotted with any tail of its
        path (``optim.lr``, ``train.optim.lr``). Values are coerced to the field's
        type; the rebuilt configs validate themselves.
    aliases : dict of str to str, optional
        Old flat names -> the (dotted) name they mean now; checked first.

    Returns
    -------
    dict of str to dataclass instance
        The same keys; untouched configs are returned as given.

    Raises
    ------
    ConfigError
        An unknown name (listing the known ones), an ambiguous flat name (naming
        the candidates), a value of the wrong type or out of range.
    """
    parsed = parse_overrides(overrides)
    if not parsed:
        return dict(configs)
    updates: dict[str, dict] = {}
    for name, value in parsed.items():
        path = find_setting(configs, name, aliases)
        if path is None:
            leaves = [p for cfg in configs.values() for p in leaf_paths(cfg)]
            known = sorted({p[-1] for p in leaves} | set(aliases or {}))
            raise ConfigError(f"unknown setting {name!r}; known: {', '.join(known)}")
        node = updates.setdefault(path[0], to_dict(configs[path[0]]))
        for part in path[1:-1]:
            node = node[part]
        node[path[-1]] = value
    out = dict(configs)
    for key, data in updates.items():
        out[key] = from_dict(type(configs[key]), data)
    return out


class Setting(typing.NamedTuple):
    """One configurable field: dotted name, default and a one-line meaning."""

    name: str
    default: Any
    help: str


def _docstring_help(cls) -> dict[str, str]:
    """``name : type`` + indented text entries of an "Attributes" docstring section."""
    doc = (cls.__doc__ or "").splitlines()
    out: dict[str, str] = {}
    current = None
    in_attrs = False
    for line in doc:
        text = line.strip()
        if text == "Attributes":
            in_attrs = True
            continue
        if not in_attrs or set(text) == {"-"}:
            continue
        if text and not line.startswith(" " * 8) and ":" in text:
            names, current = text.split(":", 1)[0], []
            for n in names.split(","):
                out[n.strip()] = current  # type: ignore[assignment]
        elif text and current is not None and not text.endswith(":"):
            current.append(text)
        elif not text and current:
            current = None
    return {k: " ".join(v).split(". ")[0].rstrip(".") for k, v in out.items()}


def describe(cfg: Any, prefix: str = "") -> list[Setting]:
    """Every leaf field of a (nested) config with its default and meaning.

    The meaning comes from the field's ``metadata["help"]``, else from the
    class docstring's "Attributes" section, else it is empty.
    """
    out = []
    docs: dict[str, str] = {}
    for cls in reversed(type(cfg).__mro__):
        docs.update(_docstring_help(cls))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.extend(describe(value, f"{name}."))
            continue
        help_text = f.metadata.get("help") or docs.get(f.name, "")
        out.append(Setting(name, list(value) if isinstance(value, tuple) else value, help_text))
    return out
