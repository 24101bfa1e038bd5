"""control-server: the gRPC servicer — it converts proto ↔ domain and errors → status codes; the
service layer (plane, queues, config_store) decides."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc
from confluent_kafka import KafkaException
from google.protobuf.timestamp_pb2 import Timestamp

from control.proto.rpc import pb, pb_grpc
from control.server.archive import export, search
from control.server.auth import current
from control.server.config_store import ConfigStore, Entry
from control.server.errors import InvalidArgument, NotFound, Unavailable
from control.server.plane import Change, ControlPlane, ServiceView
from control.server.queues import Held, QueueBrowser
from core.logging import get_logger

log = get_logger("control-server")
T = TypeVar("T")

STATES = {"running": pb.SERVICE_STATE_RUNNING, "stopped": pb.SERVICE_STATE_STOPPED,
          "failed": pb.SERVICE_STATE_FAILED, "starting": pb.SERVICE_STATE_STARTING,
          "unknown": pb.SERVICE_STATE_UNKNOWN}
VERDICTS = {pb.ReportRequest.VERDICT_SPAM: "SPAM", pb.ReportRequest.VERDICT_HAM: "HAM"}


def _ts(ms: int | None) -> Timestamp | None:
    if ms is None:
        return None
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


@contextmanager
def _status(context: grpc.ServicerContext) -> Iterator[None]:
    try:
        yield
    except InvalidArgument as exc:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except NotFound as exc:
        context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    except Unavailable as exc:
        context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    except (KafkaException, TimeoutError) as exc:
        log.warning("kafka unavailable", error=str(exc))
        context.abort(grpc.StatusCode.UNAVAILABLE, f"Kafka did not answer: {exc}")


def _service(view: ServiceView) -> pb.ServiceInfo:
    info = pb.ServiceInfo(name=view.name, description=view.description, node=view.node,
                          state=STATES.get(view.state, pb.SERVICE_STATE_UNSPECIFIED), pid=view.pid or 0,
                          restarts=view.restarts, desired=view.desired, detail=view.detail, listens=view.listens,
                          since=_ts(view.since_ms), expires=_ts(view.expires_ms))
    if view.queue is not None:
        q = view.queue
        info.queue.CopyFrom(pb.Queue(topic=q.topic, group=q.group, depth=q.depth, lag_seconds=q.lag_seconds,
                                     paused=q.paused))
    return info


def _change(change: Change) -> pb.ServiceReply:
    return pb.ServiceReply(name=change.name, node=change.node, desired=change.desired,
                           expires=_ts(change.expires_ms), message=change.message)


def _mail(held: Held, recipients: list[str]) -> pb.QueuedMail:
    record = held.record
    return pb.QueuedMail(mail_id=held.mail_id, queue=held.queue, mail_from=record["mail_from"],
                         rcpt_to=recipients, subject=held.subject(), size=record["size"],
                         received=_ts(record["received_time"]), reasons=record["reasons"])


EXPORT_FORMATS = {pb.EXPORT_FORMAT_MBOX: "mbox", pb.EXPORT_FORMAT_EML: "eml"}


def _archive_query(request: Any) -> dict[str, Any]:
    return dict(sender=request.sender, recipient=request.recipient, subject=request.subject, text=request.text,
                since_ms=request.since.ToMilliseconds() if request.HasField("since") else None,
                until_ms=request.until.ToMilliseconds() if request.HasField("until") else None,
                mail_ids=list(request.mail_ids), limit=request.limit, offset=request.offset)


def _archived(row: dict[str, Any]) -> pb.ArchivedMail:
    return pb.ArchivedMail(mail_id=row["mail_id"], mail_from=row["mail_from"], rcpt_to=row["rcpt_to"],
                           subject=row["subject"], date=_ts(row["date_ms"]), received=_ts(row["received_ms"]),
                           size=row["size"], sha256=row["sha256"], rule=row["rule"], source=row["source"],
                           hold=row["hold"] or "", expires=_ts(row["expires_ms"]))


def _entry(entry: Entry) -> pb.ConfigEntry:
    return pb.ConfigEntry(key=entry.key, value=entry.value, overridden=entry.overridden,
                          changed_by=entry.changed_by, changed_at=_ts(entry.changed_ms), env=entry.env,
                          description=entry.description)


class ControlServicer(pb_grpc.ControlServicer):
    def __init__(self, plane: ControlPlane, queues: QueueBrowser, config: ConfigStore) -> None:
        self.plane, self.queues, self.config = plane, queues, config

    def _call(self, context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
        with _status(context):
            return fn()
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    # -- services -----------------------------------------------------------------

    def ListServices(self, request: Any, context: grpc.ServicerContext) -> pb.ListServicesResponse:
        views = self._call(context, lambda: self.plane.list_services(request.node))
        return pb.ListServicesResponse(services=[_service(v) for v in views])

    def Refresh(self, request: Any, context: grpc.ServicerContext) -> pb.ListServicesResponse:
        views = self._call(context, lambda: self.plane.refresh(current(), request.node))
        return pb.ListServicesResponse(services=[_service(v) for v in views])

    def _process(self, request: Any, context: grpc.ServicerContext, state: str, restart: bool = False) -> Any:
        duration = request.duration.ToTimedelta().total_seconds() if request.HasField("duration") else None
        change = self._call(context, lambda: self.plane.set_process(
            current(), request.name, request.node, state, duration, request.reason, restart))
        return _change(change)

    def StartService(self, request: Any, context: grpc.ServicerContext) -> pb.ServiceReply:
        return self._process(request, context, "running")

    def StopService(self, request: Any, context: grpc.ServicerContext) -> pb.ServiceReply:
        return self._process(request, context, "stopped")

    def RestartService(self, request: Any, context: grpc.ServicerContext) -> pb.ServiceReply:
        return self._process(request, context, "running", restart=True)

    def PauseConsumers(self, request: Any, context: grpc.ServicerContext) -> pb.ServiceReply:
        return _change(self._call(context, lambda: self.plane.set_consumers(
            current(), request.group, request.node, "paused", request.reason)))

    def ResumeConsumers(self, request: Any, context: grpc.ServicerContext) -> pb.ServiceReply:
        return _change(self._call(context, lambda: self.plane.set_consumers(
            current(), request.group, request.node, "running", request.reason)))

    # -- queues -------------------------------------------------------------------

    def ListQueue(self, request: Any, context: grpc.ServicerContext) -> pb.ListQueueResponse:
        who = current()
        held = self._call(context, lambda: self.queues.list_mails(who, request.queue, request.limit))
        return pb.ListQueueResponse(mails=[_mail(h, h.for_whom(who) or list(h.record["rcpt_to"])) for h in held])

    def ShowMail(self, request: Any, context: grpc.ServicerContext) -> pb.MailDetail:
        who = current()
        held = self._call(context, lambda: self.queues.find(who, request.mail_id, request.queue))
        return pb.MailDetail(mail=_mail(held, held.for_whom(who)), message=held.raw())

    def _acted(self, action: str, result: tuple[Held, list[str]]) -> pb.QueueActionReply:
        held, recipients = result
        whom = ", ".join(recipients) or "every recipient"
        return pb.QueueActionReply(mail_id=held.mail_id, action=action, recipients=recipients,
                                   message=f"{action.lower().replace('_', ' ')} of {held.mail_id} for {whom}")

    def ReleaseMail(self, request: Any, context: grpc.ServicerContext) -> pb.QueueActionReply:
        return self._acted("RELEASE", self._call(context, lambda: self.queues.release(
            current(), request.mail_id, request.queue, request.reason)))

    def DeleteMail(self, request: Any, context: grpc.ServicerContext) -> pb.QueueActionReply:
        return self._acted("DELETE", self._call(context, lambda: self.queues.delete(
            current(), request.mail_id, request.queue, request.reason)))

    def ReportMail(self, request: Any, context: grpc.ServicerContext) -> pb.QueueActionReply:
        verdict = VERDICTS.get(request.verdict, "")
        return self._acted(f"REPORT_{verdict or 'UNSPECIFIED'}", self._call(context, lambda: self.queues.report(
            current(), request.mail_id, request.queue, verdict)))

    # -- configuration --------------------------------------------------------------

    def GetConfig(self, request: Any, context: grpc.ServicerContext) -> pb.GetConfigResponse:
        entries = self._call(context, lambda: self.config.get(request.key))
        return pb.GetConfigResponse(entries=[_entry(e) for e in entries])

    def SetConfig(self, request: Any, context: grpc.ServicerContext) -> pb.ConfigEntry:
        value = None if request.reset else request.value
        return _entry(self._call(context, lambda: self.config.set(current(), request.key, value, request.reason)))

    def WhoAmI(self, request: Any, context: grpc.ServicerContext) -> pb.WhoAmIResponse:
        who = current()
        return pb.WhoAmIResponse(name=who.name, role=who.role)

    # -- archive (asked of maildepot-archiver over Kafka: control.server.archive) -----------------

    def SearchArchive(self, request: Any, context: grpc.ServicerContext) -> pb.ArchiveSearchResponse:
        who = current()
        rows = self._call(context, lambda: search(self.plane.settings, _archive_query(request), who.actor))
        return pb.ArchiveSearchResponse(mails=[_archived(r) for r in rows])

    def ExportArchive(self, request: Any, context: grpc.ServicerContext) -> Iterator[pb.ArchiveChunk]:
        """Streams each mail found in the archiver's pieces of at most 1 MiB (issue 10: one reply with
        every mail passed gRPC's 4 MB receive limit)."""
        fmt, who = EXPORT_FORMATS.get(request.format, ""), current()
        with _status(context):  # a bad query or no archiver: the status comes before any chunk
            for mail_id, data, last in export(self.plane.settings, _archive_query(request.query), fmt, who.actor):
                yield pb.ArchiveChunk(mail_id=mail_id, data=data, last=last)
