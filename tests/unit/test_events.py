"""schemas/events.py: the typed events match schemas/*.avsc, and write the codec's bytes."""

from __future__ import annotations

import json

import avro.schema
import pytest

from core.publish import Encoder
from schemas import default_codec
from schemas.codec import SCHEMA_DIR
from schemas.events import EVENT_CLASSES, MailReceived, MailScored
from schemas.gen_events import TARGET, generate
from tests.unit.test_codec import full_sample


def test_the_classes_are_generated_from_the_schemas_as_they_are() -> None:
    assert TARGET.read_text() == generate(), "schemas/events.py is stale: run python -m schemas.gen_events"


def test_one_class_per_schema() -> None:
    assert set(EVENT_CLASSES) == set(default_codec().event_types)


@pytest.mark.parametrize("event_type", default_codec().event_types)
def test_typed_event_round_trip_and_same_bytes(event_type: str) -> None:
    codec = default_codec()
    record = full_sample(event_type)
    event = EVENT_CLASSES[event_type].from_record(codec.decode(codec.encode(event_type, record)).record)
    assert event.to_record() == record
    assert Encoder(codec).encode(event) == codec.encode(event_type, record)  # the compiled writer, on attributes
    assert Encoder(codec).encode(record, event_type) == codec.encode(event_type, record)  # and on the dict


def test_a_defaulted_field_may_be_left_out_and_a_frozen_event_is_not_changed() -> None:
    event = MailScored.from_record({"mail_id": "m", "event_time": 1, "node": "n", "score": 0.5, "verdict": "ham",
                                    "matched": [], "reasons": [], "received": b""})
    assert event.mail is None
    with pytest.raises(AttributeError):
        event.score = 1.0  # type: ignore[misc]


def test_mail_scored_carries_the_mail_received_schema_as_it_is() -> None:
    """MailScored.mail is a copy of MailReceived.avsc: the two are held equal here."""
    scored = default_codec().schema("MailScored")
    (mail,) = [f for f in scored.fields if f.name == "mail"]
    branch = next(s for s in mail.type.schemas if s.type == "record")
    own = avro.schema.parse((SCHEMA_DIR / "MailReceived.avsc").read_text())
    assert json.loads(branch.canonical_form) == json.loads(own.canonical_form)
    assert MailScored.NESTED["mail"] is MailReceived


def test_validation_reads_a_mail_scored_of_either_form_in_one_call() -> None:
    """The new form carries the mail in ``mail``; a record of an older spam-filter in ``received``."""
    from streams.validation.agents import read_scored

    codec = default_codec()
    mail = full_sample("MailReceived")
    base = {**full_sample("MailScored"), "mail_id": mail["mail_id"]}
    new = codec.encode("MailScored", {**base, "received": b"", "mail": mail})
    old = codec.encode("MailScored", {**base, "received": codec.encode("MailReceived", mail), "mail": None})
    assert read_scored(codec, new)[1] == mail == read_scored(codec, old)[1]
