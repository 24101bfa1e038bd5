"""The stream stages' end of ``core.publish``: a Faust topic as a ``Publisher``'s send.

``await publisher.publish(topics.mail_scored, event)`` encodes and heads the record as
every stage does and hands it to Faust's producer (acks=-1, ``streams/app.py``). The
ack is awaited per batch, not per record: Faust flushes its producer before it commits
an offset, so an input record is committed only once what it produced is acknowledged,
and the agent does not wait a round trip per mail.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from core.publish import Headers, Publisher
from schemas import Codec


async def faust_send(topic: faust.TopicT, key: bytes, value: bytes | None, headers: Headers | None = None,
                     loop: asyncio.AbstractEventLoop | None = None) -> Any:
    return await topic.send(key=key, value=value, headers=[*(headers or ())])


def faust_publisher(codec: Codec) -> Publisher:
    return Publisher(faust_send, codec)
