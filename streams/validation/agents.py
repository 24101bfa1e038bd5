"""The message-validation agent: a loop around ``inspect`` and ``routing.decide``."""

from __future__ import annotations

import faust

from core.control_channel import FaustGate
from core.logging import get_logger
from schemas import Codec, DecodeError, unpack_message
from schemas.quarantine import unreadable_record
from streams.topics import StreamTopics
from streams.validation.inspect import Inspector
from streams.validation.routing import Findings, Route, decide

log = get_logger("message-validation")


def header(event: faust.EventT, name: str) -> str | None:
    for key, value in (event.headers or {}).items() if isinstance(event.headers, dict) else event.headers or []:
        if key == name and value is not None:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


def register(app: faust.App, topics: StreamTopics, codec: Codec, node: str, inspector: Inspector,
             gate: FaustGate | None = None) -> None:
    gate = gate or FaustGate()
    async def send(route: Route) -> None:
        value = codec.encode("MailRouted", route.record)
        await topics.by_queue[route.queue].send(
            key=route.key, value=value, headers=codec.headers("MailRouted", route.record["mail_id"]))

    @app.agent(topics.mail_scored, name="validate")
    async def validate(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await gate.wait()  # paused: this event and the rest stay unacknowledged (lag grows)
            raw: bytes = event.value
            try:
                scored = codec.decode(raw, expect="MailScored").record
                mail = codec.decode(scored["received"], expect="MailReceived").record
            except DecodeError as exc:
                mail_id = header(event, "mail-id") or (event.key or b"").decode(errors="replace") or None
                record = unreadable_record(mail_id, raw or b"", str(exc), node, "message-validation")
                log.warning("quarantined unreadable record", mail_id=record["mail_id"], reason=str(exc))
                await send(Route("quarantine", record["mail_id"].encode(), record))
                continue
            try:
                raw_mail = unpack_message(mail["message"])
            except Exception as exc:  # a corrupt compressed body: the mail cannot be read
                findings = Findings(unparseable=f"message body cannot be unpacked: {exc}")
            else:
                findings = await inspector.inspect(raw_mail, spam=scored)
            routes = decide(mail, node, findings)
            for route in routes:
                await send(route)
            log.info("routed", mail_id=mail["mail_id"], queues=",".join(sorted({r.queue for r in routes})),
                     copies=len(routes), reason=routes[0].record["reasons"][0])
