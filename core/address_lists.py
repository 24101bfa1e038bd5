"""core: the one meaning of an allow/deny list entry, for both phases — smtp-server's
lists during the dialogue (``ingress/smtp/filters/lists.py``) and message-validation's
sender lists (``streams/validation/policy.py``).

An entry is one of:

- ``user@domain``: that address only;
- ``domain``: every address of that domain **and of its subdomains** (as a Postfix
  access map matches by default: ``spammer.test`` also takes ``mx1.spammer.test``);
- ``@domain``: every address of that domain only, not of its subdomains;
- ``.domain``: every address of its subdomains only, not of the domain itself.

Case, angle brackets and a trailing dot do not matter.
"""

from __future__ import annotations

from collections.abc import Iterable


def normalise(address: str) -> str:
    return address.strip().strip("<>").lower().rstrip(".")


class AddressList:
    """A list of entries, asked which entry names an address (walks the address's domain
    and its parents, so the cost does not grow with the list)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.users: set[str] = set()
        self.exact: set[str] = set()  # "@domain"
        self.trees: set[str] = set()  # "domain": it and its subdomains
        self.below: set[str] = set()  # ".domain": its subdomains
        for raw in entries:
            e = normalise(raw)
            if e.startswith("@"):
                self.exact.add(e[1:])
            elif "@" in e:
                self.users.add(e)
            elif e.startswith("."):
                self.below.add(e[1:])
            elif e:
                self.trees.add(e)

    def __bool__(self) -> bool:
        return bool(self.users or self.exact or self.trees or self.below)

    def match(self, address: str) -> str | None:
        """The entry that names this address (``user@domain``, ``domain`` or ``.domain``), or None."""
        a = normalise(address)
        if a in self.users:
            return a
        domain = a.rpartition("@")[2]
        if domain in self.exact or domain in self.trees:
            return domain
        labels = domain.split(".")
        for i in range(1, len(labels)):
            parent = ".".join(labels[i:])
            if parent in self.trees:
                return parent
            if parent in self.below:
                return "." + parent
        return None
