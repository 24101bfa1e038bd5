"""control-server: control.status, followed in a thread — what every instance reported last."""

from __future__ import annotations

import time

from core.control_channel import Record
from core.logging import get_logger
from control.settings import Settings
from core.tables import DecodedTable
from schemas.topics import CONTROL_STATUS, TopicNames

log = get_logger("control-server")


class StatusTable:
    def __init__(self, settings: Settings) -> None:
        self._table = DecodedTable(settings, TopicNames(settings.kafka.topic_prefix)(CONTROL_STATUS), "ServiceStatus",
                                   name="control-status")

    def start(self, timeout: float = 30.0) -> StatusTable:
        self._table.start(timeout)
        return self

    def stop(self) -> None:
        self._table.stop()

    def snapshot(self) -> list[Record]:
        return list(self._table.snapshot().values())

    def nodes(self) -> set[str]:
        return {r["node"] for r in self.snapshot()}

    def wait_reports(self, nodes: set[str], after_ms: int, timeout: float) -> bool:
        """Waits until every node in ``nodes`` reported its processes at or after ``after_ms``."""
        deadline = time.monotonic() + timeout

        def fresh() -> bool:
            latest = {n: 0 for n in nodes}
            for r in self._table.snapshot().values():
                if r["node"] in latest and r["aspect"] == "process":
                    latest[r["node"]] = max(latest[r["node"]], r["event_time"])
            return all(t >= after_ms for t in latest.values())

        with self._table.changed:
            while not fresh():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._table.changed.wait(left)
        return True
