"""smtp-server filter ``dnsbl``: the client's address is looked up in each configured
DNS block list zone (reversed octets, or nibbles for IPv6). Listed (an answer in
127.0.0.0/8): 554 5.7.1 naming the zone, with the list's TXT reason. A list that
does not answer is skipped (recorded), so a dead list never blocks mail."""

from __future__ import annotations

import ipaddress

import dns.asyncresolver
import dns.reversename

from ingress.smtp.filters.dnsutil import DnsTempError, lookup
from ingress.smtp.filters.verdict import CONTINUE, Check, Stage, Verdict, note, reject


def query_name(ip: str, zone: str) -> str:
    rev = dns.reversename.from_address(ip).to_text(omit_final_dot=True)
    rev = rev.removesuffix(".in-addr.arpa").removesuffix(".ip6.arpa")
    return f"{rev}.{zone.strip('.')}"


class Dnsbl:
    name = "dnsbl"
    stages = frozenset({Stage.MAIL})
    bypassable = True

    def __init__(self, zones: list[str], resolver: dns.asyncresolver.Resolver) -> None:
        self.zones = [z.strip().rstrip(".") for z in zones if z.strip()]
        self.resolver = resolver

    async def check(self, ask: Check) -> Verdict:
        memo = ask.client.memo
        if self.name not in memo:
            memo[self.name] = await self._verdict(ask.client.ip)
        verdict: Verdict = memo[self.name]
        return verdict

    async def _verdict(self, ip: str) -> Verdict:
        skipped = []
        for zone in self.zones:
            name = query_name(ip, zone)
            try:
                answers = await lookup(self.resolver, name, "A")
                listed = [a for a in answers if ipaddress.ip_address(a) in ipaddress.ip_network("127.0.0.0/8")]
                if not listed:
                    continue
                txt = await lookup(self.resolver, name, "TXT")
            except DnsTempError as exc:
                skipped.append(f"{zone}: {exc}")
                continue
            why = "; ".join(t.strip('"') for t in txt)[:200] or f"listed as {listed[0]}"
            return reject(self.name, 554, "5.7.1",
                          f"Service unavailable; client host [{ip}] blocked using {zone}: {why}")
        if skipped:
            return note(self.name, "lists not answering, skipped: " + ", ".join(skipped))
        return CONTINUE
