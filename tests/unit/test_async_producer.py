"""core.kafka.AsyncProducer without a broker: a send that never gets its delivery report
still ends, with KafkaUnavailable, after produce_timeout_s plus the backstop's margin."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.kafka import AsyncProducer, KafkaUnavailable
from control.settings import Settings
from core.settings import KafkaSettings
from tests.support.ports import free_port


def test_a_send_without_a_delivery_report_fails_by_the_backstop() -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", produce_timeout_s=0.1))
    # librdkafka would fail the record itself after message.timeout.ms: put that out of reach
    producer = AsyncProducer(settings, "backstop-test", **{"message.timeout.ms": 600_000})

    async def send() -> None:
        await producer.send("nowhere", b"k", b"v", loop=asyncio.get_running_loop())

    began = time.monotonic()
    try:
        with pytest.raises(KafkaUnavailable, match="no delivery report"):
            asyncio.run(send())
        assert 5.0 <= time.monotonic() - began < 15.0
    finally:
        producer._producer.purge()  # the record that never went out: nothing to flush on close
        producer.close(0.1)
