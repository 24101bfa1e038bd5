"""DKIM verification (streams/validation/dkim_check.py), DMARC evaluation (dmarc.py) and
the Authentication-Results header (auth.py), without I/O: keys are made here and handed
to dkimpy by a lookup object instead of the DNS (the DNS is in tests/integration)."""

from __future__ import annotations

import base64

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from streams.validation.auth import header_value, with_header
from streams.validation.dkim_check import DkimResult, _one
from streams.validation.dmarc import aligned, evaluate, from_domain, org_domain, parse_record

RAW = b"From: Alice <alice@mail.signed.test>\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nHello Bob.\r\n"


class Keys:
    """dkimpy's dnsfunc (as dkim_check._KeyLookup), answering from a dict; an exception instance is raised."""

    def __init__(self, records: dict[str, object]) -> None:
        self.records, self.missing, self.failed = records, None, None

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        value = self.records.get(name.decode() if isinstance(name, bytes) else name)
        if isinstance(value, Exception):
            self.failed = str(value)
            raise value
        self.missing = None if value else f"no key at {name!r}"
        return value  # type: ignore[return-value]


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes]:
    k = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                          serialization.NoEncryption())
    der = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def sign(pem: bytes, raw: bytes = RAW) -> bytes:
    return dkim.sign(raw, b"sel", b"signed.test", pem, include_headers=[b"from", b"subject"]) + raw


def test_dkim_pass_fail_and_errors(key: tuple[bytes, bytes]) -> None:
    pem, record = key
    name = "sel._domainkey.signed.test."
    good = sign(pem)
    assert _one(good, 0, Keys({name: record}), 1024) == DkimResult("pass", "signed.test", "sel", "signature verified")
    body = _one(good.replace(b"Hello", b"Hullo"), 0, Keys({name: record}), 1024)
    assert (body.result, body.reason) == ("fail", "body hash mismatch: the body changed after signing")
    assert _one(good.replace(b"Subject: hi", b"Subject: ho"), 0, Keys({name: record}), 1024).result == "fail"
    assert _one(good, 0, Keys({}), 1024).result == "permerror"
    assert _one(good, 0, Keys({name: dkim.DnsTimeoutError("timeout")}), 1024).result == "temperror"
    assert _one(good, 0, Keys({name: record}), 2048).result == "permerror"  # a 1024-bit key below min_key_bits


def test_dmarc_records_domains_and_alignment() -> None:
    assert parse_record("v=DMARC1; p=reject; adkim=s") == {"v": "DMARC1", "p": "reject", "adkim": "s"}
    assert parse_record("v=spf1 -all") is None and parse_record("p=reject; v=DMARC1") is None
    assert org_domain("a.b.example.co.uk") == "example.co.uk" and org_domain("mail.signed.test") == "signed.test"
    assert aligned("mail.signed.test", "signed.test", strict=False)
    assert not aligned("mail.signed.test", "signed.test", strict=True)
    assert not aligned("evil.test", "signed.test", strict=False)
    assert from_domain(["Alice <alice@Mail.Signed.Test>"]) == "mail.signed.test"
    assert from_domain(["a@x.test, b@y.test"]) is None and from_domain([]) is None


def sig(result: str, domain: str) -> DkimResult:
    return DkimResult(result, domain, "sel", "")


@pytest.mark.parametrize("tags, where, dkim_results, spf, mail_from, result, policy", [
    ({"p": "reject"}, "signed.test", [sig("pass", "signed.test")], None, "", "pass", "reject"),
    ({"p": "reject"}, "signed.test", [sig("fail", "signed.test"), sig("pass", "other.test")], None, "", "fail", "reject"),
    ({"p": "reject", "adkim": "s"}, "signed.test", [sig("pass", "signed.test")], None, "", "fail", "reject"),
    ({"p": "quarantine"}, "signed.test", [], "pass", "bounce@mail.signed.test", "pass", "quarantine"),
    ({"p": "quarantine", "aspf": "s"}, "signed.test", [], "pass", "b@signed.test", "fail", "quarantine"),
    ({"p": "reject", "sp": "none"}, "signed.test", [], "fail", "x@signed.test", "fail", "none"),
    ({"p": "reject", "pct": "0"}, "signed.test", [], None, "", "fail", "quarantine"),
])
def test_dmarc_evaluation(tags: dict, where: str, dkim_results: list[DkimResult], spf: str | None, mail_from: str,
                          result: str, policy: str) -> None:
    # the From domain is mail.signed.test: a subdomain, so sp= applies when the record is the parent's
    got = evaluate(tags, where, "mail.signed.test", dkim_results, spf, mail_from, "01ID")
    assert (got.result, got.policy) == (result, policy), got.reason


def test_header_written_on_top_and_forged_results_of_ours_removed() -> None:
    raw = (b"Authentication-Results: mx.example.com; dkim=pass\r\n\theader.d=bank.test\r\n"
           b"Authentication-Results: other.example; spf=pass\r\nSubject: x\r\n\r\nbody\r\n")
    value = header_value("mx.example.com", [sig("fail", "bank.test")], "softfail", "bank.test", None)
    assert value.startswith("Authentication-Results: mx.example.com; dkim=fail")
    out = with_header(raw, value, "mx.example.com")
    assert out.startswith(b"Authentication-Results: mx.example.com;\r\n\tdkim=fail")
    assert b"header.d=bank.test\r\n" not in out.split(b";", 2)[2]  # the forged one is gone, with its continuation
    assert b"Authentication-Results: other.example; spf=pass\r\nSubject: x\r\n\r\nbody\r\n" in out
    assert b"spf=softfail smtp.mailfrom=bank.test" in out
    assert header_value("mx", [], None, "", None) == "Authentication-Results: mx; dkim=none"
