"""engine: the local broker that `mailgate up` uses, supervised like a service.

The engine ticks a ``BrokerWard`` with its services: a broker that exits (``kill -9``,
an out-of-memory kill) is reaped at once, never left a zombie, and started again after a
back-off (1 s, doubling to 30 s; from 1 s again once it ran for a minute). A broker that
another command started (``mailgate kafka start``) is watched by its pid and started
again the same way when it dies. Every change is logged and reported to control.status
as the service ``kafka`` of this node (once the broker is back to carry the report).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from control.broker.local import BrokerError, LocalBroker
from core.control_channel import Record, now_ms
from core.logging import get_logger

log = get_logger("engine")

NAME = "kafka"
BACKOFF_MAX_S = 30.0
STEADY_S = 60.0  # running this long: the back-off starts over
START_TIMEOUT_S = 120.0  # recovery after an unclean stop replays the logs: give it time


class BrokerWard:
    """Keeps the local broker (or one node of a local cluster) running for the engine; ``tick()``
    never blocks on the broker."""

    def __init__(self, broker: LocalBroker, proc: subprocess.Popen[bytes] | None = None) -> None:
        self.broker = broker
        self.name = NAME if broker.voters is None else f"{NAME}-{broker.node_id}"
        self.proc = proc  # set when this process started the broker: it must reap it
        self.started_here = proc is not None  # so `mailgate up` stops it at the end
        self.pid = proc.pid if proc is not None else broker.pid()
        self.state = "running" if self.pid is not None else "failed"
        self.since_ms = now_ms()
        self.restarts = 0  # restarts since the engine started (reported)
        self.in_row = 0  # exits without a steady run between them (the back-off)
        self.exit_code: int | None = None
        self.detail: str | None = None
        self.started_at = time.monotonic()
        self.next_start = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        if self.state == "failed":
            if now >= self.next_start:
                self._launch(now)
            return
        if not self._alive():
            self._exited(now)
        elif self.state == "starting":
            if self.broker.ready():
                self._set("running", f"serving on {self.broker.bootstrap_servers}")
                log.info("kafka running again", name=self.name, pid=self.pid, restarts=self.restarts)
            elif now - self.started_at > START_TIMEOUT_S:
                log.warning("kafka did not start in time, killing it", pid=self.pid, log=str(self.broker.log_file))
                self.broker.stop(timeout=5)
                self._exited(now)

    def _alive(self) -> bool:
        if self.proc is not None:
            code = self.proc.poll()  # reaps it: no zombie
            if code is not None:
                self.exit_code = code
            return code is None
        return self.pid is not None and self.broker.pid() == self.pid

    def _exited(self, now: float) -> None:
        if now - self.started_at > STEADY_S:
            self.in_row = 0
        delay = min(2.0**self.in_row, BACKOFF_MAX_S)
        self.in_row += 1
        self.broker.pid()  # clears the pid file it left
        self.proc, self.pid, self.next_start = None, None, now + delay
        self._set("failed", f"exited with {self.exit_code}; restarting in {delay:.0f} s")
        log.warning("kafka exited, restarting", name=self.name, code=self.exit_code, restart_in_s=delay,
                    log=str(self.broker.log_file))

    def _launch(self, now: float) -> None:
        try:
            self.proc = self.broker.launch(say=lambda m: log.info(m))
        except (BrokerError, OSError) as exc:
            self._exited(now)
            self.detail = f"{exc}; {self.detail}"
            log.warning("kafka could not be started", error=str(exc))
            return
        self.pid, self.exit_code, self.started_at = self.proc.pid, None, now
        self.restarts += 1
        self._set("starting", "started again after it exited")
        log.info("kafka started again", name=self.name, pid=self.pid, restarts=self.restarts)

    def _set(self, state: str, detail: str | None) -> None:
        if state != self.state:
            self.state, self.since_ms = state, now_ms()
        self.detail = detail

    def status(self) -> Record:
        return {"service": self.name, "state": self.state, "since": self.since_ms, "pid": self.pid,
                "restarts": self.restarts, "exit_code": self.exit_code, "desired": "running",
                "expires_time": None, "detail": self.detail}

    def stop(self, say: Callable[[str], None] = print) -> None:
        """Stops the broker (the engine's last step, after every service has stopped)."""
        if self.broker.stop():
            say("local Kafka stopped")
        self.proc, self.pid = None, None


class EngineLock:
    """One `mailgate up` per home at a time: a later one waits while an earlier one shuts down
    (it stops its services, then the broker), instead of finding a broker that goes away under
    it. An flock, so a killed engine never leaves it held."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self, timeout: float, say: Callable[[str], None] = print) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+")  # noqa: SIM115 - held for the engine's whole run
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._holder()
                    self._file.close()
                    raise BrokerError(f"another `mailgate up` (pid {holder}) still runs on {self.path.parent} "
                                      f"after {timeout:.0f} s: stop it (Ctrl-C or kill {holder}) first") from None
                if not told:
                    say(f"a previous `mailgate up` (pid {self._holder()}) is still shutting down; waiting for it")
                    told = True
                time.sleep(0.2)
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def held_by(self) -> str | None:
        """The pid of the `mailgate up` holding the lock, None when none does."""
        try:
            with open(self.path) as probe:
                fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except FileNotFoundError:
            return None
        except BlockingIOError:
            return self._holder()
        return None

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None
