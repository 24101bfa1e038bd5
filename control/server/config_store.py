"""control-server: configuration get/set; every change is a ConfigChanged event on the
compacted config topic, with who made it.

A value is written as its environment variable would be (``a.test,b.test``;
JSON for a structured value); the engines give the latest value of each key to
the services they start, so a change applies when a service (re)starts.
Not settable here: how to reach Kafka, the node's identity, what the engine
sets itself, and secrets (they would be stored in a topic in clear).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import NoDecode

from control.engine.node_link import env_name
from control.server.auth import Principal
from control.server.errors import InvalidArgument
from core.control_channel import now_ms, produce_event
from core.kafka import make_producer
from core.logging import get_logger
from control.settings import Settings
from core.tables import DecodedTable
from schemas.topics import CONFIG, TopicNames

log = get_logger("control-server")
FIXED = ("node", "home", "kafka.", "broker.", "control.metrics_port", "control.run_until_ms")
MASK = "**********"


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    overridden: bool
    changed_by: str = ""
    changed_ms: int | None = None
    description: str = ""

    @property
    def env(self) -> str:
        return env_name(self.key)


def leaves(model: type[BaseModel], prefix: str = "") -> dict[str, FieldInfo]:
    """Every settable leaf of a settings model, by dotted key."""
    found: dict[str, FieldInfo] = {}
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            found |= leaves(sub, f"{prefix}{name}.")
        else:
            found[f"{prefix}{name}"] = info
    return found


def _is_secret(info: FieldInfo) -> bool:
    return "SecretStr" in str(info.annotation)


def _structured(info: FieldInfo) -> bool:
    """A value the environment source would read as JSON (not one the field splits itself)."""
    if any(isinstance(m, NoDecode) or m is NoDecode for m in info.metadata):
        return False
    kinds = {get_origin(a) or a for a in (info.annotation, *get_args(info.annotation))}
    return bool(kinds & {list, dict, set, tuple})


def _shown(value: Any) -> str:
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, dict) and any(isinstance(v, SecretStr) for v in value.values()):
        return MASK
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps({k: str(v) for k, v in value.items()})
    return "" if value is None else str(value)


FIELDS = leaves(Settings)


def check_key(key: str) -> FieldInfo:
    """The field of a key that may be set through the control plane, or InvalidArgument saying why not."""
    if not key:
        raise InvalidArgument("name a setting, e.g. domains")
    if key.startswith(FIXED) or key in ("kafka", "broker"):
        raise InvalidArgument(f"{key} is not set through the control plane (it says how a node reaches Kafka "
                              "or who it is): set it in each node's environment or TOML file")
    info = FIELDS.get(key)
    if info is None:
        close = [k for k in FIELDS if k.split(".")[-1] == key.split(".")[-1] and not k.startswith(FIXED)]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InvalidArgument(f"unknown setting {key!r}{hint}")
    return info


def validate(key: str, info: FieldInfo, value: str) -> None:
    """Validates ``value`` as the environment variable of ``key`` would be read."""
    parsed: Any = value
    if _structured(info):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{key} takes JSON (as {env_name(key)} would): {exc}") from None
    nested: dict[str, Any] = {}
    node = nested
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = parsed
    try:
        Settings.model_validate(nested)
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors())
        raise InvalidArgument(f"{key}={value!r} is not valid: {problems}") from None


class ConfigStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.fields = FIELDS
        self._topic = TopicNames(settings.kafka.topic_prefix)(CONFIG)
        self._producer = make_producer(settings, "control-config")
        self._changes = DecodedTable(settings, self._topic, "ConfigChanged", name="control-config")

    def start(self) -> ConfigStore:
        self._changes.start()
        return self

    def stop(self) -> None:
        self._producer.flush(10)
        self._changes.stop()

    def get(self, key: str = "") -> list[Entry]:
        changes = self._changes.snapshot()
        if not key:
            return [self._entry(k, changes.get(k)) for k in sorted(changes) if changes[k]["value"] is not None]
        check_key(key)
        return [self._entry(key, changes.get(key))]

    def _entry(self, key: str, change: dict[str, Any] | None) -> Entry:
        info = self.fields.get(key)
        description = (info.description or "") if info else ""
        if change is not None and change["value"] is not None:
            return Entry(key, change["value"], True, change["actor"], change["event_time"], description)
        value: Any = self.settings
        for part in key.split("."):
            value = getattr(value, part)
        return Entry(key, _shown(value), False, change["actor"] if change else "",
                     change["event_time"] if change else None, description)

    def set(self, principal: Principal, key: str, value: str | None, reason: str = "") -> Entry:
        info = check_key(key)
        if _is_secret(info):
            raise InvalidArgument(f"{key} is a secret: set it in the environment ({env_name(key)}) or the TOML "
                                  "file of each node, not through the control plane (it would be kept in a topic)")
        if value is not None:
            validate(key, info, value)
        previous = self._changes.get(key)
        record = {"key": key, "value": value, "previous": previous["value"] if previous else None,
                  "actor": principal.actor, "reason": reason or None, "event_time": now_ms()}
        produce_event(self._producer, self._topic, key, "ConfigChanged", record)
        if self._producer.flush(self.settings.kafka.produce_timeout_s):
            raise TimeoutError(f"{self._topic}: the change of {key} was not acknowledged by Kafka")
        self._changes.put(key, record)
        log.info("configuration changed", key=key, by=principal.actor, reset=value is None)
        return self._entry(key, record)
