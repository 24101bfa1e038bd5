"""Entry point of smtp-server: `mailgate service smtp-server`.

Listens on the configured port with its own ESMTP engine (``engine.SmtpEngine``, an
asyncio protocol that keeps aiosmtpd's session and envelope objects but not its
parser), with STARTTLS, and on the implicit-TLS port when one is set; runs the phase-1
filter chain during the dialogue and publishes each accepted mail to mail.in
(acks=all, idempotent producer), answering 250 only after the broker's ack.
With ``listeners`` > 1, that many processes share the ports (SO_REUSEPORT).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import ssl

from core.kafka import AsyncProducer
from core.logging import get_logger
from core.publish import Publisher
from ingress.smtp.settings import Settings
from ingress.smtp.auth import Authenticator
from ingress.smtp.engine import SmtpEngine
from ingress.smtp.filters import build_chain
from ingress.smtp.filters.greylist import Expiry
from ingress.smtp.greylist_kafka import GreylistSync
from ingress.smtp.retries import RecentAccepts
from ingress.smtp.handler import GatewayHandler
from ingress.smtp.protocol import ConnectionTracker
from ingress.smtp.tls import server_context
from schemas import default_codec
from schemas.topics import SMTP_GREYLIST, SMTP_REJECTED, TopicNames

log = get_logger("smtp-server")


async def serve(settings: Settings, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Run this node's smtp-server: this process, plus ``listeners - 1`` children
    (restarted when one dies) sharing the ports through SO_REUSEPORT."""
    cfg = settings.smtp_server
    children = {i: _spawn(settings, i) for i in range(1, cfg.listeners)}

    async def watch() -> None:
        while True:
            await asyncio.sleep(1.0)
            for i, child in list(children.items()):
                if not child.is_alive():
                    log.warning("listener process died, starting it again", listener=i, code=child.exitcode)
                    children[i] = _spawn(settings, i)

    watcher = asyncio.get_running_loop().create_task(watch()) if children else None
    try:
        await serve_listener(settings, ready, stop, reuse_port=cfg.listeners > 1)
    finally:
        if watcher is not None:
            watcher.cancel()
        for child in children.values():
            child.terminate()
        for child in children.values():
            child.join(15)


def _spawn(settings: Settings, index: int) -> multiprocessing.process.BaseProcess:
    proc = multiprocessing.get_context("spawn").Process(target=_child, args=(settings, index),
                                                         name=f"smtp-server-{index}", daemon=True)
    proc.start()
    return proc


def _child(settings: Settings, index: int) -> None:
    import uvloop

    from core.logging import setup_logging

    setup_logging(settings.log_level, settings.log_format, f"smtp-server-{index}")
    uvloop.run(serve_listener(settings, reuse_port=True))


async def serve_listener(settings: Settings, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None,
                         reuse_port: bool = False) -> None:
    """One listener process: its producer, its filter chain, its sockets."""
    names = TopicNames(settings.kafka.topic_prefix)
    producer = AsyncProducer(settings, "smtp-server")
    try:
        await _listen(settings, producer, ready, stop, reuse_port, names)
    finally:
        left = await asyncio.to_thread(producer.close, 10.0)
        log.info("stopped", unacknowledged=left)


async def _listen(settings: Settings, producer: AsyncProducer, ready: asyncio.Event | None,
                  stop: asyncio.Event | None, reuse_port: bool, names: TopicNames) -> None:
    cfg = settings.smtp_server
    greylist: GreylistSync | None = None
    if cfg.greylist.enabled:
        greylist = GreylistSync(settings, names(SMTP_GREYLIST), producer)
    sweeper: asyncio.Task[None] | None = None
    try:
        if greylist is not None:
            await asyncio.to_thread(greylist.start)
            sweeper = asyncio.get_running_loop().create_task(
                greylist.sweep_forever(Expiry.of(cfg.greylist), cfg.greylist.sweep_interval_s))
        await _serve(settings, producer, greylist, ready, stop, reuse_port, names)
    finally:
        if sweeper is not None:
            sweeper.cancel()
        if greylist is not None:
            greylist.stop()


async def _serve(settings: Settings, producer: AsyncProducer, greylist: GreylistSync | None,
                 ready: asyncio.Event | None, stop: asyncio.Event | None, reuse_port: bool, names: TopicNames) -> None:
    cfg = settings.smtp_server
    chain = build_chain(settings, greylist.store if greylist else None)
    loop = asyncio.get_running_loop()
    publisher = Publisher.on(producer, default_codec(), loop)  # the loop handed to each send: no lookup per mail
    auth_offered = bool(cfg.auth.users)
    recent = RecentAccepts(cfg.limits.retry_window_s) if cfg.limits.retry_window_s > 0 else None
    handler = GatewayHandler(publisher, chain, settings.node, cfg.max_recipients, names.mail_in, names(SMTP_REJECTED),
                             recent)
    tls = server_context(cfg.tls, settings.hostname, settings.home) if cfg.tls.starttls or cfg.tls.port else None
    tracker = ConnectionTracker(-(-cfg.limits.max_connections // cfg.listeners), cfg.limits.max_connections_per_ip)
    authenticator = Authenticator(cfg.auth.users) if auth_offered else None

    def factory(implicit: bool) -> SmtpEngine:
        return SmtpEngine(handler, limits=cfg.limits, tracker=tracker, loop=loop, hostname=settings.hostname,
                          ident="mailgate ESMTP", data_size_limit=settings.max_message_size,
                          tls_context=None if implicit or not cfg.tls.starttls else tls,
                          authenticator=authenticator, implicit_tls=implicit)

    servers = [await loop.create_server(lambda: factory(False), host=cfg.host, port=cfg.port,
                                        reuse_port=reuse_port or None, backlog=1024)]
    if cfg.tls.port:
        assert isinstance(tls, ssl.SSLContext)
        servers.append(await loop.create_server(lambda: factory(True), host=cfg.host, port=cfg.tls.port, ssl=tls,
                                                reuse_port=reuse_port or None, backlog=1024,
                                                ssl_handshake_timeout=min(cfg.limits.idle_timeout_s, 60.0)))
    log.info("listening", address=f"{cfg.host}:{cfg.port}", tls_port=cfg.tls.port, domains=",".join(settings.domains),
             filters=",".join(f.name for f in chain.filters), kafka=settings.bootstrap_servers)
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        tracker.shutdown(settings.hostname)
        for server in servers:
            await server.wait_closed()
        for _ in range(50):
            if not tracker.open:
                break
            await asyncio.sleep(0.02)
