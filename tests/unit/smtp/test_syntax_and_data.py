"""smtp-server: MAIL/RCPT argument parsing and DATA collection (no I/O)."""

from __future__ import annotations

import pytest

from ingress.smtp.data import DataCollector
from ingress.smtp.syntax import SyntaxProblem, address_problem, mail_params, parse_params, split_path


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


@pytest.mark.parametrize(("params", "utf8"), [
    ({}, False), ({"BODY": "8BITMIME"}, False), ({"BODY": "8bitmime", "SMTPUTF8": True}, True),
    ({"BODY": "7BIT", "SIZE": "100"}, False),
])
def test_mail_params_taken(params: dict[str, str | bool], utf8: bool) -> None:
    assert mail_params(params, 1000) is utf8


@pytest.mark.parametrize(("params", "reply"), [
    ({"BODY": "BINARYMIME"}, "501 5.5.4 Error: BODY can only be one of 7BIT, 8BITMIME"),
    ({"BODY": True}, "501 5.5.4 Error: BODY can only be one of 7BIT, 8BITMIME"),
    ({"SMTPUTF8": "yes"}, "501 5.5.4 Error: SMTPUTF8 takes no value"),
    ({"SIZE": "2000"}, "552 5.3.4 Error: message size exceeds fixed maximum message size"),
    ({"AUTH": "<>"}, "555 5.5.4 Error: MAIL FROM parameters not recognized: AUTH"),
])
def test_mail_params_refused(params: dict[str, str | bool], reply: str) -> None:
    with pytest.raises(SyntaxProblem) as problem:
        mail_params(params, 1000)
    assert problem.value.reply == reply


def test_non_ascii_addresses_need_smtputf8() -> None:
    assert address_problem("a@b.test", False, "sender") is None
    assert address_problem("用户@example.com", True, "recipient") is None
    refused = address_problem("用户@example.com", False, "recipient")
    assert refused is not None and refused.reply.startswith("553 5.6.7 ")
    broken = "j\udcf6rg@b.test"  # a Latin-1 octet, as the engine decodes it (surrogateescape)
    problem = address_problem(broken, True, "sender")
    assert problem is not None and problem.reply.startswith("553 5.1.7 ")
