"""control-server: the service layer of the Services page — it decides; the servicer only converts.

Reads what every engine and service reported (control.status) and the queue
lag (Kafka admin API); writes what each service should be doing
(control.desired), for one node or for every node ("*").
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaException

from control.engine.services import SERVICES, Service
from control.server.auth import Principal
from control.server.errors import InvalidArgument
from control.server.lag import LagReader
from control.server.status_table import StatusTable
from core.control_channel import (
    ALL_NODES,
    CONSUMERS,
    PROCESS,
    REFRESH,
    DesiredTable,
    Record,
    desired_key,
    now_ms,
    produce_event,
)
from core.kafka import make_producer
from core.logging import get_logger
from core.settings import Settings
from schemas.topics import CONTROL_DESIRED, TopicNames

log = get_logger("control-server")
REMOTE_SUPPORT = "remote-support"
SELF = "control-server"


@dataclass(frozen=True)
class QueueView:
    topic: str
    group: str
    depth: int
    lag_seconds: float
    paused: bool


@dataclass(frozen=True)
class ServiceView:
    name: str
    description: str
    listens: str
    node: str
    state: str  # running | stopped | failed | starting | unknown
    since_ms: int | None = None
    pid: int | None = None
    restarts: int = 0
    desired: str = ""
    queue: QueueView | None = None
    expires_ms: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class Change:
    name: str
    node: str
    desired: str
    expires_ms: int | None = None
    message: str = ""


class ControlPlane:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = TopicNames(settings.kafka.topic_prefix)
        self.status = StatusTable(settings)
        self.desired = DesiredTable(settings, name="control-server")
        self.lag = LagReader(settings)
        self._producer = make_producer(settings, "control-server")

    def start(self) -> ControlPlane:
        self.status.start()
        self.desired.start()
        return self

    def stop(self) -> None:
        self._producer.flush(10)
        self.status.stop()
        self.desired.stop()
        self.lag.close()

    # -- reading ------------------------------------------------------------------

    def list_services(self, node: str = "") -> list[ServiceView]:
        self._check_node(node, allow_all=False)
        reports = self.status.snapshot()
        process = {(r["node"], r["service"]): r for r in reports if r["aspect"] == PROCESS}
        consumers = {(r["node"], r["service"]): r for r in reports if r["aspect"] == CONSUMERS}
        views: list[ServiceView] = []
        for name, svc in SERVICES.items():
            lag = self._lag(svc)
            nodes = sorted(n for n, s in process if s == name and (not node or n == node))
            if not nodes:
                queue = QueueView(lag[0], lag[1], lag[2], lag[3], False) if lag else None
                views.append(ServiceView(name, svc.description, svc.listens(self.settings), node, "unknown",
                                         queue=queue, detail="no engine has reported this service"))
            for n in nodes:
                views.append(self._view(svc, process[(n, name)], consumers.get((n, name)), lag))
        return views

    def _view(self, svc: Service, report: Record, consumers: Record | None,
              lag: tuple[str, str, int, float] | None) -> ServiceView:
        stale_ms = 3 * self.settings.control.status_interval_s * 1000
        state, detail = report["state"], report.get("detail") or ""
        if state != "stopped" and now_ms() - report["event_time"] > stale_ms:
            state, detail = "unknown", f"no report from the engine of {report['node']} for {stale_ms // 1000} s"
        queue = None
        if lag is not None:
            paused = consumers is not None and consumers["state"] == "paused" and state == "running"
            queue = QueueView(lag[0], lag[1], lag[2], lag[3], paused)
        return ServiceView(svc.name, svc.description, svc.listens(self.settings), report["node"], state,
                           report["since"], report.get("pid"), report.get("restarts", 0),
                           report.get("desired") or "", queue, report.get("expires_time"), detail)

    def _lag(self, svc: Service) -> tuple[str, str, int, float] | None:
        group = svc.group(self.settings)
        if group is None or svc.consumes is None:
            return None
        topic = self.names(svc.consumes)
        try:
            lag = self.lag.lag(group, topic)
        except (KafkaException, LookupError) as exc:
            log.warning("lag not known", group=group, error=str(exc))
            return topic, group, -1, 0.0
        return topic, group, lag.depth, lag.lag_seconds

    # -- steering -----------------------------------------------------------------

    def set_process(self, principal: Principal, name: str, node: str, state: str,
                    duration_s: float | None = None, reason: str = "", restart: bool = False) -> Change:
        svc = self._service(name)
        target = self._check_node(node, allow_all=True)
        expires = None
        if name == REMOTE_SUPPORT and state == "running":
            expires = now_ms() + int(self._duration(duration_s) * 1000)
        elif duration_s is not None:
            raise InvalidArgument(f"a duration applies to {REMOTE_SUPPORT} only, not to {name}")
        if name == SELF and state == "stopped":
            raise InvalidArgument(f"{SELF} cannot be stopped through itself (nobody could start it again): "
                                  "restart it, or stop the engine of its node")
        generation = self._generation(PROCESS, svc.name)
        record = {"node": target, "service": svc.name, "aspect": PROCESS, "state": state,
                  "restart_generation": now_ms() if restart else generation, "expires_time": expires,
                  "actor": principal.actor, "reason": reason or None}
        self._write(desired_key(PROCESS, target, svc.name), record)
        what = "restart" if restart else ("start" if state == "running" else "stop")
        log.info("service change asked", name=name, node=target, change=what, by=principal.actor)
        where = "every node" if target == ALL_NODES else f"node {target}"
        return Change(svc.name, target, state, expires, f"{what} of {name} on {where} asked")

    def set_consumers(self, principal: Principal, group: str, node: str, state: str, reason: str = "") -> Change:
        svc = self._consumer_service(group)
        target = self._check_node(node, allow_all=True)
        record = {"node": target, "service": svc.name, "aspect": CONSUMERS, "state": state,
                  "actor": principal.actor, "reason": reason or None}
        self._write(desired_key(CONSUMERS, target, svc.name), record)
        log.info("consumers change asked", name=svc.name, node=target, state=state, by=principal.actor)
        verb = "pause" if state == "paused" else "resume"
        return Change(svc.name, target, state, None, f"{verb} of {svc.group(self.settings)} asked")

    def refresh(self, principal: Principal, node: str = "", wait_s: float = 3.0) -> list[ServiceView]:
        """Asks the engines to report now, waits for their reports (up to ``wait_s``), then lists."""
        self._check_node(node, allow_all=False)
        asked = now_ms()
        target = node or ALL_NODES
        self._write(desired_key(REFRESH, target), {"node": target, "service": "", "aspect": REFRESH,
                                                   "state": "report", "actor": principal.actor})
        nodes = {node} if node else self.status.nodes()
        if not self.status.wait_reports(nodes, asked, wait_s):
            log.warning("not every engine answered the refresh", nodes=",".join(sorted(nodes)))
        return self.list_services(node)

    # -- checks -------------------------------------------------------------------

    def _write(self, key: str, record: Record) -> None:
        topic = self.names(CONTROL_DESIRED)
        produce_event(self._producer, topic, key, "ServiceDesired", record)
        if self._producer.flush(self.settings.kafka.produce_timeout_s):
            raise KafkaException(f"the change was not acknowledged by Kafka ({self.settings.bootstrap_servers})")

    def _generation(self, aspect: str, service: str) -> int:
        records = [r for k, r in self.desired.snapshot().items()
                   if k.startswith(f"{aspect}/") and r["service"] == service]
        return max((r["restart_generation"] for r in records), default=0)

    def _service(self, name: str) -> Service:
        if not name:
            raise InvalidArgument(f"name a service: {', '.join(SERVICES)}")
        if name not in SERVICES:
            raise InvalidArgument(f"unknown service {name!r}; the services are: {', '.join(SERVICES)}")
        return SERVICES[name]

    def _consumer_service(self, group: str) -> Service:
        consuming = {n: s for n, s in SERVICES.items() if s.consumes}
        for name, svc in consuming.items():
            if group in (name, svc.group(self.settings)):
                return svc
        groups = ", ".join(f"{n} ({s.group(self.settings)})" for n, s in consuming.items())
        raise InvalidArgument(f"unknown consumer group {group!r}; the groups are: {groups}" if group
                              else f"name a consumer group: {groups}")

    def _check_node(self, node: str, allow_all: bool) -> str:
        if not node or (allow_all and node == ALL_NODES):
            return ALL_NODES
        known = self.status.nodes()
        if node not in known:
            raise InvalidArgument(f"no engine of node {node!r} has reported; the nodes are: "
                                  f"{', '.join(sorted(known)) or 'none yet'}")
        return node

    def _duration(self, duration_s: float | None) -> float:
        most = self.settings.control.remote_support_max_s
        if duration_s is None or duration_s <= 0:
            raise InvalidArgument(f"{REMOTE_SUPPORT} runs for a limited time only: give a duration "
                                  f"(at most {most:.0f} s)")
        if duration_s > most:
            raise InvalidArgument(f"a duration of {duration_s:.0f} s is longer than the {most:.0f} s "
                                  "remote support may run (control.remote_support_max_s)")
        return duration_s
