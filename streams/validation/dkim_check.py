"""message-validation, authentication: DKIM verification (dkimpy) of the raw mail exactly
as received, each signature apart, with its RFC 8601 result and a reason.

dkimpy asks for the public key through ``dnsfunc``; ours uses the configured resolver,
so the DNS servers of the settings (a test's loopback server) answer. Blocking: run it
in a thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dkim
import dns.exception
import dns.resolver

from core.dns_settings import DnsSettings

_quiet = logging.getLogger("mailgate.dkim")  # dkimpy logs each failure at ERROR; our result says it once
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


@dataclass(frozen=True)
class DkimResult:
    result: str  # pass | fail | neutral | temperror | permerror (RFC 8601 §2.7.1)
    domain: str  # d=
    selector: str  # s=
    reason: str


class _KeyLookup:
    """dkimpy's dnsfunc: TXT of <selector>._domainkey.<domain>; remembers why it found nothing."""

    def __init__(self, cfg: DnsSettings) -> None:
        self.resolver = dns.resolver.Resolver(configure=not cfg.nameservers)
        if cfg.nameservers:
            self.resolver.nameservers = list(cfg.nameservers)
        self.resolver.port = cfg.port
        self.resolver.lifetime, self.resolver.timeout = cfg.timeout_s, min(cfg.timeout_s, 2.0)
        self.missing: str | None = None  # why the last lookup found no key (a permerror)
        self.failed: str | None = None  # why the last lookup got no answer (a temperror)

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        qname = name.decode() if isinstance(name, bytes) else name
        self.missing = self.failed = None
        try:
            answer = self.resolver.resolve(qname, "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            self.missing = f"no key at {qname.rstrip('.')}"
            return None
        except dns.exception.DNSException as exc:  # dkimpy turns this into False: remember it
            self.failed = f"key lookup failed: {type(exc).__name__} for {qname.rstrip('.')}"
            raise dkim.DnsTimeoutError(self.failed) from exc
        return b"".join(answer[0].strings)


def _tag(d: dkim.DKIM, name: bytes) -> str:
    value = (getattr(d, "signature_fields", None) or {}).get(name, b"")
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _one(raw: bytes, idx: int, lookup: _KeyLookup, min_key_bits: int) -> DkimResult:
    d = dkim.DKIM(raw, logger=_quiet, minkey=min_key_bits)
    try:
        ok = d.verify(idx=idx, dnsfunc=lookup)
    except (dkim.KeyFormatError, dkim.MessageFormatError, dkim.ParameterError) as exc:
        return DkimResult("permerror", _tag(d, b"d"), _tag(d, b"s"), f"{type(exc).__name__}: {exc}")
    except dkim.ValidationError as exc:  # body hash mismatch, expired, l= misuse, ...
        why = "body hash mismatch: the body changed after signing" if "body hash" in str(exc) else str(exc)
        return DkimResult("fail", _tag(d, b"d"), _tag(d, b"s"), why)
    except dkim.DKIMException as exc:
        return DkimResult("permerror", _tag(d, b"d"), _tag(d, b"s"), str(exc))
    domain, selector = _tag(d, b"d"), _tag(d, b"s")
    if ok:
        return DkimResult("pass", domain, selector, "signature verified")
    if lookup.failed:
        return DkimResult("temperror", domain, selector, lookup.failed)
    if lookup.missing:
        return DkimResult("permerror", domain, selector, lookup.missing)
    return DkimResult("fail", domain, selector, "signature did not verify (key or signed header fields)")


def signature_count(raw: bytes) -> int:
    head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
    return sum(1 for line in head.splitlines() if line[:15].lower() == b"dkim-signature:")


def verify_dkim(raw: bytes, cfg: DnsSettings, max_signatures: int = 5,
                min_key_bits: int = 1024) -> list[DkimResult]:
    """One result per DKIM-Signature (the first ``max_signatures``); [] when unsigned."""
    lookup = _KeyLookup(cfg)
    count = min(signature_count(raw), max_signatures)
    results = []
    for idx in range(count):
        try:
            results.append(_one(raw, idx, lookup, min_key_bits))
        except Exception as exc:  # dkimpy on hostile input: a permerror, never a crash of the stage
            results.append(DkimResult("permerror", "", "", f"cannot verify: {type(exc).__name__}: {exc}"))
    return results
