"""schemas: the base of the typed event classes (``schemas/events.py``, generated).

``to_record()`` gives the dict the Avro writer takes; ``from_record()`` reads a
decoded dict back, nested records (``RawMessage``, ``Verdict``) included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


class Record:
    """A record of a schema: a frozen dataclass generated from its ``.avsc``."""

    __slots__ = ()
    EVENT_TYPE: ClassVar[str] = ""  # the schema's name; empty for a record nested in one
    NESTED: ClassVar[Mapping[str, type[Record]]] = {}  # field → class of the records it holds

    def to_record(self) -> dict[str, Any]:
        return {f.name: _out(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_record(cls: type[R], record: Mapping[str, Any]) -> R:
        """A decoded record (or a dict with the defaulted fields left out) as this class."""
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in record:
                inner = cls.NESTED.get(f.name)
                value = record[f.name]
                values[f.name] = value if inner is None else _in(inner, value)
        return cls(**values)


def _out(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_record()
    if isinstance(value, list) and value and isinstance(value[0], Record):
        return [v.to_record() for v in value]
    return value


def _in(cls: type[Record], value: Any) -> Any:
    if value is None or isinstance(value, Record):
        return value
    if isinstance(value, list):
        return [_in(cls, v) for v in value]
    return cls.from_record(value)
