"""smtp-server filter ``relay``: mail only for our domains; relaying only for trusted
networks and authenticated clients. Never bypassed: this is what keeps us from being
an open relay.

Sender-specified routing is relaying too: ``victim%elsewhere.test@example.com``,
``elsewhere.test!victim@example.com`` and ``"victim@elsewhere.test"@example.com``
name our domain but ask a host behind us to send the mail on. Like Postfix
(``allow_untrusted_routing = no``), a local part with ``%``, ``!`` or ``@`` is
refused from untrusted clients (issue 4)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from ingress.smtp.settings import RelayFilterSettings
from ingress.smtp.filters.verdict import CONTINUE, Check, Stage, Verdict, note, reject


def address_domain(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


ROUTING_CHARACTERS = "%!@"
NOT_OURS = "Relay access denied: this server accepts mail only for its own domains"
ROUTED = ("Relay access denied: sender-specified routing (% ! or @ in the local part) is accepted only from "
          "trusted or authenticated clients")


def routed(address: str) -> bool:
    """The local part routes on to another host (user%host@us, host!user@us, "user@host"@us)."""
    local = address.rpartition("@")[0]
    return any(c in local for c in ROUTING_CHARACTERS)


def relay_verdict(address: str, domains: set[str]) -> str | None:
    """None when we accept mail for this recipient, else the 5xx reply (no trust, no AUTH)."""
    if "@" not in address:
        return "550 5.1.3 Recipient address needs a domain"
    if address_domain(address) not in domains:
        return f"550 5.7.1 {NOT_OURS}"
    if routed(address):
        return f"550 5.7.1 {ROUTED}"
    return None


def parse_networks(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for cidr in cidrs:
        try:
            nets.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"not a network (CIDR): {cidr!r}") from exc
    return nets


def in_networks(ip: str, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    if not nets:
        return False
    addr = _address(ip)
    return addr is not None and any(addr in net for net in nets)


@lru_cache(maxsize=8192)  # asked once a connection; parsing an address is most of the check
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


class RelayControl:
    name = "relay"
    stages = frozenset({Stage.RCPT})
    bypassable = False

    def __init__(self, domains: Iterable[str], cfg: RelayFilterSettings) -> None:
        self.domains = {d.lower() for d in domains}
        self.trusted = parse_networks(cfg.trusted_networks)
        self.relay_authenticated = cfg.relay_authenticated

    def is_trusted(self, ip: str) -> bool:
        return in_networks(ip, self.trusted)

    async def check(self, ask: Check) -> Verdict:
        rcpt = ask.rcpt or ""
        if "@" not in rcpt:
            return reject(self.name, 550, "5.1.3", f"<{rcpt}>: Recipient address needs a domain")
        ours = address_domain(rcpt) in self.domains
        if ours and not routed(rcpt):
            return CONTINUE
        if ask.client.trusted:
            return note(self.name, f"relay for trusted network client [{ask.client.ip}]")
        if ask.client.user is not None and self.relay_authenticated:
            return note(self.name, f"relay for authenticated user {ask.client.user}")
        if ours:
            return reject(self.name, 550, "5.7.1", f"<{rcpt}>: {ROUTED}")
        return reject(self.name, 550, "5.7.1", NOT_OURS)
