"""Typed configs: dataclasses with defaults, YAML presets merged over them, ``--set a.b=c``.

No import-by-string and no eval: values in ``--set`` are parsed with ``yaml.safe_load``; keys must
name existing fields (a typo is an error, not a silently ignored option).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from boltzpath.errors import BadInput


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-6`` (no dot) as a float, as a user means it."""


_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)$|"
                    r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?$|^[-+]?\.[0-9_]+$|"
                    r"^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$")
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in list(_Loader.yaml_implicit_resolvers):
    _Loader.yaml_implicit_resolvers[_first] = [
        (tag, rx) for tag, rx in _Loader.yaml_implicit_resolvers[_first] if tag != "tag:yaml.org,2002:float"
    ]
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
# integers keep their own resolver (registered first for digits), so "12" stays an int


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with ``1e-6``-style floats; errors carry their line and column."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: where (line, column) and what."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{where}{what}"


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` → ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise BadInput(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        if not key or any(not part.isidentifier() for part in key.split(".")):
            raise BadInput(f"--set key must be dotted identifiers, got {key!r}")
        try:
            value = safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise BadInput(f"--set {key}: cannot parse value {raw!r}: {yaml_error_line(exc)}") from None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise BadInput(f"--set {key}: {part!r} is both a value and a section")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = safe_load(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"config file not found: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"malformed YAML in {path} at {yaml_error_line(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"{path} must contain a mapping at the top level")
    return data


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where) if len(args) == 1 else value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise BadInput(f"{where} must be a mapping")
        return from_dict(annotation, value, where)
    if annotation is bool:
        if not isinstance(value, bool):
            raise BadInput(f"{where} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise BadInput(f"{where} must be an integer, got {value!r}")
        return int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadInput(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise BadInput(f"{where} must be a string, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise BadInput(f"{where} must be a list, got {value!r}")
        (item,) = typing.get_args(annotation)[:1] or (Any,)
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise BadInput(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "config"):
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ``BadInput``."""
    if not isinstance(data, dict):
        raise BadInput(f"{where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BadInput(f"unknown key(s) in {where}: {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass → plain dict (YAML-safe: tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


PRESET_DIR = Path(__file__).resolve().parent / "presets"
PRESETS = ("quick", "cpu", "paper")


_BASE_NAME = re.compile(r"[a-z0-9_]+")


def load_preset_file(path: str | Path, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """One preset file with its ``base:`` resolved: ``base: NAME`` names a shipped preset
    (``presets/NAME.yaml``, itself possibly with a base) whose keys the file's own keys are merged
    over, so that two targets sharing a recipe keep one copy of it."""
    data = load_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not _BASE_NAME.fullmatch(base):
        raise BadInput(f"{path}: base must be the name of a shipped preset (e.g. pita_aldp_fab_cpu), "
                       f"got {base!r}")
    if base in _seen:
        raise BadInput(f"{path}: preset bases form a cycle: {' -> '.join((*_seen, base))}")
    base_path = PRESET_DIR / f"{base}.yaml"
    if not base_path.is_file():
        shipped = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise BadInput(f"{path}: base preset {base!r} does not exist; shipped presets: {', '.join(shipped)}")
    return deep_merge(load_preset_file(base_path, (*_seen, base)), data)


def resolve_preset(method: str, config_cls, target: str | None, preset: str, seed: int | None,
                   overrides, extra: dict | None = None):
    """A method's typed config from its presets, lowest to highest precedence: ``config_cls``
    defaults → ``presets/<method>_<preset>.yaml`` (or ``preset`` as a .yaml path) →
    ``presets/<method>_<target>_<preset>.yaml`` when it exists → ``target``/``seed`` →
    ``overrides`` (``key=value`` strings) → ``extra`` (a nested mapping). A preset file may start
    from a shipped one with ``base: NAME`` (``load_preset_file``)."""
    if preset in PRESETS:
        data = load_preset_file(PRESET_DIR / f"{method}_{preset}.yaml")
    elif preset.endswith((".yaml", ".yml")):
        data = load_preset_file(preset)
    else:
        raise BadInput(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)} or a .yaml file")
    over = deep_merge(parse_overrides(list(overrides)), dict(extra or {}))
    name = target or over.get("target") or data.get("target") or config_cls.target
    if not isinstance(name, str):
        raise BadInput(f"target must be a name, got {name!r}")
    specific = PRESET_DIR / f"{method}_{name.replace('-', '_')}_{preset}.yaml"
    if preset in PRESETS and specific.is_file():
        data = deep_merge(data, load_preset_file(specific))
    data = deep_merge(data, {"target": name})
    if seed is not None:
        data["seed"] = int(seed)
    return from_dict(config_cls, deep_merge(data, over), where=f"{method} preset {preset!r}")
