"""control/server — entry point of control-server: `mailgate service control-server`.

serve() wires: token authentication (``auth.AuthInterceptor``), optional TLS,
the Control servicer over the service layer, standard gRPC health checking and
server reflection (so ``grpcurl -plaintext HOST:PORT list`` works), and the
Kafka-derived metrics on /metrics.
"""

from __future__ import annotations

import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from control.proto.rpc import SERVICE_NAME, pb, pb_grpc
from control.server.auth import AuthInterceptor, Tokens
from control.server.config_store import ConfigStore
from control.server.metrics_feed import MetricsFeed
from control.server.plane import ControlPlane
from control.server.queues import QueueBrowser
from control.server.servicer import ControlServicer
from core.logging import get_logger
from core.settings import Settings

log = get_logger("control-server")


def credentials(settings: Settings) -> grpc.ServerCredentials | None:
    cfg = settings.control
    if cfg.tls_cert_file is None and cfg.tls_key_file is None:
        return None
    if cfg.tls_cert_file is None or cfg.tls_key_file is None:
        raise ValueError("TLS needs both MAILGATE_CONTROL__TLS_CERT_FILE and MAILGATE_CONTROL__TLS_KEY_FILE")
    return grpc.ssl_server_credentials([(cfg.tls_key_file.read_bytes(), cfg.tls_cert_file.read_bytes())])


class ControlServer:
    """The wired server; ``start()`` binds, ``stop()`` drains and closes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if not settings.control.tokens:
            log.warning("no tokens configured: every call will be refused",
                        hint='set MAILGATE_CONTROL__TOKENS="admin:NAME=TOKEN"')
        self.plane = ControlPlane(settings)
        self.queues = QueueBrowser(settings)
        self.config = ConfigStore(settings)
        self.metrics = MetricsFeed(settings, self.plane) if settings.control.metrics_port else None
        self.health = health.HealthServicer()
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="control-rpc"),
                                interceptors=[AuthInterceptor(Tokens(settings.control.tokens))],
                                options=[("grpc.so_reuseport", 0)])  # a taken port is an error, not shared
        pb_grpc.add_ControlServicer_to_server(ControlServicer(self.plane, self.queues, self.config), self.grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.grpc)
        self.address = f"{settings.control.host}:{settings.control.port}"

    def start(self) -> ControlServer:
        self.plane.start()
        self.config.start()
        creds = credentials(self.settings)
        port = (self.grpc.add_secure_port(self.address, creds) if creds
                else self.grpc.add_insecure_port(self.address))
        if not port:
            raise OSError(f"cannot listen on {self.address}")
        self.grpc.start()
        if self.metrics is not None:
            self.metrics.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("listening", address=self.address, tls=creds is not None, methods=len(
            pb.DESCRIPTOR.services_by_name["Control"].methods))
        return self

    def stop(self, grace: float = 5.0) -> None:
        self.health.enter_graceful_shutdown()
        self.grpc.stop(grace).wait(grace + 1)
        if self.metrics is not None:
            self.metrics.stop()
        self.queues.close()
        self.config.stop()
        self.plane.stop()


def run(settings: Settings) -> None:
    """Serves until SIGTERM/SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = ControlServer(settings)
    try:
        server.start()
    except RuntimeError as exc:  # grpc raises it when the port cannot be bound
        raise OSError(f"cannot listen on {server.address}: {exc}") from exc
    try:
        stop.wait()
    finally:
        server.stop()
        log.info("stopped")
