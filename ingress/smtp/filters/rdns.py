"""smtp-server filter ``rdns``: the client must have a reverse DNS name ("present"),
which must resolve back to its address ("confirmed", Postfix's
reject_unknown_client_hostname). A DNS failure is a 450, never a 5xx."""

from __future__ import annotations

import dns.asyncresolver
import dns.reversename

from ingress.smtp.filters.dnsutil import DnsTempError, lookup
from ingress.smtp.filters.verdict import Check, Stage, Verdict, note, reject, tempfail


class ReverseDns:
    name = "rdns"
    stages = frozenset({Stage.MAIL})
    bypassable = True

    def __init__(self, mode: str, resolver: dns.asyncresolver.Resolver) -> None:
        self.confirm = mode == "confirmed"
        self.resolver = resolver

    async def check(self, ask: Check) -> Verdict:
        memo = ask.client.memo
        if self.name not in memo:
            memo[self.name] = await self._verdict(ask.client.ip)
            if not memo[self.name].refuses:
                ask.client.name = memo[self.name].reason.rpartition(" ")[2]
        verdict: Verdict = memo[self.name]
        if verdict.action.value == "TEMPFAIL":
            del memo[self.name]  # ask again next time
        return verdict

    async def _verdict(self, ip: str) -> Verdict:
        try:
            names = await lookup(self.resolver, dns.reversename.from_address(ip).to_text(), "PTR")
            if not names:
                return reject(self.name, 550, "5.7.25", f"Client host [{ip}] has no reverse DNS (PTR) name")
            if not self.confirm:
                return note(self.name, f"client name {names[0].rstrip('.')}")
            for name in names[:10]:
                rtype = "AAAA" if ":" in ip else "A"
                if ip in await lookup(self.resolver, name, rtype):
                    return note(self.name, f"client name confirmed {name.rstrip('.')}")
        except DnsTempError as exc:
            return tempfail(self.name, 450, "4.7.25", f"Reverse DNS of [{ip}] failed, try again later ({exc})")
        return reject(self.name, 550, "5.7.25",
                      f"Client host [{ip}]: its reverse DNS name {names[0].rstrip('.')} does not resolve back to it")
