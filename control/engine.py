"""engine: the supervisor that runs the services of one node as child processes.

`mailgate up` starts it. A service that exits on its own is started again after
a backoff (1 s, doubling to 30 s); Ctrl-C (SIGINT) or SIGTERM stops every
service cleanly (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.logging import get_logger

log = get_logger("engine")

GRACE_S = 15.0
BACKOFF_MAX_S = 30.0


@dataclass
class ServiceSpec:
    name: str
    listens: str  # where it listens / what it consumes, for people
    argv: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.argv:
            self.argv = [sys.executable, "-m", "control.cli", "service", self.name]


@dataclass
class _Running:
    spec: ServiceSpec
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0


class Engine:
    def __init__(self, services: list[ServiceSpec], env: dict[str, str] | None = None,
                 say: Callable[[str], None] = print) -> None:
        self.services = [_Running(s) for s in services]
        self.env = {**os.environ, **(env or {})}
        self.say = say
        self._stopping = False

    def _start(self, svc: _Running) -> None:
        svc.proc = subprocess.Popen(svc.spec.argv, env=self.env, stdin=subprocess.DEVNULL)
        svc.started_at = time.monotonic()
        log.info("service started", name=svc.spec.name, pid=svc.proc.pid, listens=svc.spec.listens)

    def request_stop(self, *_: object) -> None:
        self._stopping = True

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Supervise until SIGINT/SIGTERM (or ``until()`` says so), then stop all."""
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for svc in self.services:
                self._start(svc)
            while not self._stopping and not (until and until()):
                self._supervise()
                time.sleep(0.2)
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _supervise(self) -> None:
        now = time.monotonic()
        for svc in self.services:
            if svc.proc is None:
                if now >= svc.next_start:
                    self._start(svc)
                continue
            code = svc.proc.poll()
            if code is None:
                continue
            if now - svc.started_at > 60:
                svc.restarts = 0  # it ran for a while: start the backoff over
            delay = min(2.0**svc.restarts, BACKOFF_MAX_S)
            svc.restarts += 1
            svc.proc, svc.next_start = None, now + delay
            log.warning("service exited, restarting", name=svc.spec.name, code=code, restart_in_s=delay)

    def stop_all(self) -> None:
        running = [s for s in self.services if s.proc is not None and s.proc.poll() is None]
        for svc in running:
            assert svc.proc is not None
            svc.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for svc in running:
            assert svc.proc is not None
            try:
                svc.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("service did not stop in time, killing", name=svc.spec.name)
                svc.proc.kill()
                svc.proc.wait()
            log.info("service stopped", name=svc.spec.name, code=svc.proc.returncode)
