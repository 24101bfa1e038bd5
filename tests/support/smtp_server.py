"""smtp-server in the test's own process: ``serve_listener`` on a thread with its own
event loop, on a free port, with its own topic prefix on the session broker.

    with SmtpServer(broker.bootstrap_servers, tmp_path, relay={"trusted_networks": ["10.0.0.0/8"]}) as srv:
        ... swaks / aiosmtplib / raw sockets against srv.port ...
        srv.mail_in()        # MailReceived records in mail.in
        srv.rejected()       # SmtpRejected records in smtp.rejected
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Self

from confluent_kafka import KafkaException

from control.broker.topics import ensure_topics
from core.settings import KafkaSettings, Settings, SmtpServerSettings
from schemas.topics import SMTP_REJECTED, TopicNames
from tests.support.ports import free_port, wait_listening
from tests.support.topics import Record, read_topic


class SmtpServer:
    def __init__(self, bootstrap: str, home: Path, prefix: str | None = None, node: str = "test-node",
                 **smtp: Any) -> None:
        self.prefix = prefix or f"s{uuid.uuid4().hex[:8]}."
        self.port = free_port()
        smtp.setdefault("domains", ["example.com", "example.org"])
        smtp.setdefault("limits", {})
        smtp["limits"] = {"idle_timeout_s": 10.0, **smtp["limits"]}
        self.settings = Settings(
            node=node, home=home,
            kafka=KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=self.prefix, partitions=2,
                                produce_timeout_s=5.0),
            smtp_server=SmtpServerSettings(host="127.0.0.1", port=self.port, **smtp),
        )
        self.names = TopicNames(self.prefix)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def tls_port(self) -> int | None:
        return self.settings.smtp_server.tls.port

    def start(self) -> Self:
        from ingress.smtp.server import serve_listener

        ensure_topics(self.settings)
        ready = threading.Event()

        async def main() -> None:
            self._stop = asyncio.Event()
            started = asyncio.Event()
            task = asyncio.create_task(serve_listener(self.settings, started, self._stop))
            waiter = asyncio.create_task(started.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            ready.set()
            await task

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(main())
            except BaseException as exc:  # noqa: BLE001 - reported by start()/stop()
                self._error = exc
                ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name=f"smtp-server-{self.port}", daemon=True)
        self._thread.start()
        ready.wait(60)
        if self._error is not None:
            raise self._error
        wait_listening("127.0.0.1", self.port, timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read(self, topic: str) -> list[Record]:
        for _ in range(50):  # a topic made a moment ago may still be electing its leaders
            try:
                return read_topic(self.settings, topic)
            except KafkaException:
                time.sleep(0.2)
        return read_topic(self.settings, topic)

    def mail_in(self) -> list[Record]:
        return self._read(self.names.mail_in)

    def rejected(self, expect: int | None = None, timeout: float = 10.0) -> list[Record]:
        """SmtpRejected records, oldest first; with ``expect``: wait until that many are there
        (a refusal is recorded when its transaction ends, without waiting for Kafka)."""
        deadline = time.monotonic() + timeout
        while True:
            records = sorted(self._read(self.names(SMTP_REJECTED)),
                             key=lambda r: (r.value["event_time"], r.value["mail_id"]))
            if expect is None or len(records) >= expect or time.monotonic() > deadline:
                return records
            time.sleep(0.1)
