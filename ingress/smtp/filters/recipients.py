"""smtp-server filter ``recipients``: recipient verification, so that mail for users
who do not exist is refused during the dialogue (no backscatter later).

A static list ("user@domain", "@domain" for every user) decides for the domains it
names; for the others, when configured, a callout asks the internal mail server
(EHLO, MAIL FROM:<>, RCPT TO) and caches its answer: valid and invalid for their own
times, a temporary failure not at all.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import aiosmtplib

from core.settings import parse_hostport
from ingress.smtp.settings import RecipientFilterSettings
from ingress.smtp.filters.relay import address_domain
from ingress.smtp.filters.verdict import CONTINUE, Check, Stage, Verdict, note, reject, tempfail


class CalloutCache:
    def __init__(self, valid_s: float, invalid_s: float, size: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.valid_s, self.invalid_s, self.size, self.clock = valid_s, invalid_s, size, clock
        self._entries: OrderedDict[str, tuple[float, bool, str]] = OrderedDict()

    def get(self, address: str) -> tuple[bool, str] | None:
        hit = self._entries.get(address)
        if hit is None:
            return None
        expires, valid, reply = hit
        if expires <= self.clock():
            del self._entries[address]
            return None
        return valid, reply

    def put(self, address: str, valid: bool, reply: str) -> None:
        ttl = self.valid_s if valid else self.invalid_s
        if ttl <= 0:
            return
        self._entries[address] = (self.clock() + ttl, valid, reply)
        self._entries.move_to_end(address)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


class RecipientVerify:
    name = "recipients"
    stages = frozenset({Stage.RCPT})
    bypassable = False

    def __init__(self, domains: Iterable[str], cfg: RecipientFilterSettings, helo: str = "mailgate.localdomain") -> None:
        self.domains = {d.lower() for d in domains}
        self.users: set[str] = set()
        self.catch_all: set[str] = set()
        self.listed: set[str] = set()
        for entry in cfg.addresses:
            e = entry.strip().strip("<>").lower()
            domain = address_domain(e)
            self.listed.add(domain)
            if e.startswith("@"):
                self.catch_all.add(domain)
            else:
                self.users.add(e)
        self.callout = parse_hostport(cfg.callout, 25) if cfg.callout else None
        self.timeout = cfg.callout_timeout_s
        self.cache = CalloutCache(cfg.cache_valid_s, cfg.cache_invalid_s)
        self.helo = helo
        self.callouts = 0  # how many times the internal server was asked

    async def check(self, ask: Check) -> Verdict:
        rcpt = (ask.rcpt or "").lower()
        domain = address_domain(rcpt)
        if domain not in self.domains:
            return CONTINUE  # relaying (trusted/authenticated): not ours to verify
        if domain in self.listed:
            if rcpt in self.users or domain in self.catch_all:
                return CONTINUE
            return self._unknown(ask.rcpt or "", "not in the recipient list")
        if self.callout is None:
            return CONTINUE
        cached = self.cache.get(rcpt)
        if cached is not None:
            valid, reply = cached
            return note(self.name, f"verified (cached): {reply}") if valid else self._unknown(ask.rcpt or "", reply)
        code, reply = await self._ask(rcpt)
        if 200 <= code < 300:
            self.cache.put(rcpt, True, reply)
            return note(self.name, f"verified with {self.callout[0]}: {reply}")
        if 500 <= code < 600:
            self.cache.put(rcpt, False, reply)
            return self._unknown(ask.rcpt or "", reply)
        return tempfail(self.name, 451, "4.4.3",
                        f"<{ask.rcpt}>: Recipient verification is unavailable, try again later ({reply})")

    def _unknown(self, rcpt: str, why: str) -> Verdict:
        return reject(self.name, 550, "5.1.1", f"<{rcpt}>: Recipient address rejected: no such user here ({why})")

    async def _ask(self, rcpt: str) -> tuple[int, str]:
        """The internal server's answer to RCPT TO, or (0, why) when it could not be asked."""
        assert self.callout is not None
        self.callouts += 1
        host, port = self.callout
        client = aiosmtplib.SMTP(hostname=host, port=port, timeout=self.timeout, local_hostname=self.helo,
                                 start_tls=False, use_tls=False)
        try:
            await client.connect()
            await client.ehlo()
            await client.mail("")
            try:
                resp = await client.rcpt(rcpt)
            except aiosmtplib.SMTPRecipientRefused as exc:
                return exc.code, f"{exc.code} {exc.message}"
            return resp.code, f"{resp.code} {resp.message}"
        except aiosmtplib.SMTPResponseException as exc:
            return (exc.code if 400 <= exc.code < 500 else 0), f"{exc.code} {exc.message}"
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return 0, f"callout to {host}:{port} failed: {exc}"
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()
