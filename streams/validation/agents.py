"""The message-validation agent: a loop around ``routing.decide``."""

from __future__ import annotations

import faust

from core.logging import get_logger
from schemas import Codec, DecodeError
from schemas.quarantine import unreadable_record
from streams.topics import StreamTopics
from streams.validation.routing import Route, decide

log = get_logger("message-validation")


def header(event: faust.EventT, name: str) -> str | None:
    for key, value in (event.headers or {}).items() if isinstance(event.headers, dict) else event.headers or []:
        if key == name and value is not None:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


def register(app: faust.App, topics: StreamTopics, codec: Codec, node: str) -> None:
    async def send(route: Route) -> None:
        value = codec.encode("MailRouted", route.record)
        await topics.by_queue[route.queue].send(
            key=route.key, value=value, headers=codec.headers("MailRouted", route.record["mail_id"]))

    @app.agent(topics.mail_in, name="validate")
    async def validate(stream: faust.StreamT) -> None:
        async for event in stream.events():
            raw: bytes = event.value
            try:
                mail = codec.decode(raw, expect="MailReceived").record
            except DecodeError as exc:
                mail_id = header(event, "mail-id") or (event.key or b"").decode(errors="replace") or None
                record = unreadable_record(mail_id, raw or b"", str(exc), node, "message-validation")
                log.warning("quarantined unreadable record", mail_id=record["mail_id"], reason=str(exc))
                await send(Route("quarantine", record["mail_id"].encode(), record))
                continue
            routes = decide(mail, node)
            for route in routes:
                await send(route)
            log.info("routed", mail_id=mail["mail_id"],
                     queues=",".join(sorted({r.queue for r in routes})), copies=len(routes))
