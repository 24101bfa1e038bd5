"""control/engine — the engine's link to the control plane: the desired state it obeys, the
configuration it gives the services it starts, and the status it reports.

Reads control.desired and config (compacted, followed in threads), writes
control.status (and control.desired when a policy overrides a stop).
"""

from __future__ import annotations

import threading
from typing import Any

from core.control_channel import (
    ALL_NODES,
    PROCESS,
    REFRESH,
    DesiredTable,
    Record,
    desired_key,
    now_ms,
    produce_event,
    status_key,
)
from core.kafka import make_producer
from core.logging import get_logger
from control.settings import Settings
from core.tables import DecodedTable
from schemas.topics import CONFIG, CONTROL_DESIRED, CONTROL_STATUS, TopicNames

log = get_logger("engine")


def env_name(key: str) -> str:
    """The environment variable of a dotted settings key: smtp_server.port → MAILGATE_SMTP_SERVER__PORT."""
    return "MAILGATE_" + "__".join(part.upper() for part in key.split("."))


class NodeLink:
    def __init__(self, settings: Settings) -> None:
        self.node = settings.node
        names = TopicNames(settings.kafka.topic_prefix)
        self._desired_topic, self._status_topic = names(CONTROL_DESIRED), names(CONTROL_STATUS)
        self.started_ms = now_ms()
        self.refresh_requested = threading.Event()
        self._producer = make_producer(settings, "engine")
        self._desired = DesiredTable(settings, self._desired_changed, name="engine")
        self._config = DecodedTable(settings, names(CONFIG), "ConfigChanged", name="engine-config")

    def start(self, timeout: float = 30.0) -> NodeLink:
        self._desired.start(timeout)
        self._config.start(timeout)
        return self

    def stop(self) -> None:
        self._producer.flush(10)
        self._desired.stop()
        self._config.stop()

    def _desired_changed(self, key: str, record: Record | None) -> None:
        if (record is not None and key in (desired_key(REFRESH, self.node), desired_key(REFRESH, ALL_NODES))
                and record["event_time"] >= self.started_ms):
            self.refresh_requested.set()

    def effective(self, service: str) -> Record | None:
        """The process record of control.desired that applies to ``service`` on this node."""
        return self._desired.effective(PROCESS, self.node, service)

    def config_env(self) -> dict[str, str]:
        """The configuration set through the control plane, as environment variables."""
        return {env_name(k): r["value"] for k, r in self._config.snapshot().items() if r["value"] is not None}

    def write_desired(self, service: str, state: str, reason: str) -> None:
        """A policy of this engine overrides what control.desired says, for this node only."""
        record: dict[str, Any] = {"node": self.node, "service": service, "aspect": PROCESS, "state": state,
                                  "actor": f"engine@{self.node}", "reason": reason}
        current = self.effective(service)
        record["restart_generation"] = current["restart_generation"] if current else 0
        produce_event(self._producer, self._desired_topic, desired_key(PROCESS, self.node, service),
                      "ServiceDesired", record)
        log.info("desired state overridden", name=service, state=state, reason=reason)

    def report(self, record: Record) -> None:
        try:
            produce_event(self._producer, self._status_topic, status_key(self.node, record["service"], PROCESS),
                          "ServiceStatus", {**record, "node": self.node, "aspect": PROCESS})
        except BufferError as exc:
            log.warning("status not reported", name=record["service"], error=str(exc))
