"""core: unknown settings keys are errors.

A security gateway must not start on a setting it does not understand: a misspelt
key (``[smtp_server] domans`` in mailgate.toml, ``MAILGATE_SMTP_SERVR__PORT``) would
otherwise leave the default in force without a word. The loader (``core.settings``)
walks every key of the TOML file and every ``MAILGATE_`` variable against the
declared tree and refuses the lot, naming each unknown key, where it was found and
the nearest valid name (difflib).

Not settings, and so not checked: ``MAILGATE_CONFIG`` (names the file),
``MAILGATE_CORPORA`` and every ``MAILGATE_TEST_*`` variable (the test suite's own).
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo

ENV_PREFIX = "MAILGATE_"
NOT_SETTINGS = frozenset({"MAILGATE_CONFIG", "MAILGATE_CORPORA"})
TEST_PREFIX = "MAILGATE_TEST_"


class UnknownSettingError(ValueError):
    """One or more keys that the settings tree does not declare."""


def _names(name: str, info: FieldInfo) -> list[str]:
    names = [name]
    alias = info.validation_alias
    if isinstance(alias, str):
        names.append(alias)
    elif isinstance(alias, AliasChoices):
        names += [c for c in alias.choices if isinstance(c, str)]
    return names


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """Every name a key of ``model`` may have (aliases included), with its field."""
    return {n: info for name, info in model.model_fields.items() for n in _names(name, info)}


def _inner(annotation: Any) -> tuple[str, type[BaseModel] | None]:
    """How a field's keys go on: ("model", M), ("dict", M) / ("list", M) of models, or ("leaf", None)."""
    if get_origin(annotation) in (Union, types.UnionType):
        present = [a for a in get_args(annotation) if a is not type(None)]
        annotation = present[0] if len(present) == 1 else annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    origin, args = get_origin(annotation), get_args(annotation)
    item = args[-1] if args else None
    if origin in (dict, list) and isinstance(item, type) and issubclass(item, BaseModel):
        return ("dict" if origin is dict else "list"), item
    return "leaf", None


def _suggest(key: str, path: tuple[str, ...], model: type[BaseModel], moved: Mapping[str, str]) -> str | None:
    """The nearest valid dotted key to ``path.key``; a key that moved is named at its new place."""
    here = ".".join(path)
    gone = {k.rpartition(".")[2]: new for k, new in moved.items() if k.rpartition(".")[0] == here}
    close = difflib.get_close_matches(key, [*model.model_fields, *gone], n=1, cutoff=0.6)
    if not close:
        return None
    return gone.get(close[0]) or ".".join((*path, close[0]))


def _walk(model: type[BaseModel], data: Mapping[str, Any], path: tuple[str, ...],
          moved: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """(unknown dotted key, nearest valid dotted key) for every key of ``data`` not in ``model``."""
    found: list[tuple[str, str | None]] = []
    fields = _fields(model)
    for key, value in data.items():
        dotted = ".".join((*path, key))
        if dotted in moved:
            continue
        info = fields.get(key)
        if info is None:
            found.append((dotted, _suggest(key, path, model, moved)))
            continue
        kind, sub = _inner(info.annotation)
        if sub is None:
            continue
        if kind == "model" and isinstance(value, Mapping):
            found += _walk(sub, value, (*path, key), moved)
        elif kind == "dict" and isinstance(value, Mapping):
            for name, item in value.items():
                if isinstance(item, Mapping):
                    found += _walk(sub, item, (*path, key, str(name)), moved)
        elif kind == "list" and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    found += _walk(sub, item, (*path, key, str(i)), moved)
    return found


def unknown_in_file(tree: type[BaseModel], data: Mapping[str, Any], path: Path,
                    moved: Mapping[str, str] | None = None) -> list[str]:
    """A sentence for every key of the TOML file ``path`` (read into ``data``) that ``tree`` does not declare."""
    return [f"unknown setting {key} in {path}" + (f": did you mean {near}?" if near else "")
            for key, near in _walk(tree, data, (), moved or {})]


def _env_problem(tree: type[BaseModel], var: str, moved: Mapping[str, str]) -> str | None:
    parts = var[len(ENV_PREFIX):].lower().split("__")
    model: type[BaseModel] | None = tree
    for i, part in enumerate(parts):
        if model is None:  # a plain value has no keys below it
            return f"unknown setting {var} in the environment: {'.'.join(parts[:i])} takes no keys"
        if ".".join(parts[:i + 1]) in moved:
            return None
        info = _fields(model).get(part)
        if info is None:
            near = _suggest(part, tuple(parts[:i]), model, moved)
            hint = ENV_PREFIX + "__".join([*near.split("."), *parts[i + 1:]]).upper() if near else None
            return f"unknown setting {var} in the environment" + (f": did you mean {hint}?" if hint else "")
        kind, model = _inner(info.annotation)
        if kind in ("dict", "list"):  # the rest names an entry (JSON values are checked by the model)
            return None
    return None


def unknown_in_env(tree: type[BaseModel], environ: Mapping[str, str],
                   moved: Mapping[str, str] | None = None) -> list[str]:
    """A sentence for every ``MAILGATE_`` variable that names no key of ``tree``."""
    problems = []
    for var in sorted(environ):
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX) or upper in NOT_SETTINGS or upper.startswith(TEST_PREFIX):
            continue
        problem = _env_problem(tree, upper, moved or {})
        if problem:
            problems.append(problem)
    return problems


def refuse(problems: list[str]) -> None:
    """Raises one error that names every unknown key, if there is any."""
    if problems:
        raise UnknownSettingError("; ".join(problems) + " (mailgate refuses to start on a setting it does not know)")
