"""pop3-proxy / pop3s-proxy: each account's status, reported to control.status so
that an administrator sees last success and last error per account
(``mailgate pop3 status``).

One ServiceStatus record per account, key ``node/service/account/<name>``
(aspect ``account/<name>``), written after every cycle, at start and at stop,
and forgotten (a tombstone) when the account is no longer configured;
``state`` is the account's (idle, collecting, backoff, stopped) and ``detail``
the account's status as compact JSON (``status_detail``), readable as it is.
Reporting never waits for Kafka and never stops a collection.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from core.control_channel import ACCOUNT, now_ms, produce_event, status_key
from core.kafka import make_producer
from core.logging import get_logger
from ingress.pop3.settings import Settings
from core.tables import load_table
from ingress.pop3.collector import AccountStatus
from schemas.topics import CONTROL_STATUS, TopicNames

log = get_logger("pop3-proxy")
_LISTED = 5  # UIDLs named per problem in the detail; the log has them all


def status_detail(status: AccountStatus) -> str:
    """The account's status as JSON: times in ms since the epoch, counts, the last cycle."""
    d: dict[str, Any] = status.as_dict()
    del d["account"], d["state"]
    cycle = d.get("last_cycle")
    if cycle:
        for k in ("too_large", "refused"):
            cycle[k] = cycle[k][:_LISTED]
        cycle["seconds"] = round(cycle["seconds"], 3)
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False)


class StatusReporter:
    """Writes account statuses to control.status (queued; flushed on ``close``)."""

    def __init__(self, settings: Settings, service: str) -> None:
        self.node, self.service = settings.node, service
        self._topic = TopicNames(settings.kafka.topic_prefix)(CONTROL_STATUS)
        self._producer = make_producer(settings, f"{service}-status")
        self._since: dict[str, tuple[str, int]] = {}  # account → (state, since)

    def report(self, status: AccountStatus) -> None:
        state, since = self._since.get(status.account, ("", 0))
        if state != status.state:
            state, since = status.state, now_ms()
            self._since[status.account] = (state, since)
        aspect = f"{ACCOUNT}/{status.account}"
        record = {"node": self.node, "service": self.service, "aspect": aspect, "state": state, "since": since,
                  "detail": status_detail(status)}
        try:
            produce_event(self._producer, self._topic, status_key(self.node, self.service, aspect),
                          "ServiceStatus", record)
        except Exception as exc:  # BufferError, KafkaException: the next cycle reports again
            log.warning("account status not reported", account=status.account, error=str(exc))

    def forget_removed(self, settings: Settings, accounts: Collection[str]) -> int:
        """Tombstones this service's account records of accounts no longer configured here
        (blocking: reads control.status), so that a removed account leaves the status."""
        prefix = status_key(self.node, self.service, f"{ACCOUNT}/").encode()
        stale = [k for k in load_table(settings, self._topic) if k.startswith(prefix)
                 and k[len(prefix):].decode(errors="replace") not in accounts]
        for key in stale:
            self._producer.produce(self._topic, key=key, value=None)
        return len(stale)

    def close(self, timeout: float = 5.0) -> int:
        return self._producer.flush(timeout)
