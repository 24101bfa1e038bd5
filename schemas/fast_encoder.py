"""schemas: a compiled Avro binary writer, used for every event published through
``core.publish`` (smtp-server's and pop3-proxy's MailReceived first of all).

The avro package validates every datum and walks the schema on every write (about
a third of the CPU of an accepted mail). This compiles a schema once into nested
closures that only write. Same bytes as ``schemas.Codec.encode`` (tests/unit/test_fast_encoder.py
holds them to it); a record that does not fit the schema raises, as there.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import avro.schema

from schemas.codec import MAGIC, fingerprint
from schemas.typed import Record

Write = Callable[[list[bytes], Any], None]


_ONE_OCTET = [bytes([(n << 1) ^ (n >> 63)]) for n in range(-64, 64)]  # zigzag varints of one octet


def _long(out: list[bytes], n: int) -> None:
    if -64 <= n < 64:  # most lengths, counts and enum indexes: no loop
        out.append(_ONE_OCTET[n + 64])
        return
    n = (n << 1) ^ (n >> 63)
    buf = bytearray()
    while n & ~0x7F:
        buf.append((n & 0x7F) | 0x80)
        n >>= 7
    buf.append(n)
    out.append(bytes(buf))


def _bytes(out: list[bytes], b: bytes) -> None:
    _long(out, len(b))
    out.append(b)


def _string(out: list[bytes], s: str) -> None:
    _bytes(out, s.encode("utf-8"))


def _branch_of(schema: avro.schema.Schema) -> Callable[[Any], bool]:
    kind = schema.type
    tests: dict[str, Callable[[Any], bool]] = {
        "null": lambda v: v is None, "string": lambda v: isinstance(v, str),
        "bytes": lambda v: isinstance(v, bytes), "boolean": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "array": lambda v: isinstance(v, list), "record": lambda v: isinstance(v, dict | Record),
        "map": lambda v: isinstance(v, dict), "double": lambda v: isinstance(v, float | int),
        "float": lambda v: isinstance(v, float | int),
        "enum": lambda v: isinstance(v, str) and v in schema.symbols,  # type: ignore[attr-defined]
    }
    if kind not in tests:
        raise TypeError(f"no fast writer for Avro type {kind}")
    return tests[kind]


def compile_writer(schema: avro.schema.Schema) -> Write:
    kind = schema.type
    if kind == "null":
        return lambda out, v: None
    if kind in ("int", "long"):
        return _long
    if kind == "string":
        return _string
    if kind == "bytes":
        return _bytes
    if kind == "boolean":
        return lambda out, v: out.append(b"\x01" if v else b"\x00")
    if kind in ("double", "float"):
        packer = struct.Struct("<d" if kind == "double" else "<f").pack
        return lambda out, v: out.append(packer(v))
    if kind == "map":
        value = compile_writer(schema.values)  # type: ignore[attr-defined]

        def mapping(out: list[bytes], v: dict[str, Any]) -> None:
            if v:
                _long(out, len(v))
                for k, x in v.items():
                    _string(out, k)
                    value(out, x)
            out.append(b"\x00")
        return mapping
    if kind == "enum":
        index = {s: i for i, s in enumerate(schema.symbols)}  # type: ignore[attr-defined]
        return lambda out, v: _long(out, index[v])
    if kind == "array":
        item = compile_writer(schema.items)  # type: ignore[attr-defined]

        def array(out: list[bytes], v: list[Any]) -> None:
            if v:
                _long(out, len(v))
                for x in v:
                    item(out, x)
            out.append(b"\x00")
        return array
    if kind == "union":
        branches = [(i, _branch_of(s), compile_writer(s)) for i, s in enumerate(schema.schemas)]  # type: ignore[attr-defined]

        def union(out: list[bytes], v: Any) -> None:
            for i, fits, write in branches:
                if fits(v):
                    _long(out, i)
                    write(out, v)
                    return
            raise TypeError(f"{v!r} fits no branch of {schema}")
        return union
    if kind in ("record", "error"):
        fields = [(f.name, compile_writer(f.type)) for f in schema.fields]  # type: ignore[attr-defined]

        def record(out: list[bytes], v: Any) -> None:
            if type(v) is dict:
                for name, write in fields:
                    write(out, v.get(name))
            else:  # a typed event (schemas/events.py): its attributes, no dict made on the way
                for name, write in fields:
                    write(out, getattr(v, name))
        return record
    raise TypeError(f"no fast writer for Avro type {kind}")


class FastEncoder:
    """``encode(record)`` → single-object-encoded bytes, as ``Codec.encode`` makes them."""

    def __init__(self, schema: avro.schema.Schema) -> None:
        self._prefix = MAGIC + fingerprint(schema)
        self._write = compile_writer(schema)

    def encode(self, record: dict[str, Any] | Record) -> bytes:
        out = [self._prefix]
        self._write(out, record)
        return b"".join(out)
