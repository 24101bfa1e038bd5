"""message-validation, authentication: DMARC (RFC 7489) for the RFC 5322.From domain.

The policy record is looked up at ``_dmarc.<From domain>``, else at the organizational
domain's (found with the Public Suffix List of ``publicsuffixlist``, which ships the
list, so nothing is fetched at run time). DMARC passes when a DKIM signature that
passed, or the SPF result of phase 1, is aligned with the From domain (relaxed: same
organizational domain; strict: the same name).

Why not a library: ``checkdmarc`` needs cryptography>=50 (we pin 48) and asks port 53
only; ``authheaders`` ships a 2019 suffix list (publicsuffix2) and re-runs SPF, which
phase 1 already did. The evaluation itself is this page.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from email.utils import getaddresses

import dns.asyncresolver
import dns.exception
import dns.resolver
from publicsuffixlist import PublicSuffixList

from streams.validation.dkim_check import DkimResult

_PSL = PublicSuffixList()


@dataclass(frozen=True)
class DmarcResult:
    result: str  # pass | fail | none | temperror | permerror
    from_domain: str
    policy: str = "none"  # the policy that applies to this mail: none | quarantine | reject
    reason: str = ""


def org_domain(domain: str) -> str:
    """The organizational domain: the public suffix plus one label (itself when unknown)."""
    return _PSL.privatesuffix(domain.lower().rstrip(".")) or domain.lower().rstrip(".")


def aligned(a: str, b: str, strict: bool) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b if strict else bool(a) and org_domain(a) == org_domain(b)


def from_domain(from_headers: list[str]) -> str | None:
    """The one domain of RFC 5322.From; None when there is not exactly one address."""
    addresses = [addr for _name, addr in getaddresses(from_headers) if addr]
    if len(addresses) != 1 or "@" not in addresses[0]:
        return None
    return addresses[0].rpartition("@")[2].strip().rstrip(".").lower() or None


def parse_record(text: str) -> dict[str, str] | None:
    """Tags of a DMARC record; None when it is not one (no v=DMARC1 first)."""
    tags: dict[str, str] = {}
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    if not text.lstrip().lower().startswith("v=dmarc1") or tags.get("v", "").upper() != "DMARC1":
        return None
    return tags


async def lookup(resolver: dns.asyncresolver.Resolver, domain: str) -> tuple[dict[str, str] | None, str]:
    """(record tags, where) for the domain, falling back to its organizational domain."""
    for name in dict.fromkeys((domain, org_domain(domain))):
        try:
            answer = await resolver.resolve(f"_dmarc.{name}", "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        records = [t for t in (parse_record(b"".join(r.strings).decode("utf-8", "replace")) for r in answer) if t]
        if len(records) == 1:
            return records[0], name
        if records:  # RFC 7489 §6.6.3: more than one record is as good as none
            return None, f"_dmarc.{name} has {len(records)} records"
    return None, ""


def _policy(tags: dict[str, str], subdomain: bool, mail_id: str) -> str:
    policy = (tags.get("sp") if subdomain else None) or tags.get("p", "none")
    policy = policy.lower() if policy.lower() in ("none", "quarantine", "reject") else "none"
    try:
        pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    if policy != "none" and zlib.crc32(mail_id.encode()) % 100 >= pct:  # outside pct: the next weaker one
        policy = "quarantine" if policy == "reject" else "none"
    return policy


def evaluate(tags: dict[str, str], where: str, domain: str, dkim: list[DkimResult],
             spf: str | None, mail_from: str, mail_id: str) -> DmarcResult:
    """The DMARC result for the From domain under its record (pure)."""
    policy = _policy(tags, subdomain=where != domain, mail_id=mail_id)
    strict_dkim, strict_spf = tags.get("adkim", "r").lower() == "s", tags.get("aspf", "r").lower() == "s"
    for sig in dkim:
        if sig.result == "pass" and aligned(sig.domain, domain, strict_dkim):
            return DmarcResult("pass", domain, policy, f"DKIM d={sig.domain} aligned")
    spf_domain = mail_from.rpartition("@")[2].lower()
    if spf == "pass" and aligned(spf_domain, domain, strict_spf):
        return DmarcResult("pass", domain, policy, f"SPF {spf_domain} aligned")
    passed = [s.domain for s in dkim if s.result == "pass"]
    why = (f"DKIM pass for {', '.join(passed)} only" if passed else "no DKIM pass") + \
          (f", SPF pass for {spf_domain or 'the null sender'} not aligned" if spf == "pass" else f", SPF {spf or 'none'}")
    return DmarcResult("fail", domain, policy, f"{why} (p={policy} at _dmarc.{where})")


async def check_dmarc(resolver: dns.asyncresolver.Resolver, from_headers: list[str], dkim: list[DkimResult],
                      spf: str | None, mail_from: str, mail_id: str) -> DmarcResult:
    domain = from_domain(from_headers)
    if domain is None:
        return DmarcResult("permerror", "", reason=f"{len(from_headers)} From header(s), not one address")
    try:
        tags, where = await lookup(resolver, domain)
    except dns.exception.DNSException as exc:
        return DmarcResult("temperror", domain, reason=f"policy lookup failed: {type(exc).__name__}")
    if tags is None:
        return DmarcResult("permerror" if where else "none", domain,
                           reason=where or f"no DMARC record for {domain}")
    return evaluate(tags, where, domain, dkim, spf, mail_from, mail_id)
