"""control-server: control.status, followed in a thread — what every instance reported last."""

from __future__ import annotations

import threading
import time

from core.control_channel import Record
from core.logging import get_logger
from core.settings import Settings
from core.tables import TableFollower
from schemas import default_codec
from schemas.topics import CONTROL_STATUS, TopicNames

log = get_logger("control-server")


class StatusTable:
    def __init__(self, settings: Settings) -> None:
        self._records: dict[str, Record] = {}
        self._changed = threading.Condition()
        self._follower = TableFollower(settings, TopicNames(settings.kafka.topic_prefix)(CONTROL_STATUS),
                                       self._apply, name="control-status")

    def _apply(self, key: bytes, value: bytes | None) -> None:
        try:
            record = default_codec().decode(value, expect="ServiceStatus").record if value else None
        except ValueError as exc:
            log.warning("unreadable status record skipped", key=key.decode(errors="replace"), error=str(exc))
            return
        with self._changed:
            if record is None:
                self._records.pop(key.decode(), None)
            else:
                self._records[key.decode()] = record
            self._changed.notify_all()

    def start(self, timeout: float = 30.0) -> StatusTable:
        self._follower.start(timeout)
        return self

    def stop(self) -> None:
        self._follower.stop()

    def snapshot(self) -> list[Record]:
        with self._changed:
            return list(self._records.values())

    def nodes(self) -> set[str]:
        return {r["node"] for r in self.snapshot()}

    def wait_reports(self, nodes: set[str], after_ms: int, timeout: float) -> bool:
        """Waits until every node in ``nodes`` reported its processes at or after ``after_ms``."""
        deadline = time.monotonic() + timeout

        def fresh() -> bool:
            latest = {n: 0 for n in nodes}
            for r in self._records.values():
                if r["node"] in latest and r["aspect"] == "process":
                    latest[r["node"]] = max(latest[r["node"]], r["event_time"])
            return all(t >= after_ms for t in latest.values())

        with self._changed:
            while not fresh():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True
