"""smtp-server's strict line guard and reply status codes (no I/O)."""

from __future__ import annotations

import pytest

from ingress.smtp.lines import LineGuard
from ingress.smtp.protocol import ConnectionTracker, with_status


def feed_all(chunks: list[bytes], max_line: int = 100) -> str | None:
    guard = LineGuard(max_line)
    for chunk in chunks:
        problem = guard.feed(chunk)
        if problem:
            return problem
    return None


@pytest.mark.parametrize("chunks", [
    [b"EHLO a.test\r\n"],
    [b"EHLO a.test\r", b"\nMAIL FROM:<a@b.test>\r\n"],  # CR | LF split over two reads
    [b"DATA\r\n", b"x" * 98 + b"\r\n", b".\r\n"],  # 100 octets with CRLF: just fits
    [b"x" * 50, b"y" * 48, b"\r\n"],  # one line over three reads
    [b"", b"\r\n"],
])
def test_clean_input_passes(chunks: list[bytes]) -> None:
    assert feed_all(chunks) is None


@pytest.mark.parametrize(("chunks", "problem"), [
    ([b"hello\n.\r\n"], "bare <LF> received"),
    ([b"hello\r\n.\n"], "bare <LF> received"),
    ([b"hello\r.\r\n"], "bare <CR> received"),
    ([b"hello\r\n.\r", b"MAIL"], "bare <CR> received"),  # CR at the end of one read, no LF next
    ([b"a\r\r\n"], "bare <CR> received"),
    ([b"\n"], "bare <LF> received"),
    ([b"EHLO a\x00b\r\n"], "NUL character received"),
    ([b"x" * 200, b"a\nb"], "bare <LF> received"),  # still found after a long line
])
def test_smuggling_shapes_are_caught(chunks: list[bytes], problem: str) -> None:
    assert feed_all(chunks) == problem


@pytest.mark.parametrize(("chunks", "overlong"), [
    ([b"x" * 99 + b"\r\n"], True),
    ([b"x" * 98 + b"\r\n"], False),  # 100 octets with CRLF: just fits
    ([b"x" * 60, b"x" * 60], True),  # no newline yet, already too long
    ([b"ok\r\n" + b"x" * 200 + b"\r\nok\r\n"], True),  # a long line in the middle
    ([b"x" * 60, b"x" * 39 + b"\r\nok\r\n"], True),  # carried over
])
def test_long_lines_are_flagged_not_refused(chunks: list[bytes], overlong: bool) -> None:
    guard = LineGuard(100)
    assert [guard.feed(c) for c in chunks] == [None] * len(chunks)
    assert guard.overlong is overlong


def test_reset_starts_a_new_stream() -> None:
    guard = LineGuard(100)
    assert guard.feed(b"x" * 90) is None
    guard.reset()
    assert guard.feed(b"y" * 90 + b"\r\n") is None


@pytest.mark.parametrize(("reply", "expected"), [
    ("250 OK", "250 2.0.0 OK"),
    ("503 Error: need MAIL command", "503 5.5.1 Error: need MAIL command"),
    ("552 Error: Too much mail data", "552 5.3.4 Error: Too much mail data"),
    ("250 2.1.5 Ok", "250 2.1.5 Ok"),  # already has one
    ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
    ("220 mx ESMTP", "220 mx ESMTP"),
    ("235 Authentication successful", "235 2.0.0 Authentication successful"),
    ("221 Bye", "221 2.0.0 Bye"),
    ("599", "599 5.0.0"),
])
def test_enhanced_status_codes(reply: str, expected: str) -> None:
    assert with_status(reply) == expected


def test_connection_tracker_limits_and_gives_back() -> None:
    t = ConnectionTracker(total=3, per_ip=2)
    assert t.acquire("192.0.2.1") is None and t.acquire("192.0.2.1") is None
    assert "from [192.0.2.1]" in (t.acquire("192.0.2.1") or "")
    assert t.acquire("192.0.2.2") is None
    assert "Too many connections (3)" in (t.acquire("192.0.2.3") or "")
    for ip in ("192.0.2.1", "192.0.2.1", "192.0.2.2"):
        t.release(ip)
    assert t.count == 0 and t.by_ip == {}
