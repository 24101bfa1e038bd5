"""Entry point of web-console: `mailgate service web-console` (uvicorn serving ``app.create_app``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import uvicorn

from control.settings import Settings
from control.web.app import create_app
from core.logging import get_logger

log = get_logger("web-console")


def config(settings: Settings) -> uvicorn.Config:
    web = settings.web
    if (web.tls_cert_file is None) != (web.tls_key_file is None):
        raise ValueError("HTTPS needs both MAILGATE_WEB__TLS_CERT_FILE and MAILGATE_WEB__TLS_KEY_FILE")
    return uvicorn.Config(
        create_app(settings), host=web.host, port=web.port, log_level="warning", access_log=False,
        ssl_certfile=str(web.tls_cert_file) if web.tls_cert_file else None,
        ssl_keyfile=str(web.tls_key_file) if web.tls_key_file else None,
        proxy_headers=False, server_header=False)


class _Server(uvicorn.Server):
    # uvicorn re-raises a caught SIGTERM after draining (the exit status then says "killed");
    # the engine expects a service to drain and exit 0, as every other one does
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


async def _serve(server: uvicorn.Server) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    await server.serve()


def run(settings: Settings) -> None:
    server = _Server(config(settings))
    scheme = "https" if settings.web.tls_cert_file else "http"
    log.info("web console listening", address=f"{scheme}://{settings.web.host}:{settings.web.port}",
             public_url=settings.web.public_url)
    asyncio.run(_serve(server))
