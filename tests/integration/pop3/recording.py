"""An in-memory Publisher for the pop3-proxy tests: Kafka is not under test there."""

from __future__ import annotations

import asyncio
from typing import Any


class PublishFailed(Exception):
    """What the recording publisher raises when told to fail (like KafkaUnavailable)."""


class RecordingPublisher:
    """Implements the Publisher protocol in memory: ``events`` holds what was
    "acknowledged". ``fail_after=n`` acknowledges n events, then raises;
    ``hang_from=n`` acknowledges every event but returns only for the first n
    (after that the process "died" right after the broker acknowledged).
    """

    def __init__(self, fail_after: int | None = None, hang_from: int | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail_after = fail_after
        self.hang_from = hang_from

    async def publish(self, topic: Any, event: dict[str, Any], *, event_type: str | None = None) -> None:
        if self.fail_after is not None and len(self.events) >= self.fail_after:
            raise PublishFailed("the in-queue is unavailable (test)")
        self.events.append(event)
        if self.hang_from is not None and len(self.events) > self.hang_from:
            await asyncio.Event().wait()

    @property
    def mail_ids(self) -> list[str]:
        return [e["mail_id"] for e in self.events]
