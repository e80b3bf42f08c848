"""Dataclasses from nested dicts, with every key and type checked and errors that name the key.

Generic on purpose (works for any tree of dataclasses whose leaves are bool/int/float/str and
lists/dicts of them), so the training config stays a plain declaration. Values are converted,
never evaluated: a string that is not a number stays an error, whatever it contains.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError


class ConfigError(UserError, ValueError):
    """A config file or override is invalid; the message names the offending key."""


MAX_CONFIG_BYTES = 1 << 20  # a YAML config is a few KiB


def read_yaml(path: str | Path) -> Any:
    """The parsed YAML of a config file (None when empty); every problem is a one-line ConfigError.

    Why one reader: a FIFO or /dev/zero would block or fill memory, a huge file takes minutes to
    parse, and binary or malformed text raises yaml's own errors; training and preview configs
    must fail the same way.
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_file():  # a device (/dev/zero) or a folder: never read without end
            raise ConfigError(f"cannot read config {path}: not a regular file")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB")
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not UTF-8 text") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None


def to_plain(obj: Any) -> Any:
    if is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def unknown_key(key: str, choices: list[str], prefix: str) -> ConfigError:
    near = difflib.get_close_matches(key, choices, n=1)
    hint = f" (did you mean '{prefix}{near[0]}'?)" if near else ""
    return ConfigError(f"unknown config key '{prefix}{key}'{hint}")


def check_value(value: Any, tp: Any, where: str) -> Any:
    """Return `value` converted to type `tp` or raise ConfigError naming `where`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{where}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key '{where}' must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `2e-4` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{where}' must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if value is None:
            return ""
        raise ConfigError(f"config key '{where}' must be a string, got {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and ("on" if value else "off") in choices:  # YAML 1.1 reads on/off as booleans
            value = "on" if value else "off"
        if isinstance(value, bool) or value not in choices:
            raise ConfigError(f"config key '{where}' must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{where}' must be a list, got {value!r}")
        return [check_value(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, item_tp = typing.get_args(tp)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{where}' must be a mapping, got {value!r}")
        return {str(k): check_value(v, item_tp, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{where}' must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(check_value(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"config key '{where}' must be a list of {len(args)} values, got {list(value)!r}")
        return tuple(check_value(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, args)))
    if origin in (typing.Union, types.UnionType):
        options = [t for t in typing.get_args(tp) if t is not type(None)]
        if len(options) != len(typing.get_args(tp)) - 1 or len(options) != 1:
            raise ConfigError(f"internal: unsupported union type at '{where}'")
        return None if value is None else check_value(value, options[0], where)
    raise ConfigError(f"internal: unsupported type {tp!r} at '{where}'")


def _default(cls: type, name: str) -> Any:
    """The field's default value (None when it has none)."""
    f = next(f for f in fields(cls) if f.name == name)
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def build(cls: type, data: Any, prefix: str, base: Any = None) -> Any:
    """`cls` from the mapping `data`, every key and type checked; unset fields keep `base`'s values
    (or the field defaults). A nested section starts from its field's default, so a section whose
    default is a preset (the degradation recipe) is overridden key by key, not replaced.
    Validation a dataclass does itself (`__post_init__` raising ConfigError with a field path
    relative to the section) gets the section's `prefix`.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or 'top level'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise unknown_key(str(key), names, prefix)
        tp = hints[key]
        if is_dataclass(tp):
            start = getattr(base, key) if base is not None else _default(cls, key)
            kwargs[key] = build(tp, value, f"{prefix}{key}.", start if isinstance(start, tp) else None)
        else:
            kwargs[key] = check_value(value, tp, f"{prefix}{key}")
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}") from None


def apply_override(data: dict[str, Any], item: str, root: type) -> None:
    """Apply one `a.b.c=value` to a nested dict; the value is parsed as a YAML scalar/list.

    Keys are checked against the dataclasses under `root` (free-form sections are checked later by
    their consumers), so `--set train.lr_gg=1` fails at once with the key's name.
    """
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override '{item}' has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    cls: Any = root
    node = data
    for depth, part in enumerate(parts):
        prefix = ".".join(parts[:depth]) + ("." if depth else "")
        if cls is not None:
            names = [f.name for f in fields(cls)]
            if part not in names:
                raise unknown_key(part, names, prefix)
            tp = typing.get_type_hints(cls)[part]
            cls = tp if is_dataclass(tp) else None
        last = depth == len(parts) - 1
        if last:
            node[part] = value
        else:
            child = node.get(part)
            if child is None:
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{prefix}{part}' is not a section")
            node = child
