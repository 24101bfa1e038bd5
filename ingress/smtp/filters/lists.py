"""smtp-server filter ``lists``: allow and deny lists for clients (networks), senders
and recipients. Entries mean what they mean in phase 2 too (``core.address_lists``):
"user@domain" (one user), "domain" (its users and its subdomains'), "@domain" (its
users only) or ".domain" (its subdomains' users only).

Sender lists exist on three levels: global, per recipient domain of ours, per
recipient user. The most specific list that names the sender decides for a
recipient (user > domain > global); on one level deny wins over allow (as in
message-validation's lists, ``streams.validation.policy``). So the owners' lists
are asked at RCPT, for each recipient. The global ones are asked at MAIL as before,
except that a globally denied sender some owner allows is decided per recipient.

The order: client deny, global sender deny, client allow, global sender allow (MAIL);
recipient deny, the recipient's user and domain lists (and the global deny, when it
was put off), recipient allow (RCPT). Each refusal says which list refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.address_lists import AddressList

from ingress.smtp.filters.relay import address_domain, in_networks, parse_networks
from ingress.smtp.filters.verdict import CONTINUE, Check, Stage, Verdict, accept, note, reject
from ingress.smtp.settings import ListFilterSettings, OwnerSenderLists


@dataclass(frozen=True)
class Listed:
    """A sender named by a list: "deny" or "allow", whose list ("global", "domain
    example.com", "user alice@example.com") and the entry that matched."""

    kind: str
    owner: str
    entry: str

    @property
    def which(self) -> str:
        return f"global sender {self.kind} list" if self.owner == "global" else \
            f"sender {self.kind} list of {self.owner}"


class SenderLists:
    """The sender lists of one owner; on this level deny wins."""

    def __init__(self, owner: str, allow: Iterable[str], deny: Iterable[str]) -> None:
        self.owner, self.allow, self.deny = owner, AddressList(allow), AddressList(deny)

    def match(self, sender: str) -> Listed | None:
        if not sender:
            return None  # the null sender (bounces) is never listed
        if (hit := self.deny.match(sender)) is not None:
            return Listed("deny", self.owner, hit)
        if (hit := self.allow.match(sender)) is not None:
            return Listed("allow", self.owner, hit)
        return None


class SenderPolicy:
    """Which sender list decides for a recipient: user > domain > global."""

    def __init__(self, cfg: ListFilterSettings) -> None:
        self.global_lists = SenderLists("global", cfg.sender_allow, cfg.sender_deny)
        self.domains = {d: self._owner(f"domain {d}", o) for d, o in cfg.domains.items()}
        self.users = {u: self._owner(f"user {u}", o) for u, o in cfg.users.items()}

    @staticmethod
    def _owner(owner: str, lists: OwnerSenderLists) -> SenderLists:
        return SenderLists(owner, lists.sender_allow, lists.sender_deny)

    def for_recipient(self, sender: str, rcpt: str) -> Listed | None:
        """The verdict of the most specific list that names the sender, for this recipient."""
        address = rcpt.strip().lower()
        for lists in (self.users.get(address), self.domains.get(address_domain(address)), self.global_lists):
            if lists is not None and (hit := lists.match(sender)) is not None:
                return hit
        return None

    def some_owner_allows(self, sender: str) -> bool:
        """A domain's or user's list allows this sender (for some recipient it may override
        a global deny)."""
        return any((hit := o.match(sender)) is not None and hit.kind == "allow"
                   for o in (*self.domains.values(), *self.users.values()))


def refused(sender: str, hit: Listed) -> str:
    return f"<{sender}>: Sender address rejected by policy: on the {hit.which} ({hit.entry})"


class Lists:
    name = "lists"
    stages = frozenset({Stage.MAIL, Stage.RCPT})
    bypassable = False

    def __init__(self, cfg: ListFilterSettings) -> None:
        self.client_allow = parse_networks(cfg.client_allow)
        self.client_deny = parse_networks(cfg.client_deny)
        self.senders = SenderPolicy(cfg)
        self.rcpt_allow, self.rcpt_deny = AddressList(cfg.recipient_allow), AddressList(cfg.recipient_deny)

    async def check(self, ask: Check) -> Verdict:
        if ask.stage is Stage.RCPT:
            return self._rcpt(ask.tx.mail_from, ask.rcpt or "")
        ip, sender = ask.client.ip, ask.tx.mail_from
        if in_networks(ip, self.client_deny):
            return reject(self.name, 554, "5.7.1", f"Client host [{ip}] refused by policy (deny list)")
        hit = self.senders.global_lists.match(sender)
        put_off = hit is not None and hit.kind == "deny" and self.senders.some_owner_allows(sender)
        if hit is not None and hit.kind == "deny" and not put_off:
            return reject(self.name, 550, "5.7.1", refused(sender, hit))
        if in_networks(ip, self.client_allow):
            ask.client.allowed = True
            return accept(self.name, f"client [{ip}] on the allow list")
        if put_off:
            assert hit is not None
            return note(self.name, f"sender on the {hit.which} ({hit.entry}), but allowed by some recipient's "
                                   "own list: decided per recipient")
        if hit is not None:
            return accept(self.name, f"sender on the {hit.which} ({hit.entry})")
        return CONTINUE

    def _rcpt(self, sender: str, rcpt: str) -> Verdict:
        if (entry := self.rcpt_deny.match(rcpt)) is not None:
            return reject(self.name, 550, "5.7.1", f"<{rcpt}>: Recipient address rejected by policy ({entry})")
        hit = self.senders.for_recipient(sender, rcpt)
        if hit is not None and hit.kind == "deny":
            return reject(self.name, 550, "5.7.1", refused(sender, hit))
        if hit is not None and hit.owner != "global":  # a global allow was decided at MAIL already
            return accept(self.name, f"sender on the {hit.which} ({hit.entry})")
        if (entry := self.rcpt_allow.match(rcpt)) is not None:
            return accept(self.name, f"recipient on the allow list ({entry})")
        return CONTINUE
