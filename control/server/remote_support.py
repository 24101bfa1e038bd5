"""control/server — entry point of remote-support: `mailgate service remote-support` (run by the engine only).

The appliance's remote-maintenance channel would be an outbound support tunnel;
no such peer can be reached here, so remote support is a real, minimal
diagnostics endpoint instead: HTTP on 127.0.0.1 only (``control.remote_support_port``),

    GET /diagnostics   Authorization: Bearer <administrator token>

answering JSON (node, pid, expiry, the services' reported states, the queues'
sizes). Off by default: the engine never starts it by itself; an administrator
starts it with a duration (StartService with ``duration``), and it stops when
that runs out — the engine stops it, and it exits by itself at
``control.run_until_ms`` too. Without a future ``run_until_ms`` it refuses to start.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from control.broker.topics import topic_sizes
from control.server.auth import Tokens, bearer
from core.logging import get_logger
from core.settings import Settings
from core.tables import load_table
from schemas import default_codec
from schemas.topics import CONTROL_STATUS, TopicNames

log = get_logger("remote-support")
HOST = "127.0.0.1"  # loopback only, whatever else is configured


def diagnostics(settings: Settings, until_ms: int) -> dict[str, Any]:
    names = TopicNames(settings.kafka.topic_prefix)
    statuses = []
    for value in load_table(settings, names(CONTROL_STATUS)).values():
        record = default_codec().decode(value, expect="ServiceStatus").record
        statuses.append({k: record[k] for k in ("node", "service", "aspect", "state", "since", "pid", "restarts")})
    sizes = {topic.removeprefix(names.prefix): records for topic, (_, records) in topic_sizes(settings).items()}
    return {"node": settings.node, "pid": os.getpid(), "python": platform.python_version(),
            "time_ms": int(time.time() * 1000), "expires_ms": until_ms, "kafka": settings.bootstrap_servers,
            "services": sorted(statuses, key=lambda s: (s["node"], s["service"], s["aspect"])), "queues": sizes}


def handler_for(settings: Settings, tokens: Tokens, until_ms: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "mailgate-remote-support"

        def _answer(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, indent=1).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if code == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="mailgate remote support"')
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            token = bearer([("authorization", self.headers.get("Authorization", ""))])
            who = tokens.resolve(token) if token else None
            if who is None:
                return self._answer(401, {"error": "send Authorization: Bearer <administrator token>"})
            if not who.is_admin:
                return self._answer(403, {"error": f"remote support is for administrators; {who.actor} is a user"})
            if self.path != "/diagnostics":
                return self._answer(404, {"error": "the one resource is /diagnostics"})
            log.info("diagnostics read", by=who.actor)
            return self._answer(200, diagnostics(settings, until_ms))

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            pass  # requests are logged above, with who made them

    return Handler


def run(settings: Settings) -> None:
    until_ms = settings.control.run_until_ms
    left = (until_ms - time.time() * 1000) / 1000 if until_ms else 0
    if until_ms is None or left <= 0:
        raise SystemExit("remote-support runs only for a limited time, started by an administrator through "
                         "the control plane (mailgate services start remote-support --duration ...)")
    port = settings.control.remote_support_port
    server = ThreadingHTTPServer((HOST, port), handler_for(settings, Tokens(settings.control.tokens), until_ms))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, name="remote-support-http", daemon=True)
    thread.start()
    log.info("remote support open", address=f"{HOST}:{port}", seconds_left=round(left))
    try:
        expired = not stop.wait(left)
    finally:
        server.shutdown()
        server.server_close()
    log.info("remote support closed", reason="its time ran out" if expired else "stopped")
