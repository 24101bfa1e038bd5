"""The event codec: framing, round trips of every schema, and schema evolution."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import pytest

from schemas import Codec, DecodeError, UnknownSchemaError, default_codec, pack_message, unpack_message
from schemas.codec import SCHEMA_DIR, fingerprint

SAMPLES: dict[str, dict[str, Any]] = {
    "MailReceived": {
        "mail_id": "01M88VEJ91K48V10FW8NH70J07", "event_time": 1795593554208, "node": "gw1", "origin": "SMTP",
        "client_address": "192.0.2.7", "client_helo": "mx.outside.test", "tls": "TLSv1.3 TLS_AES_256_GCM_SHA384",
        "mail_from": "", "rcpt_to": ["a@example.com", "b@example.org"], "size": 5,
        "message": {"compression": "NONE", "data": b"hello"},
    },
    "MailRouted": {
        "mail_id": "01M88VEJ91K48V10FW8NH70J07", "event_time": 1795593554300, "node": "gw1", "queue": "out",
        "reasons": ["no phase-2 filter objected"], "destination": "example.com", "mail_from": "s@outside.test",
        "rcpt_to": ["a@example.com"], "received_time": 1795593554208, "client_address": None, "size": 3000,
        "message": pack_message(b"x" * 3000),
    },
    "MailDelivered": {
        "mail_id": "01M88VEJ91K48V10FW8NH70J07", "event_time": 1795593554400, "node": "gw1",
        "destination": "example.com", "rcpt_to": ["a@example.com"], "next_hop": "127.0.0.1:2526",
        "reply_code": 250, "reply_text": "2.0.0 Ok", "attempt": 1,
    },
    "DeliveryFailed": {
        "mail_id": "01M88VEJ91K48V10FW8NH70J07", "event_time": 1795593554500, "node": "gw1",
        "destination": "example.com", "rcpt_to": ["a@example.com"], "next_hop": "127.0.0.1:2526",
        "reply_code": None, "reply_text": "ConnectionRefusedError", "attempt": 3, "permanent": False,
    },
}


def generated(schema: avro.schema.Schema) -> Any:
    """A value for every field of a schema, taking the non-null branch of each union."""
    if isinstance(schema, avro.schema.RecordSchema):
        return {f.name: generated(f.type) for f in schema.fields}
    if isinstance(schema, avro.schema.UnionSchema):
        return generated(next(s for s in schema.schemas if s.type != "null"))
    if isinstance(schema, avro.schema.ArraySchema):
        return [generated(schema.items)]
    if isinstance(schema, avro.schema.MapSchema):
        return {"k": generated(schema.values)}
    if isinstance(schema, avro.schema.EnumSchema):
        return schema.symbols[-1]
    return {"string": "s", "long": 2**40, "int": 7, "double": 0.25, "float": 0.5, "boolean": True,
            "bytes": b"\x00\xc3\x01", "null": None}[schema.type]


def full_sample(event_type: str) -> dict[str, Any]:
    """The hand-written sample where there is one, completed by generated values for newer fields."""
    full = generated(default_codec().schema(event_type))
    return {**full, **SAMPLES.get(event_type, {})}


def test_the_core_events_are_shipped() -> None:
    assert set(SAMPLES) <= set(default_codec().event_types)


@pytest.mark.parametrize("event_type", default_codec().event_types)
def test_round_trip(event_type: str) -> None:
    codec = default_codec()
    record = full_sample(event_type)
    data = codec.encode(event_type, record)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == fingerprint(codec.schema(event_type))
    event = codec.decode(data, expect=event_type)
    assert event.type == event_type
    assert event.record == record


def test_fingerprint_is_the_spec_little_endian_crc64() -> None:
    # Avro spec: CRC-64-AVRO of the Parsing Canonical Form, written little-endian.
    schema = default_codec().schema("MailDelivered")
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in schema.canonical_form.encode():
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    assert fingerprint(schema) == struct.pack("<Q", fp)


def test_headers_say_what_a_record_is() -> None:
    headers = dict(default_codec().headers("MailRouted", "01ABC"))
    assert headers["mail-id"] == b"01ABC" and headers["event-type"] == b"MailRouted"
    assert headers["schema"].startswith(b"mailgate.events.MailRouted@")


@pytest.mark.parametrize("data, reason", [
    (b"", "bad magic"),
    (b"{\"json\": true}", "bad magic"),
    (b"\xc3\x01" + b"\x00" * 8 + b"body", "unknown writer schema"),
])
def test_garbage_is_a_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        default_codec().decode(data)


def test_truncated_record_is_a_decode_error() -> None:
    data = default_codec().encode("MailReceived", full_sample("MailReceived"))
    with pytest.raises(DecodeError, match="corrupt MailReceived"):
        default_codec().decode(data[:-4])


def test_expect_refuses_another_event_type() -> None:
    data = default_codec().encode("MailDelivered", full_sample("MailDelivered"))
    with pytest.raises(DecodeError, match="expected a MailReceived record, got MailDelivered"):
        default_codec().decode(data, expect="MailReceived")


def newer_mail_received() -> str:
    """MailReceived as a later release might write it: one more field, with a default (rule 1)."""
    schema = json.loads((SCHEMA_DIR / "MailReceived.avsc").read_text())
    schema["fields"].append({"name": "spf_result", "type": ["null", "string"], "default": None})
    return json.dumps(schema)


def test_old_reader_reads_a_newer_record_through_the_resolver() -> None:
    newer_json = newer_mail_received()
    newer = Codec([avro.schema.parse(newer_json)])
    data = newer.encode("MailReceived", {**full_sample("MailReceived"), "spf_result": "pass"})

    with pytest.raises(UnknownSchemaError, match="mailgate topics create"):
        Codec.from_dir().decode(data)  # the old reader alone has never seen that schema
    looked_up: list[bytes] = []

    def resolver(fp: bytes) -> str | None:
        looked_up.append(fp)
        return newer_json

    old = Codec.from_dir(resolver=resolver)
    event = old.decode(data, expect="MailReceived")
    assert event.record == full_sample("MailReceived")  # spf_result dropped, everything else kept
    old.decode(data)
    assert len(looked_up) == 1  # resolved once, then known


def test_newer_reader_reads_an_old_record() -> None:
    newer = Codec([avro.schema.parse(newer_mail_received())], history=[default_codec().schema("MailReceived")])
    data = default_codec().encode("MailReceived", full_sample("MailReceived"))
    assert newer.decode(data).record == {**full_sample("MailReceived"), "spf_result": None}


def _compatible(writer: avro.schema.Schema, reader: avro.schema.Schema, record: dict[str, Any]) -> None:
    import io

    buf = io.BytesIO()
    avro.io.DatumWriter(writer).write(record, avro.io.BinaryEncoder(buf))
    avro.io.DatumReader(writer, reader).read(avro.io.BinaryDecoder(io.BytesIO(buf.getvalue())))


HISTORY = sorted((SCHEMA_DIR / "history").glob("*.avsc"))


@pytest.mark.parametrize("path", HISTORY or [pytest.param(None, marks=pytest.mark.skip(
    reason="schemas/history/ is empty: no schema has changed since the first release"))])
def test_history_and_current_read_each_other(path: Path) -> None:
    old = avro.schema.parse(path.read_text())
    name = old.name
    current = default_codec().schema(name)
    _compatible(current, old, full_sample(name))  # a new record, read by the old reader
    _compatible(old, current, generated(old))  # an old record, read by the current reader


def test_message_packing() -> None:
    small, big = b"short", b"Received: x\r\n" * 1000
    assert pack_message(small) == {"compression": "NONE", "data": small}
    packed = pack_message(big)
    assert packed["compression"] == "ZSTD" and len(packed["data"]) < len(big) // 10
    assert unpack_message(packed) == big
    random = bytes(range(256)) * 2  # does not compress: stays as it is
    assert unpack_message(pack_message(random)) == random
