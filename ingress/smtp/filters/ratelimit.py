"""smtp-server filter ``ratelimit``: messages per window per client IP and per sender.
Over the limit: 450 4.7.1 (the sender retries later). Counted at MAIL, per listener
process, in a sliding window."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from ingress.smtp.settings import RateLimitSettings
from ingress.smtp.filters.verdict import CONTINUE, Check, Stage, Verdict, tempfail


class SlidingWindow:
    """At most ``limit`` events per ``window`` seconds for each key."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._events: dict[str, deque[float]] = {}

    def hit(self, key: str) -> bool:
        """Count one event; False when it is over the limit (and then it is not counted)."""
        now = self.clock()
        q = self._events.get(key)
        if q is None:
            if len(self._events) > 100_000:
                self._prune(now)
            q = self._events[key] = deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if len(q) >= self.limit:
            return False
        q.append(now)
        return True

    def _prune(self, now: float) -> None:
        for key in [k for k, q in self._events.items() if not q or q[-1] <= now - self.window]:
            del self._events[key]


class RateLimit:
    name = "ratelimit"
    stages = frozenset({Stage.MAIL})
    bypassable = False

    def __init__(self, cfg: RateLimitSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = cfg.window_s
        self.clients = SlidingWindow(cfg.per_client, cfg.window_s, clock) if cfg.per_client else None
        self.senders = SlidingWindow(cfg.per_sender, cfg.window_s, clock) if cfg.per_sender else None

    async def check(self, ask: Check) -> Verdict:
        if self.clients is not None and not self.clients.hit(ask.client.ip):
            return tempfail(self.name, 450, "4.7.1",
                            f"Too many messages from [{ask.client.ip}]: at most {self.clients.limit} "
                            f"per {self.window:g} s, try again later")
        sender = ask.tx.mail_from.lower() or "<>"
        if self.senders is not None and not self.senders.hit(sender):
            return tempfail(self.name, 450, "4.7.1",
                            f"Too many messages from <{ask.tx.mail_from}>: at most {self.senders.limit} "
                            f"per {self.window:g} s, try again later")
        return CONTINUE
