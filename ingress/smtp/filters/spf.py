"""smtp-server filter ``spf``: the SPF result (pyspf) of the client address for the
envelope sender (or the HELO name for the null sender). The result is carried on the
transaction into MailReceived (phase 2 reads it). With "enforce": fail → 550 5.7.23,
temperror → 451 4.7.24. pyspf asks the DNS through our configured resolver."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import dns.exception
import dns.resolver
import spf

from core.settings import DnsSettings
from ingress.smtp.filters.verdict import Check, Stage, Verdict, note, reject, tempfail

_local = threading.local()


def _lookup(name: str, qtype: str, strict: Any = True, timeout: float = 20) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's DNS hook (its own uses a deprecated dnspython call), on this thread's resolver."""
    resolver: dns.resolver.Resolver = _local.resolver
    try:
        answers = resolver.resolve(name, qtype, search=False, lifetime=min(timeout, resolver.lifetime))
    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
        return []
    except dns.exception.DNSException as exc:
        raise spf.TempError(f"DNS {exc.__class__.__name__}: {name} {qtype}") from exc
    out: list[tuple[tuple[str, str], Any]] = []
    for r in answers:
        if qtype in ("A", "AAAA"):
            out.append(((name, qtype), r.address))
        elif qtype == "MX":
            out.append(((name, qtype), (r.preference, r.exchange)))
        elif qtype == "PTR":
            out.append(((name, qtype), r.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            out.append(((name, qtype), r.strings))
    return out


spf.DNSLookup = _lookup


def spf_result(ip: str, sender: str, helo: str, dns_cfg: DnsSettings, receiver: str) -> tuple[str, str]:
    """(result, explanation) — blocking; run it in a thread."""
    res = dns.resolver.Resolver(configure=not dns_cfg.nameservers)
    if dns_cfg.nameservers:
        res.nameservers = list(dns_cfg.nameservers)
    res.port, res.lifetime, res.timeout = dns_cfg.port, dns_cfg.timeout_s, min(dns_cfg.timeout_s, 2.0)
    _local.resolver = res
    q = spf.query(i=ip, s=sender or f"postmaster@{helo}", h=helo, receiver=receiver, timeout=dns_cfg.timeout_s)
    result, _code, explanation = q.check()
    return str(result), str(explanation)


class SpfCheck:
    name = "spf"
    stages = frozenset({Stage.MAIL})
    bypassable = True

    def __init__(self, mode: str, dns_cfg: DnsSettings, receiver: str) -> None:
        self.enforce = mode == "enforce"
        self.dns = dns_cfg
        self.receiver = receiver

    async def check(self, ask: Check) -> Verdict:
        helo = (ask.client.helo or "unknown").strip("[]")
        result, why = await asyncio.to_thread(spf_result, ask.client.ip, ask.tx.mail_from, helo, self.dns,
                                              self.receiver)
        ask.tx.spf = (result, why)
        domain = (ask.tx.mail_from.rpartition("@")[2] or helo).lower()
        if self.enforce and result == "fail":
            return reject(self.name, 550, "5.7.23",
                          f"SPF of {domain} does not allow [{ask.client.ip}] to send its mail: {why}")
        if self.enforce and result == "temperror":
            return tempfail(self.name, 451, "4.7.24", f"SPF of {domain} could not be checked, try again later: {why}")
        return note(self.name, f"spf={result} ({domain}): {why}")
