"""smtp-client routing: where mail for a destination domain goes.

In order: the per-domain transport map (a fixed next hop, or "mx"), then the
smarthost, then MX lookup with the implicit MX (the domain's own A/AAAA) when
the domain has no MX records (RFC 5321 5.1). A null MX (RFC 7505) and a domain
that does not exist fail permanently; a DNS server that does not answer fails
temporarily.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from core.settings import parse_hostport
from egress.smtp_client.settings import SmtpClientSettings, TlsPolicy

MAX_ADDRESSES = 5  # addresses tried per attempt, like Postfix's smtp_mx_address_limit


@dataclass(frozen=True)
class Host:
    """One address to connect to; ``name`` is what TLS verifies (the MX or transport host name)."""

    name: str
    address: str
    port: int

    @property
    def label(self) -> str:
        addr = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.name}[{addr}]:{self.port}" if self.name != self.address else f"{addr}:{self.port}"


@dataclass(frozen=True)
class Route:
    destination: str
    hosts: tuple[Host, ...]
    tls: TlsPolicy
    limit_key: str  # connections to one destination share one concurrency limit


class RouteError(Exception):
    """No host to try: ``code`` is the SMTP-like reply the recipients get."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text

    @property
    def permanent(self) -> bool:
        return self.code >= 500


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Router:
    def __init__(self, cfg: SmtpClientSettings, resolver: dns.asyncresolver.Resolver | None = None) -> None:
        self.cfg = cfg
        self.resolver = resolver or cfg.dns.resolver()

    async def route(self, destination: str) -> Route:
        domain = destination.lower().rstrip(".")
        tls = self.cfg.tls_for(domain)
        fixed = self.cfg.transport.get(domain) or self.cfg.smarthost or "mx"
        if fixed.lower() != "mx":
            host, port = parse_hostport(fixed, 25)
            # Configured hops are resolved by the system (``/etc/hosts`` counts), when connecting.
            return Route(domain, (Host(host, host, port),), tls, f"{host}:{port}")
        return Route(domain, await self._mx_hosts(domain), tls, domain)

    async def _mx_hosts(self, domain: str) -> tuple[Host, ...]:
        try:
            answer = await self.resolver.resolve(domain, "MX")
            mxs = sorted((r.preference, random.random(), r.exchange.to_text().rstrip(".")) for r in answer)
            names = [name for _, _, name in mxs]
        except dns.resolver.NXDOMAIN:
            raise RouteError(550, f"5.1.2 domain {domain} does not exist (DNS NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            names = [domain]  # implicit MX: the domain's own address records
        except dns.exception.DNSException as exc:
            raise RouteError(451, f"4.4.3 MX lookup for {domain} failed: {type(exc).__name__}") from None
        if names == [""]:
            raise RouteError(556, f"5.1.10 {domain} accepts no mail (null MX)")
        hosts: list[Host] = []
        problems: list[str] = []
        for name in names:
            if _is_ip(name):
                hosts.append(Host(name, name, self.cfg.mx_port))
                continue
            for rtype in ("A", "AAAA"):
                try:
                    answer = await self.resolver.resolve(name, rtype)
                except dns.resolver.NoAnswer:
                    continue
                except dns.exception.DNSException as exc:
                    problems.append(f"{name}/{rtype}: {type(exc).__name__}")
                    continue
                hosts.extend(Host(name, r.address, self.cfg.mx_port) for r in answer)
            if len(hosts) >= MAX_ADDRESSES:
                break
        if not hosts:
            detail = "; ".join(problems) or "no A/AAAA records"
            raise RouteError(451, f"4.4.4 no address for the mail hosts of {domain} ({detail})")
        return tuple(hosts[:MAX_ADDRESSES])
