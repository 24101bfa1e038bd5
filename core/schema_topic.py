"""core: writer schemas this process does not ship, looked up in the compacted schemas
topic (key: fingerprint hex, value: canonical schema JSON).

`mailgate topics create` publishes every shipped schema there, so that a reader
of an older release can still resolve records written by a newer one.
"""

from __future__ import annotations

from core.settings import GatewaySettings
from core.tables import load_table
from schemas.codec import Codec, Resolver
from schemas.topics import TopicNames


def load_schema_topic(settings: GatewaySettings, timeout: float = 10.0) -> dict[bytes, str]:
    topic = TopicNames(settings.kafka.topic_prefix).schemas
    try:
        table = load_table(settings, topic, timeout)
    except LookupError:
        return {}
    return {bytes.fromhex(k.decode()): v.decode() for k, v in table.items()}


def kafka_resolver(settings: GatewaySettings) -> Resolver:
    cache: dict[bytes, str] = {}

    def resolve(fp: bytes) -> str | None:
        if fp not in cache:
            cache.update(load_schema_topic(settings))
        return cache.get(fp)

    return resolve


def codec_for(settings: GatewaySettings) -> Codec:
    """The shipped schemas, plus any newer writer schema found in the schemas topic."""
    return Codec.from_dir(resolver=kafka_resolver(settings))
