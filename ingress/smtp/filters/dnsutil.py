"""smtp-server filters: DNS answers sorted into found / not found / failed."""

from __future__ import annotations

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.resolver

# Named, not detected: the engine runs a step's first part outside any task (sniffio would fail).
ASYNCIO = dns.asyncbackend.get_backend("asyncio")


class DnsTempError(Exception):
    """The DNS did not answer (timeout, SERVFAIL): the client should try again later."""


async def lookup(resolver: dns.asyncresolver.Resolver, name: str, rtype: str) -> list[str]:
    """The records' texts; [] when the name or the type does not exist."""
    try:
        answer = await resolver.resolve(name, rtype, search=False, backend=ASYNCIO)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
        raise DnsTempError(f"{rtype} {name}: {exc.__class__.__name__}") from exc
    except dns.exception.DNSException as exc:
        raise DnsTempError(f"{rtype} {name}: {exc}") from exc
    return [r.to_text() for r in answer]
