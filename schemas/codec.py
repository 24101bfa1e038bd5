"""The one codec that reads and writes mailgate events.

Framing: Avro *single-object encoding* (Avro 1.12 specification):

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema | Avro binary body

The fingerprint names the writer schema. A reader resolves it against its own
(current) schema of the same name with Avro's schema-resolution rules, so an
older reader reads a newer record as long as the evolution rules in
``schemas/README.md`` are kept. Writer schemas this process does not ship are
looked up through a resolver (the compacted ``schemas`` topic, see
``schemas.registry``).

Every record also carries readable Kafka headers (``mail-id``, ``event-type``,
``schema``), so that ``kcat -C -f '%h %k\\n'`` shows what a record is.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, cast

import avro.io
import avro.schema

from schemas.typed import Record

MAGIC = b"\xc3\x01"
HEADER_LEN = 10
SCHEMA_DIR = Path(__file__).parent

Resolver = Callable[[bytes], "str | None"]


class DecodeError(ValueError):
    """The bytes are not a mailgate event (bad framing or a corrupt body)."""


class UnknownSchemaError(DecodeError):
    """The writer schema's fingerprint is known neither locally nor to the resolver."""


class Event(NamedTuple):
    type: str  # short name, e.g. "MailReceived"
    record: dict[str, Any]
    fingerprint: bytes


def fingerprint(schema: avro.schema.Schema) -> bytes:
    return schema.fingerprint("CRC-64-AVRO")  # little-endian, as the spec frames it


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


class Codec:
    """Encodes and decodes events with a set of known schemas."""

    def __init__(
        self,
        current: Iterable[avro.schema.RecordSchema],
        history: Iterable[avro.schema.RecordSchema] = (),
        resolver: Resolver | None = None,
    ) -> None:
        self._current: dict[str, avro.schema.RecordSchema] = {}
        self._by_fp: dict[bytes, avro.schema.RecordSchema] = {}
        self._resolver = resolver
        for schema in current:
            self._current[_short(schema.fullname)] = schema
            self._by_fp[fingerprint(schema)] = schema
        for schema in history:
            self._by_fp.setdefault(fingerprint(schema), schema)
        self._writers = {name: avro.io.DatumWriter(s) for name, s in self._current.items()}
        self._readers: dict[tuple[bytes, str], avro.io.DatumReader] = {}
        self._prefix = {name: MAGIC + fingerprint(s) for name, s in self._current.items()}

    @classmethod
    def from_dir(cls, directory: Path = SCHEMA_DIR, resolver: Resolver | None = None) -> Codec:
        current = [_parse(p.read_text()) for p in sorted(directory.glob("*.avsc"))]
        history = [_parse(p.read_text()) for p in sorted((directory / "history").glob("*.avsc"))]
        return cls(current, history, resolver)

    @property
    def event_types(self) -> list[str]:
        return sorted(self._current)

    def schema(self, event_type: str) -> avro.schema.RecordSchema:
        return self._current[event_type]

    def known_schemas(self) -> dict[bytes, str]:
        """Fingerprint → canonical JSON of every writer schema this codec knows."""
        return {fp: s.canonical_form for fp, s in self._by_fp.items()}

    def register(self, schema_json: str) -> bytes:
        schema = _parse(schema_json)
        fp = fingerprint(schema)
        self._by_fp.setdefault(fp, schema)
        return fp

    def encode(self, event_type: str, record: dict[str, Any] | Record) -> bytes:
        if isinstance(record, Record):  # a typed event (schemas/events.py)
            record = record.to_record()
        try:
            writer = self._writers[event_type]
        except KeyError:
            raise ValueError(f"unknown event type {event_type!r}; known: {self.event_types}") from None
        buf = io.BytesIO()
        buf.write(self._prefix[event_type])
        writer.write(record, avro.io.BinaryEncoder(buf))
        return buf.getvalue()

    def decode(self, data: bytes, expect: str | None = None) -> Event:
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise DecodeError("not an Avro single-object encoded record (bad magic)")
        fp = bytes(data[2:HEADER_LEN])
        writer = self._writer_for(fp)
        name = _short(writer.fullname)
        if expect is not None and name != expect:
            raise DecodeError(f"expected a {expect} record, got {name}")
        reader = self._readers.get((fp, name))
        if reader is None:
            reader = avro.io.DatumReader(writer, self._current.get(name, writer))
            self._readers[(fp, name)] = reader
        try:
            record = reader.read(avro.io.BinaryDecoder(io.BytesIO(data[HEADER_LEN:])))
        except Exception as exc:  # avro raises a zoo of types on corrupt input
            raise DecodeError(f"corrupt {name} record: {exc}") from exc
        return Event(name, cast(dict[str, Any], record), fp)

    def _writer_for(self, fp: bytes) -> avro.schema.RecordSchema:
        schema = self._by_fp.get(fp)
        if schema is None and self._resolver is not None:
            found = self._resolver(fp)
            if found is not None:
                self.register(found)
                schema = self._by_fp.get(fp)
        if schema is None:
            raise UnknownSchemaError(
                f"unknown writer schema fingerprint {fp.hex()}: not shipped with this "
                "version and not in the schemas topic (run `mailgate topics create`)"
            )
        return schema

    def headers(self, event_type: str, mail_id: str) -> list[tuple[str, bytes]]:
        fp = self._prefix[event_type][2:].hex()
        return [
            ("mail-id", mail_id.encode()),
            ("event-type", event_type.encode()),
            ("schema", f"mailgate.events.{event_type}@{fp}".encode()),
        ]


def _parse(text: str) -> avro.schema.RecordSchema:
    schema = avro.schema.parse(text)
    if not isinstance(schema, avro.schema.RecordSchema):
        raise ValueError("every mailgate schema is a record")
    return schema


@lru_cache(maxsize=1)
def default_codec() -> Codec:
    """The codec with the schemas shipped in this package (no remote resolver)."""
    return Codec.from_dir()


def schema_json(schema: avro.schema.Schema) -> str:
    return json.dumps(schema.to_json())
