"""smtp-server filter ``helo``: the HELO/EHLO name must be a valid hostname (fully
qualified, if so configured) or an address literal, and must not claim to be us.
Checked at MAIL (like Postfix's delayed reject), so allow lists can skip it."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache

from ingress.smtp.settings import HeloFilterSettings
from ingress.smtp.filters.verdict import CONTINUE, Check, Stage, Verdict, reject

LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
PLAIN_FQDN = re.compile(r"^(?=.{1,253}\.?$)(?:(?!-)[A-Za-z0-9-]{1,63}(?<!-)\.)+[A-Za-z][A-Za-z0-9-]{0,62}(?<!-)\.?$")


def literal_ok(name: str) -> bool:
    inner = name[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        ipaddress.ip_address(inner)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=4096)  # a pure function of its arguments; clients send the same few names
def helo_problem(name: str, require_fqdn: bool) -> tuple[int, str] | None:
    """(code, reason) when the name is unacceptable, else None."""
    if PLAIN_FQDN.match(name):
        return None  # the usual case, at once
    if name.startswith("[") and name.endswith("]"):
        return None if literal_ok(name) else (501, "Invalid address literal")
    try:
        ipaddress.ip_address(name)
        return 501, "An address must be given as a literal, e.g. [192.0.2.1]"
    except ValueError:
        pass
    host = name.removesuffix(".")
    if len(host) > 253 or not all(LABEL.match(label) for label in host.split(".")):
        return 501, "Invalid name"
    if require_fqdn and "." not in host:
        return 504, "Need fully-qualified hostname"
    return None


class HeloCheck:
    name = "helo"
    stages = frozenset({Stage.MAIL})
    bypassable = True

    def __init__(self, cfg: HeloFilterSettings, hostname: str, domains: Iterable[str]) -> None:
        self.require_fqdn = cfg.require_fqdn
        self.ours = {hostname.lower().rstrip("."), *(d.lower() for d in domains)}

    async def check(self, ask: Check) -> Verdict:
        name = (ask.client.helo or "").strip()
        problem = helo_problem(name, self.require_fqdn)
        if problem is not None:
            code, why = problem
            return reject(self.name, code, "5.5.2", f"<{name}>: Helo command rejected: {why}")
        if name.lower().rstrip(".") in self.ours:
            return reject(self.name, 550, "5.7.1", f"<{name}>: Helo command rejected: that is my name, not yours")
        return CONTINUE
