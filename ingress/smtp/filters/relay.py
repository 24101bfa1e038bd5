"""smtp-server filter ``relay``: mail only for our domains; relaying only for trusted
networks and authenticated clients. Never bypassed: this is what keeps us from being
an open relay."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from core.settings import RelayFilterSettings
from ingress.smtp.filters.verdict import CONTINUE, Check, Stage, Verdict, note, reject


def address_domain(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


def relay_verdict(address: str, domains: set[str]) -> str | None:
    """None when we accept mail for this recipient, else the 5xx reply (no trust, no AUTH)."""
    if "@" not in address:
        return "550 5.1.3 Recipient address needs a domain"
    if address_domain(address) not in domains:
        return "550 5.7.1 Relay access denied: this server accepts mail only for its own domains"
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
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return any(addr in net for net in nets)


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
        if "@" in rcpt and address_domain(rcpt) in self.domains:
            return CONTINUE
        if "@" not in rcpt:
            return reject(self.name, 550, "5.1.3", f"<{rcpt}>: Recipient address needs a domain")
        if ask.client.trusted:
            return note(self.name, f"relay for trusted network client [{ask.client.ip}]")
        if ask.client.user is not None and self.relay_authenticated:
            return note(self.name, f"relay for authenticated user {ask.client.user}")
        return reject(self.name, 550, "5.7.1",
                      "Relay access denied: this server accepts mail only for its own domains")
