"""control/engine — the supervisor that runs the services of one node as child processes.

`mailgate up` starts it. A service that exits on its own is started again after
a backoff (1 s, doubling to 30 s); Ctrl-C (SIGINT) or SIGTERM stops every
service cleanly (SIGTERM, then SIGKILL after a grace period).

With settings (``mailgate up``), the engine is also this node's end of the
control plane (``node_link.NodeLink``): it runs or stops each service as
control.desired says, restarts it when asked, and reports each one's state to
control.status. Two policies of the registry are kept here, whatever was asked:

- ``restart_after_stop``: a service stopped on purpose is started again after
  ``control.grace_restart_s`` (spam-filter, the maildepot archiver and connector);
- ``auto_start=False`` (remote-support): never started by the engine itself — only
  by an administrator's start made while this engine runs, with an expiry; stopped
  when that runs out, and never restarted after a crash or an engine restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.control_channel import Record, now_ms
from core.logging import get_logger
from core.settings import Settings

if TYPE_CHECKING:
    from control.engine.node_link import NodeLink

log = get_logger("engine")

GRACE_S = 15.0
BACKOFF_MAX_S = 30.0
TICK_S = 0.2


@dataclass
class ServiceSpec:
    name: str
    listens: str  # where it listens / what it consumes, for people
    argv: list[str] = field(default_factory=list)
    auto_start: bool = True  # False: only an administrator starts it, for a limited time
    restart_after_stop: bool = False  # True: started again after the grace period when stopped on purpose
    env: dict[str, str] = field(default_factory=dict)

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
    state: str = "starting"  # running | stopped | failed | starting
    since_ms: int = field(default_factory=now_ms)
    exit_code: int | None = None
    detail: str | None = None
    desired: str = "running"
    expires_ms: int | None = None
    generation: int | None = None  # the restart generation applied (None: not read yet)
    stopping_until: float | None = None  # a stop on purpose is under way until then
    restart_after: bool = False  # start again as soon as the stop finished (a restart)
    overridden: str | None = None  # event_id of the desired record a policy already answered

    def set_state(self, state: str, detail: str | None = None) -> None:
        if state != self.state:
            self.state, self.since_ms = state, now_ms()
        self.detail = detail

    def status(self) -> Record:
        return {"service": self.spec.name, "state": self.state, "since": self.since_ms,
                "pid": self.proc.pid if self.proc is not None else None, "restarts": self.restarts,
                "exit_code": self.exit_code, "desired": self.desired, "expires_time": self.expires_ms,
                "detail": self.detail}


class Engine:
    def __init__(self, services: list[ServiceSpec], env: dict[str, str] | None = None,
                 say: Callable[[str], None] = print, settings: Settings | None = None) -> None:
        self.services = [_Running(s) for s in services]
        self.env = {**os.environ, **(env or {})}
        self.say = say
        self.settings = settings
        self.link: NodeLink | None = None
        self._stopping = False
        self._reported: dict[str, tuple[object, ...]] = {}
        self._last_beat = 0.0

    def _start(self, svc: _Running) -> None:
        env = {**self.env, **(self.link.config_env() if self.link else {}), **svc.spec.env}
        if svc.expires_ms is not None:
            env["MAILGATE_CONTROL__RUN_UNTIL_MS"] = str(svc.expires_ms)
        svc.proc = subprocess.Popen(svc.spec.argv, env=env, stdin=subprocess.DEVNULL)
        svc.started_at = time.monotonic()
        svc.exit_code = None
        svc.set_state("running")
        log.info("service started", name=svc.spec.name, pid=svc.proc.pid, listens=svc.spec.listens)

    def request_stop(self, *_: object) -> None:
        self._stopping = True

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Supervise until SIGINT/SIGTERM (or ``until()`` says so), then stop all."""
        main = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)} \
            if main else {}
        try:
            if self.settings is not None:
                from control.engine.node_link import NodeLink

                self.link = NodeLink(self.settings).start()
            for svc in self.services:
                self._obey(svc)  # starts what should run (with a link; else desired is "running")
                if svc.proc is None and svc.desired == "running":
                    self._start(svc)
                elif svc.proc is None:
                    svc.set_state("stopped", "stopped as control.desired says")
            while not self._stopping and not (until and until()):
                self._tick()
                time.sleep(TICK_S)
        finally:
            self.stop_all()
            if self.link is not None:
                for svc in self.services:
                    svc.set_state("stopped", "the engine stopped")
                    self.link.report(svc.status())
                self.link.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _tick(self) -> None:
        for svc in self.services:
            self._obey(svc)
            self._supervise(svc)
        self._report()

    # -- what control.desired says, and the policies ---------------------------

    def _obey(self, svc: _Running) -> None:
        if self.link is None:
            return
        record = self.link.effective(svc.spec.name)
        wanted = record["state"] if record else "running"
        expires = None
        if not svc.spec.auto_start:
            wanted, expires = self._limited_run(svc, record)
        elif svc.spec.restart_after_stop and wanted == "stopped" and record is not None:
            assert self.settings is not None
            if now_ms() - record["event_time"] >= self.settings.control.grace_restart_s * 1000:
                self._override(svc, record, "running", "grace period over: this service may not stay stopped")
                wanted = "running"
        svc.desired, svc.expires_ms = wanted, expires
        generation = record["restart_generation"] if record else 0
        if svc.generation is None:
            svc.generation = generation  # a restart asked before this engine started is done
        elif generation > svc.generation:
            svc.generation = generation
            if svc.proc is not None:
                self._terminate(svc, "restarting as asked", restart=True)
        if wanted == "stopped" and svc.proc is not None and svc.stopping_until is None:
            self._terminate(svc, f"stopping as asked by {record['actor'] if record else 'policy'}")
        elif wanted == "running" and svc.proc is None and svc.state in ("stopped", "starting"):
            svc.restarts, svc.next_start = 0, 0.0
            self._start(svc)

    def _limited_run(self, svc: _Running, record: Record | None) -> tuple[str, int | None]:
        """remote-support: runs only on a start made while this engine runs, until its expiry."""
        if record is None or record["state"] != "running" or svc.overridden == record["event_id"]:
            return "stopped", None
        expires = record.get("expires_time")
        assert self.link is not None
        if record["event_time"] < self.link.started_ms:
            self._override(svc, record, "stopped", "never started automatically (engine restart)")
        elif expires is None or expires <= now_ms():
            self._override(svc, record, "stopped", "its duration ran out")
        else:
            return "running", expires
        return "stopped", None

    def _override(self, svc: _Running, record: Record, state: str, reason: str) -> None:
        if svc.overridden != record["event_id"] and self.link is not None:
            svc.overridden = record["event_id"]
            self.link.write_desired(svc.spec.name, state, reason)

    # -- processes ------------------------------------------------------------

    def _terminate(self, svc: _Running, why: str, restart: bool = False) -> None:
        assert svc.proc is not None
        log.info("stopping service", name=svc.spec.name, pid=svc.proc.pid, why=why)
        svc.proc.send_signal(signal.SIGTERM)
        svc.stopping_until = time.monotonic() + GRACE_S
        svc.restart_after = restart

    def _supervise(self, svc: _Running) -> None:
        now = time.monotonic()
        if svc.proc is None:
            if svc.state == "failed" and svc.desired == "running" and now >= svc.next_start:
                self._start(svc)
            return
        code = svc.proc.poll()
        if code is None:
            if svc.stopping_until is not None and now > svc.stopping_until:
                log.warning("service did not stop in time, killing", name=svc.spec.name)
                svc.proc.kill()
            return
        svc.proc, svc.exit_code = None, code
        if svc.stopping_until is not None:  # stopped on purpose
            svc.stopping_until = None
            svc.set_state("stopped", "stopped as asked")
            log.info("service stopped", name=svc.spec.name, code=code)
            if svc.restart_after:
                svc.restart_after = False
                self._start(svc)
            return
        if not svc.spec.auto_start:  # never restarted after a crash
            svc.set_state("stopped", f"exited with {code}; not restarted (started by an administrator only)")
            record = self.link.effective(svc.spec.name) if self.link is not None else None
            if record is not None:
                self._override(svc, record, "stopped", f"exited with {code}; never restarted automatically")
            log.warning("service exited; not restarted", name=svc.spec.name, code=code)
            return
        if now - svc.started_at > 60:
            svc.restarts = 0  # it ran for a while: start the backoff over
        delay = min(2.0**svc.restarts, BACKOFF_MAX_S)
        svc.restarts += 1
        svc.next_start = now + delay
        svc.set_state("failed", f"exited with {code}; restarting in {delay:.0f} s")
        log.warning("service exited, restarting", name=svc.spec.name, code=code, restart_in_s=delay)

    def _report(self) -> None:
        if self.link is None or self.settings is None:
            return
        now = time.monotonic()
        beat = now - self._last_beat >= self.settings.control.status_interval_s
        if self.link.refresh_requested.is_set():
            self.link.refresh_requested.clear()
            beat = True
        for svc in self.services:
            status = svc.status()
            fingerprint = tuple(v for k, v in status.items() if k != "detail")
            if beat or self._reported.get(svc.spec.name) != fingerprint:
                self._reported[svc.spec.name] = fingerprint
                self.link.report(status)
        if beat:
            self._last_beat = now

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
