"""smtp-server filter ``lists``: allow and deny lists for clients (networks), senders
and recipients. Entries are "user@domain" (one user), "domain" (its users) or
".domain" (its subdomains' users). Deny lists are checked before allow lists."""

from __future__ import annotations

from collections.abc import Iterable

from core.settings import ListFilterSettings
from ingress.smtp.filters.relay import in_networks, parse_networks
from ingress.smtp.filters.verdict import CONTINUE, Check, Stage, Verdict, accept, reject


class AddressList:
    def __init__(self, entries: Iterable[str]) -> None:
        self.users: set[str] = set()
        self.domains: set[str] = set()
        self.suffixes: tuple[str, ...] = ()
        suffixes = []
        for raw in entries:
            e = raw.strip().strip("<>").lower().rstrip(".")
            if e.startswith("@"):
                self.domains.add(e[1:])
            elif "@" in e:
                self.users.add(e)
            elif e.startswith("."):
                suffixes.append(e)
            elif e:
                self.domains.add(e)
        self.suffixes = tuple(suffixes)

    def match(self, address: str) -> str | None:
        """The entry that matches this address, or None."""
        a = address.strip().lower().rstrip(".")
        if a in self.users:
            return a
        domain = a.rpartition("@")[2]
        if domain in self.domains:
            return domain
        for s in self.suffixes:
            if domain.endswith(s):
                return s
        return None


class Lists:
    name = "lists"
    stages = frozenset({Stage.MAIL, Stage.RCPT})
    bypassable = False

    def __init__(self, cfg: ListFilterSettings) -> None:
        self.client_allow = parse_networks(cfg.client_allow)
        self.client_deny = parse_networks(cfg.client_deny)
        self.sender_allow, self.sender_deny = AddressList(cfg.sender_allow), AddressList(cfg.sender_deny)
        self.rcpt_allow, self.rcpt_deny = AddressList(cfg.recipient_allow), AddressList(cfg.recipient_deny)

    async def check(self, ask: Check) -> Verdict:
        if ask.stage is Stage.RCPT:
            rcpt = ask.rcpt or ""
            if (hit := self.rcpt_deny.match(rcpt)) is not None:
                return reject(self.name, 550, "5.7.1", f"<{rcpt}>: Recipient address rejected by policy ({hit})")
            if (hit := self.rcpt_allow.match(rcpt)) is not None:
                return accept(self.name, f"recipient on the allow list ({hit})")
            return CONTINUE
        ip, sender = ask.client.ip, ask.tx.mail_from
        if in_networks(ip, self.client_deny):
            return reject(self.name, 554, "5.7.1", f"Client host [{ip}] refused by policy (deny list)")
        if sender and (hit := self.sender_deny.match(sender)) is not None:
            return reject(self.name, 550, "5.7.1", f"<{sender}>: Sender address rejected by policy ({hit})")
        if in_networks(ip, self.client_allow):
            ask.client.allowed = True
            return accept(self.name, f"client [{ip}] on the allow list")
        if sender and (hit := self.sender_allow.match(sender)) is not None:
            return accept(self.name, f"sender on the allow list ({hit})")
        return CONTINUE
