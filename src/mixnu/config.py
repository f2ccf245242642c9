"""One config system for every pipeline run: YAML files validated by pydantic models.

Each stage defines its config next to its entry function as a subclass of `StageConfig`
(`extra="forbid"`, so a typo is an error, not a silently ignored key). `load_config` reads a
YAML file, applies `--set key.sub=value` overrides, validates, and turns pydantic's errors into
one `ConfigError` line naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mixnu.errors import ConfigError

C = TypeVar("C", bound=BaseModel)


class StageConfig(BaseModel):
    """Base for stage configs: unknown keys are errors; values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """Turn `["a.b=1", "c=x"]` into a nested dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. --set seed=1)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is both a value and a section")
        node[parts[-1]] = value
    return out


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line: `source: field.path: message` for the first error (+ how many more)."""
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    given = first.get("input")
    shown = f" (got {given!r})" if isinstance(given, str | int | float | bool) and first["type"] != "missing" else ""
    return f"{source}: {loc}: {first['msg']}{shown}{more}"


def validate_config(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Validate a dict against `cls`, raising `ConfigError` that names `source` and the field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors for a missing file or bad YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        # The C loader, when PyYAML was built with it, is ~10x faster on the prompt suite.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 (safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts, replacing the leaf (a given list or mapping replaces the YAML's)."""
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None,
                defaults: dict[str, Any] | None = None, given: dict[str, Any] | None = None,
                source: str = "command-line options") -> C:
    """Build a `cls` config by the one override rule, later wins:
    `defaults` < YAML `path` < `given` (flags typed on the command line) < `--set` `overrides`.

    Keys of `defaults` and `given` may be dotted (`router.init`); a `given` value replaces the whole
    value at its key. Relative paths inside the YAML stay as written (resolved against the working
    directory), as in mergekit and litgpt configs. `ConfigError` names `path` (else `source`) and the field.
    """
    data: dict[str, Any] = {}
    for key, value in (defaults or {}).items():
        _set_path(data, key, value)
    if path is not None:
        data = _deep_merge(data, read_yaml(path))
        source = str(path)
    for key, value in (given or {}).items():
        _set_path(data, key, value)
    data = _deep_merge(data, parse_overrides(overrides))
    return validate_config(cls, data, source)


def dump_config(cfg: BaseModel) -> str:
    """YAML text that `load_config` reads back to an equal config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True, sort_keys=False)
