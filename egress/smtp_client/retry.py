"""smtp-client retries: deferred mail waits on retry topics, not in memory.

A copy that got a temporary failure (4xx, no connection, TLS required but not
offered) is written to retry topic 1, 2 or 3 (``mail.retry.N``; after the 3rd
attempt it stays on the 3rd) as a MailRouted with only the remaining
recipients, the number of attempts made, the time of the first attempt and the
time it is due. Each topic has one delay, so its records fall due in offset
order: the consumer pauses a partition whose head record is not due yet, seeks
back to it, and resumes it when it is due. The consumer never sleeps while
holding the group. A copy older than the maximum queue lifetime (counted from
when the gateway accepted the mail) bounces instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.topics import MAIL_RETRY

TP = tuple[str, int]


def retry_topic(attempts: int) -> str:
    """The (unprefixed) retry topic after ``attempts`` attempts (1 → mail.retry.1, 3+ → mail.retry.3)."""
    return MAIL_RETRY[min(max(attempts, 1), len(MAIL_RETRY)) - 1]


def retry_delay_s(attempts: int, delays: list[float]) -> float:
    return delays[min(max(attempts, 1), len(delays)) - 1]


def expired(routed: dict[str, Any], now_ms: int, lifetime_s: float) -> bool:
    return now_ms - int(routed["received_time"]) >= lifetime_s * 1000


def retry_record(routed: dict[str, Any], remaining: list[str], attempts: int, first_attempt_ms: int,
                 due_ms: int, last_reply: str, node: str, now_ms: int) -> dict[str, Any]:
    return {**routed, "event_time": now_ms, "node": node, "rcpt_to": list(remaining), "attempt": attempts,
            "first_attempt_time": first_attempt_ms, "due_time": due_ms, "last_reply": last_reply}


@dataclass
class DueGate:
    """Partitions paused until their head record is due: tp → (offset to resume at, due ms)."""

    waiting: dict[TP, tuple[int, int]] = field(default_factory=dict)

    def hold(self, tp: TP, offset: int, due_ms: int) -> None:
        self.waiting[tp] = (offset, due_ms)

    def holds(self, tp: TP) -> bool:
        return tp in self.waiting

    def release_due(self, now_ms: int) -> list[TP]:
        due = [tp for tp, (_, at) in self.waiting.items() if at <= now_ms]
        for tp in due:
            del self.waiting[tp]
        return due

    def forget(self, tps: set[TP]) -> None:
        for tp in tps:
            self.waiting.pop(tp, None)
