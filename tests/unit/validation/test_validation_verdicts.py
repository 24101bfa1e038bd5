"""clamd replies and addresses (streams/validation/clamd.py), and how scan results and
the MIME walk make a VirusVerdict (streams/validation/virus.py). No I/O: the real clamd
is in tests/integration/validation."""

from __future__ import annotations

import pytest

from streams.validation.clamd import (
    ClamdAddress,
    ClamdScanError,
    ClamdTooLarge,
    ClamdUnavailable,
    ScanResult,
    parse_reply,
)
from streams.validation.mime import MimeWalk, Part
from streams.validation.virus import _verdict, scan_targets


@pytest.mark.parametrize("reply, found", [
    ("stream: OK", ()),
    ("stream: Eicar-Test-Signature FOUND", ("Eicar-Test-Signature",)),
    ("stream: Win.Test.EICAR_HDB-1 FOUND\0stream: Other FOUND\0", ("Win.Test.EICAR_HDB-1", "Other")),
    ("stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND", ("Heuristics.Limits.Exceeded.MaxFileSize",)),
])
def test_reply_with_a_verdict(reply: str, found: tuple[str, ...]) -> None:
    assert parse_reply(reply) == ScanResult(found)


@pytest.mark.parametrize("reply, error", [
    ("INSTREAM size limit exceeded. ERROR", ClamdTooLarge),
    ("stream: Can't allocate memory ERROR", ClamdScanError),
    ("", ClamdUnavailable),
    ("PONG", ClamdUnavailable),
    ("stream: maybe", ClamdUnavailable),
    ("COMMAND READ TIMED OUT", ClamdUnavailable),
])
def test_reply_without_a_verdict_is_an_error_never_clean(reply: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_reply(reply)


@pytest.mark.parametrize("text, unix, host, port", [
    ("unix:/run/clamav/clamd.ctl", "/run/clamav/clamd.ctl", None, None),
    ("/tmp/c.sock", "/tmp/c.sock", None, None),
    ("tcp:127.0.0.1:3310", None, "127.0.0.1", 3310),
    ("clamav.internal:3310", None, "clamav.internal", 3310),
    ("[::1]:3310", None, "::1", 3310),
])
def test_addresses(text: str, unix: str | None, host: str | None, port: int | None) -> None:
    assert ClamdAddress.parse(text) == ClamdAddress(unix, host, port)


@pytest.mark.parametrize("text", ["tcp:nohost", "localhost", "tcp::3310"])
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        ClamdAddress.parse(text)


def part(locator: str, data: bytes = b"x", verbatim: bool = False, encrypted: bool = False) -> Part:
    return Part(locator, "application/octet-stream", (), data, 1, "mime", "base64", verbatim, encrypted)


def test_scan_targets_skip_verbatim_empty_encrypted_and_duplicate_parts() -> None:
    walk = MimeWalk((part("1", b"text", verbatim=True), part("2", b"same"), part("3", b"same"),
                     part("4", b""), part("5", b"", encrypted=True), part("6", b"other")))
    assert [p.locator for p in scan_targets(walk)] == ["2", "6"]


def test_infected_wins_and_says_where() -> None:
    walk = MimeWalk((part("2"),), incomplete="more than 5 parts")
    v = _verdict(walk, [("the mail", ScanResult()), ("part 2", ScanResult(("Eicar",)))])
    assert v.kind == "infected" and v.names == ("Eicar",) and v.reason == "Eicar in part 2" and v.streams == 2


@pytest.mark.parametrize("walk, results, words", [
    (MimeWalk((), unparseable="no header fields"), [("the mail", ScanResult())], "unparseable: no header fields"),
    (MimeWalk((), incomplete="zip bomb"), [("the mail", ScanResult())], "not fully inspected: zip bomb"),
    (MimeWalk((part("2!a", b"", encrypted=True),)), [("the mail", ScanResult())], "encrypted entry 2!a"),
    (MimeWalk(()), [("the mail", ScanResult(("Heuristics.Limits.Exceeded.MaxFileSize",)))],
     "clamd could not scan the mail"),
    (MimeWalk(()), [("the mail", ScanResult()), ("part 3", "part 3 not scanned: too big")], "part 3 not scanned"),
])
def test_what_was_not_seen_is_unscannable_never_clean(walk: MimeWalk, results: list, words: str) -> None:
    v = _verdict(walk, results)
    assert v.kind == "unscannable" and words in v.reason and not v.clean


def test_clean_only_when_every_stream_was_ok_and_the_walk_complete() -> None:
    v = _verdict(MimeWalk((part("2"),)), [("the mail", ScanResult()), ("part 2", ScanResult())])
    assert v.kind == "clean" and v.clean and v.streams == 2
