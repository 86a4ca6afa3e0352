"""Typed experiment configurations: build a dataclass from TOML / ``--set`` values and validate it.

Each experiment declares its configuration as a dataclass. Field types give the parsing rule
(``int``, ``float``, ``bool``, ``str``, ``Literal[...]`` for choices, ``tuple[int, ...]`` /
``list[float]`` for sequences, ``X | None`` for optional values); ``field(metadata=...)`` may add
``min``, ``max``, ``min_exclusive``, ``max_exclusive``, ``allow_empty`` (sequences need at least
one value otherwise) and ``help``. Numbers must be finite. A config class may define
``validate(self)`` for rules that involve several fields (raise ``ValueError``). Every problem is
reported as a :class:`ConfigError` that names the key and what it accepts, before any work starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

#: Largest integer a config value may hold: what numpy and torch index with (int64).
LARGEST_INT = 2**63 - 1


class ConfigError(ValueError):
    """A configuration value, key or file that cannot be used; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One configuration key as shown by ``plastix list``."""

    name: str
    type_name: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=False)


def config_fields(cls: type) -> list[FieldInfo]:
    """Describe the keys of a config dataclass (name, type, default, help, choices)."""
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        choices = typing.get_args(tp) if typing.get_origin(tp) is Literal else None
        out.append(FieldInfo(f.name, _type_name(tp), default, f.metadata.get("help", ""), choices))
    return out


def _parse_scalar(key: str, tp: Any, value: Any) -> Any:
    """Convert one value (a TOML value or a ``--set`` string) to the declared type ``tp``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:  # a bool (TOML true) is not the number 1, as for int keys
            same_kind = isinstance(value, bool) == isinstance(choice, bool)
            if (value == choice and same_kind) or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(
            f"{key}: {value!r} is not a valid choice; valid choices: "
            + ", ".join(repr(c) for c in choices)
        )
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _parse_scalar(key, arg, value)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors) or f"{key}: cannot parse {value!r}")
    if origin in (tuple, list):
        args = typing.get_args(tp)
        item_tp = args[0] if args else str
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{key}: cannot read {value!r} as a list ({exc})") from None
            else:
                value = [v for v in text.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(
                f"{key}: expected a list of {_type_name(item_tp)} (e.g. 1,2,3), got {value!r}"
            )
        items = [_parse_scalar(key, item_tp, v) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, numbers.Integral):  # numpy integers too (a grid from np.arange)
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        number = None
        if isinstance(value, numbers.Real):  # numpy numbers too
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{key}: {value!r} is not a finite number; give a finite value")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported config type {_type_name(tp)}")


def _check_not_empty(key: str, tp: Any, value: Any, meta: Mapping[str, Any]) -> None:
    if not isinstance(value, tuple | list) or value or meta.get("allow_empty"):
        return
    item_tp = (typing.get_args(tp) or (str,))[0]
    if typing.get_origin(item_tp) is Literal:
        choices = ", ".join(str(c) for c in typing.get_args(item_tp))
        raise ConfigError(f"{key}: empty; choose at least one of {choices}")
    raise ConfigError(f"{key}: empty; give at least one value, e.g. --set {key}=V1,V2")


def _check_bounds(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    values = value if isinstance(value, tuple | list) else (value,)
    for v in values:
        if v is None or not isinstance(v, int | float):
            continue
        if isinstance(v, int) and not -LARGEST_INT <= v <= LARGEST_INT:
            raise ConfigError(
                f"{key}: {v!r} is out of range; integers must lie within +/-(2**63 - 1)"
            )
        if "min" in meta:
            lo = meta["min"]
            if v < lo or (meta.get("min_exclusive") and v == lo):
                op = ">" if meta.get("min_exclusive") else ">="
                raise ConfigError(f"{key}: {v!r} is out of range; it must be {op} {lo}")
        if "max" in meta:
            hi = meta["max"]
            if v > hi or (meta.get("max_exclusive") and v == hi):
                op = "<" if meta.get("max_exclusive") else "<="
                raise ConfigError(f"{key}: {v!r} is out of range; it must be {op} {hi}")


def build_config(cls: type, overrides: Mapping[str, Any] | None = None, *, where: str = "") -> Any:
    """Instantiate config dataclass ``cls`` with ``overrides`` parsed, range-checked and validated.

    Raises :class:`ConfigError` naming the first bad key, its accepted values, and the valid keys.
    """
    overrides = dict(overrides or {})
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
            f"{' for ' + where if where else ''}; valid keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in overrides.items():
        parsed = _parse_scalar(name, hints[name], value)
        _check_not_empty(name, hints[name], parsed, fields[name].metadata)
        _check_bounds(name, parsed, fields[name].metadata)
        kwargs[name] = parsed
    try:
        cfg = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    for name, f in fields.items():
        if name not in kwargs:
            _check_not_empty(name, hints[name], getattr(cfg, name), f.metadata)
            _check_bounds(name, getattr(cfg, name), f.metadata)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return cfg


def parse_set_options(items: list[str] | None) -> dict[str, str]:
    """Turn ``["key=value", ...]`` from ``--set`` into a dict; a malformed item is a ConfigError."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set epochs=3")
        if key in out:
            raise ConfigError(
                f"--set {key}: given twice ({out[key]!r} and {value!r}); give it once"
            )
        out[key] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML file of config keys (top level, or under a ``[config]`` table)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder; pass a .toml file")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass an existing .toml file")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    if isinstance(data.get("config"), dict):
        outside = sorted(set(data) - {"config"})
        if outside:
            raise ConfigError(
                f"config file {str(path)!r}: keys {', '.join(map(repr, outside))} are outside "
                "its [config] table and would be ignored; move them into [config]"
            )
        data = data["config"]
    return data


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-serialisable dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))
