"""core: which DNS servers a service asks — one settings model for every stage that
looks names up (smtp-server's filters, smtp-client's MX routing, message-validation's
DKIM/DMARC) — and the parsers of setting values that several stages share."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

if TYPE_CHECKING:
    import dns.asyncresolver


def split_list(v: Any) -> Any:
    """"a, b,c" → ["a", "b", "c"]; a list stays as it is."""
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    return v


def split_pairs(v: Any, shape: str) -> Any:
    """"a=x,b=y" → {"a": "x", "b": "y"} (keys as written); a mapping stays as it is."""
    if isinstance(v, str):
        pairs = [p.split("=", 1) for p in v.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f'expected "{shape}" pairs separated by commas')
        return {k.strip(): s.strip() for k, s in pairs}
    return v


def split_map(v: Any) -> Any:
    """"a.test=x,b.test=y" (or JSON, or a TOML table) → {"a.test": "x", "b.test": "y"}."""
    if isinstance(v, str):
        v = v.strip()
        if v.startswith("{"):
            return json.loads(v)
        pairs = [p.split("=", 1) for p in v.split(",") if p.strip()]
        bad = [p[0] for p in pairs if len(p) != 2]
        if bad:
            raise ValueError(f"expected domain=value pairs separated by commas, got {bad[0]!r}")
        return {k.strip().lower(): val.strip() for k, val in pairs}
    return {str(k).lower(): val for k, val in v.items()}


def parse_hostport(value: str, default_port: int) -> tuple[str, int]:
    """ "host:port", "[v6addr]:port" or "host" → (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    host, sep, port = value.rpartition(":")
    if not sep or ":" in host:
        return value, default_port
    return host, int(port or default_port)


class DnsSettings(BaseModel):
    """Which DNS servers a service asks (MX lookups; rDNS, DNSBL, SPF)."""

    nameservers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated addresses; empty: those of /etc/resolv.conf."
    )
    port: int = Field(default=53, ge=1, le=65535)
    timeout_s: float = Field(default=5.0, gt=0, description="Lifetime of one lookup, all servers and retries.")

    @field_validator("nameservers", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return split_list(v)

    def resolver(self) -> dns.asyncresolver.Resolver:
        """An asyncio resolver with these servers (no cache: answers are as fresh as the DNS)."""
        import dns.asyncresolver

        if self.nameservers:
            res = dns.asyncresolver.Resolver(configure=False)
            res.nameservers = list(self.nameservers)
        else:
            res = dns.asyncresolver.Resolver()
        res.port = self.port
        res.lifetime = self.timeout_s
        res.timeout = min(self.timeout_s, 2.0)
        return res
