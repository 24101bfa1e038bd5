"""smtp-server: MAIL/RCPT argument parsing and DATA collection (no I/O)."""

from __future__ import annotations

import pytest

from ingress.smtp.data import DataCollector
from ingress.smtp.syntax import SyntaxProblem, parse_params, split_path


@pytest.mark.parametrize(("arg", "expected"), [
    ("FROM:<a@b.test>", ("a@b.test", "")),
    ("from: <a@b.test> SIZE=12 BODY=8BITMIME", ("a@b.test", "SIZE=12 BODY=8BITMIME")),
    ("FROM:<>", ("", "")),
    ("FROM:<@relay.test:a@b.test>", ("a@b.test", "")),  # a source route is dropped
    ('FROM:<"odd local"@b.test>', ('"odd local"@b.test', "")),
    ("FROM:<ü@b.test> SMTPUTF8", ("ü@b.test", "SMTPUTF8")),
])
def test_paths(arg: str, expected: tuple[str, str]) -> None:
    assert split_path(arg, "FROM:") == expected


@pytest.mark.parametrize(("arg", "reply"), [
    ("TO <a@b.test>", "501 5.5.4 Syntax: MAIL FROM: <address>"),
    ("FROM:<a@b.test.>", "553 5.1.3 Error: malformed address"),
    ("FROM:<", "553 5.1.3 Error: malformed address"),
])
def test_bad_paths(arg: str, reply: str) -> None:
    with pytest.raises(SyntaxProblem) as problem:
        split_path(arg, "FROM:")
    assert problem.value.reply == reply


def test_params() -> None:
    assert parse_params("size=10 SMTPUTF8") == {"SIZE": "10", "SMTPUTF8": True}
    with pytest.raises(SyntaxProblem):
        parse_params("SIZE=")


def collect(chunks: list[bytes], limit: int | None = None) -> tuple[bytes, bool, bytes] | None:
    c = DataCollector(limit)
    for chunk in chunks:
        rest = c.feed(chunk)
        if rest is not None:
            return c.content, c.too_big, rest
    return None


@pytest.mark.parametrize(("chunks", "expected"), [
    ([b".\r\nQUIT\r\n"], (b"", False, b"QUIT\r\n")),  # empty message, the next command behind it
    ([b"a\r\n.\r\n"], (b"a\r\n", False, b"")),
    ([b"a\r", b"\n.", b"\r\nNOOP\r\n"], (b"a\r\n", False, b"NOOP\r\n")),  # the end split over reads
    ([b"..x\r\n..\r\n.y\r\n.\r\n"], (b".x\r\n.\r\ny\r\n", False, b"")),  # dot-stuffing undone
    ([b"\r\n.\r\n"], (b"\r\n", False, b"")),
    ([b"a" * 100 + b"\r\n.\r\n"], (b"", True, b"")),  # over the limit of 50
    ([b"a" * 30, b"a" * 30, b"\r\n", b".\r", b"\nX"], (b"", True, b"X")),  # dropped as it came, end still found
])
def test_data_collection(chunks: list[bytes], expected: tuple[bytes, bool, bytes]) -> None:
    assert collect(chunks, 50) == expected


def test_data_not_ended_yet() -> None:
    assert collect([b"a\r\n", b".", b"\r"]) is None
