"""message-validation, authentication: DKIM (dkim_check), the SPF result carried from
phase 1, DMARC (dmarc) — gathered into ``AuthResults``, and written as an RFC 8601
Authentication-Results header (``authres``) on the mail that is delivered.

Authentication-Results fields that claim our authserv-id and came with the mail are
removed first (RFC 8601 §5): only we speak for us.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

import authres
import authres.dmarc

from streams.validation import header_block
from streams.validation.dkim_check import DkimResult, verify_dkim
from streams.validation.dmarc import DmarcResult, check_dmarc
from streams.validation.policy_settings import AuthSettings

_HEADERS = BytesHeaderParser(policy=compat32)


@dataclass(frozen=True)
class AuthResults:
    dkim: tuple[DkimResult, ...] = ()
    spf: str | None = None  # from phase 1; None: not checked
    spf_domain: str = ""
    dmarc: DmarcResult | None = None
    header: str = ""  # the Authentication-Results field, without the final CRLF
    reasons: tuple[str, ...] = field(default=())  # one line per method, for MailRouted

    @property
    def dkim_summary(self) -> str:
        """pass if one passed; else the first result; none when unsigned."""
        results = [d.result for d in self.dkim]
        return "pass" if "pass" in results else (results[0] if results else "none")


def header_value(authserv_id: str, dkim: list[DkimResult], spf: str | None, spf_domain: str,
                 dmarc: DmarcResult | None) -> str:
    results: list[Any] = []
    for sig in dkim:
        results.append(authres.DKIMAuthenticationResult(
            result=sig.result, reason=sig.reason[:120], header_d=sig.domain or None,
            header_s=sig.selector or None))
    if not dkim:
        results.append(authres.DKIMAuthenticationResult(result="none"))
    if spf is not None:
        results.append(authres.SPFAuthenticationResult(result=spf, smtp_mailfrom=spf_domain or None))
    if dmarc is not None:
        results.append(authres.dmarc.DMARCAuthenticationResult(
            result=dmarc.result, result_comment=f"p={dmarc.policy}" if dmarc.result in ("pass", "fail") else None,
            header_from=dmarc.from_domain or None))
    return str(authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results))


def reasons_of(dkim: list[DkimResult], spf: str | None, spf_why: str | None, dmarc: DmarcResult | None) -> tuple[str, ...]:
    lines = [f"dkim={d.result} (d={d.domain or '?'} s={d.selector or '?'}): {d.reason}" for d in dkim] or ["dkim=none"]
    lines.append(f"spf={spf}" + (f": {spf_why}" if spf_why else "") if spf else "spf=none (not checked at the door)")
    if dmarc is not None:
        lines.append(f"dmarc={dmarc.result} ({dmarc.from_domain or 'no From domain'}): {dmarc.reason}")
    return tuple(lines)


class Authenticator:
    def __init__(self, cfg: AuthSettings, authserv_id: str) -> None:
        self.cfg = cfg
        self.authserv_id = cfg.authserv_id or authserv_id
        self.resolver = cfg.dns.resolver()

    async def check(self, raw: bytes, mail: dict[str, Any]) -> AuthResults:
        dkim = await asyncio.to_thread(verify_dkim, raw, self.cfg.dns, self.cfg.max_signatures, self.cfg.min_key_bits)
        headers = _HEADERS.parsebytes(raw[:256 * 1024])  # the header section is at most this
        from_headers = [str(v) for v in headers.get_all("From", [])]
        spf, mail_from = mail.get("spf"), mail.get("mail_from") or ""
        spf_domain = mail_from.rpartition("@")[2] or (mail.get("client_helo") or "")
        dmarc = await check_dmarc(self.resolver, from_headers, dkim, spf, mail_from, mail["mail_id"])
        header = header_value(self.authserv_id, dkim, spf, spf_domain, dmarc)
        return AuthResults(tuple(dkim), spf, spf_domain, dmarc, header,
                           reasons_of(dkim, spf, mail.get("spf_explanation"), dmarc))


def with_header(raw: bytes, header: str, authserv_id: str) -> bytes:
    """The mail with ``header`` on top and any Authentication-Results of ours it came with removed."""
    lines, body, eol = header_block.split(raw)
    ours = [authserv_id.encode()]
    kept = header_block.without(lines, lambda name, value: name == b"authentication-results"
                                and value.strip().split(b";")[0].split()[:1] == ours)
    folded = header.replace("; ", ";" + eol.decode() + "\t")  # one method per line, never past 998 octets
    return folded.encode("utf-8") + eol + eol.join(kept) + body
