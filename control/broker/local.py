"""control/broker — provisioning of the local broker: jars from Maven Central (cached once per
version), storage formatted on first start, started and stopped as a process.

Run by `mailgate kafka start|stop|status`; the test suite starts its own.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from core.settings import Settings

MAVEN_TIMEOUT_S = 900


class BrokerError(RuntimeError):
    """The local broker could not be provisioned, started or stopped; says how to fix it."""


@dataclass
class LocalBroker:
    version: str
    data_dir: Path
    cache_dir: Path
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    heap: str = "1g"
    max_message_bytes: int = 30 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalBroker:
        from core.kafka import max_record_bytes

        b = settings.broker
        return cls(
            version=b.version,
            data_dir=settings.broker_data_dir,
            cache_dir=b.cache_dir,
            host=b.host,
            port=b.port,
            controller_port=b.controller_port,
            heap=b.heap,
            max_message_bytes=max_record_bytes(settings),
        )

    # -- files ---------------------------------------------------------------

    @property
    def libs_dir(self) -> Path:
        return self.cache_dir / self.version / "libs"

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def _props_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def _log_dirs(self) -> Path:
        return self.data_dir / "logs"

    def ensure_dist(self, say: callable = print) -> Path:  # type: ignore[valid-type]
        """Download the broker's jars once per version (Maven Central, via mvn)."""
        marker = self.libs_dir.parent / ".complete"
        if marker.exists():
            return self.libs_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not installed: install it (apt-get install maven), "
                              "or set MAILGATE_KAFKA__BOOTSTRAP_SERVERS to use an external cluster")
        say(f"downloading Apache Kafka {self.version} from Maven Central (once, into {self.libs_dir.parent})")
        pom = resources.files("control.broker").joinpath("pom.xml").read_text()
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "pom.xml").write_text(pom.replace("@KAFKA_VERSION@", self.version))
            staging = Path(tmp, "libs")
            cmd = [mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
                   "-DincludeScope=runtime"]
            run = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S)
            if run.returncode != 0:
                raise BrokerError(f"mvn could not fetch Kafka {self.version}: {(run.stdout + run.stderr)[-2000:]}")
            self.libs_dir.parent.mkdir(parents=True, exist_ok=True)
            if self.libs_dir.exists():
                shutil.rmtree(self.libs_dir)
            shutil.move(str(staging), self.libs_dir)
        marker.touch()
        return self.libs_dir

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java 17+ is needed for the local Kafka broker: apt-get install openjdk-17-jre-headless")
        return java

    def _write_properties(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self._log_dirs),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": str(self.max_message_bytes),
            "replica.fetch.max.bytes": str(self.max_message_bytes),
            "log.retention.hours": "168",
        }
        self._props_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def format(self) -> bool:
        """Format the storage on first start; returns True when it formatted."""
        self._write_properties()
        if (self._log_dirs / "meta.properties").exists():
            return False
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cmd = [self._java(), "-cp", f"{self.libs_dir}/*", "kafka.tools.StorageTool", "format",
               f"--cluster-id={cluster_id}",  # "=": an id may begin with "-"
               "--config", str(self._props_file)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            raise BrokerError(f"formatting {self._log_dirs} failed: {(run.stdout + run.stderr)[-2000:]}")
        return True

    # -- process -------------------------------------------------------------

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def port_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 60.0, say: callable = print) -> None:  # type: ignore[valid-type]
        if self.is_running():
            say(f"Kafka already running (pid {self.pid()}) on {self.bootstrap_servers}")
            return
        if self.port_open():
            raise BrokerError(f"{self.bootstrap_servers} is taken by another process: stop it, or set "
                              "MAILGATE_BROKER__PORT to a free port")
        self.ensure_dist(say)
        if self.format():
            say(f"formatted Kafka storage in {self._log_dirs}")
        log4j = resources.files("control.broker").joinpath("log4j2.yaml")
        cmd = [self._java(), f"-Xmx{self.heap}", f"-Xms{min_heap(self.heap)}", "-XX:+UseG1GC",
               f"-Dlog4j2.configurationFile={log4j}", "-Djava.awt.headless=true",
               "-cp", f"{self.libs_dir}/*", "kafka.Kafka", str(self._props_file)]
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        self._proc = proc  # kept so that stop() reaps it when this process started it
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(f"Kafka exited with {proc.returncode} at start; see {self.log_file}:\n"
                                  + self._log_tail())
            if self.port_open() and self._log_says_started():
                say(f"Kafka {self.version} running on {self.bootstrap_servers} (pid {proc.pid}, data {self.data_dir})")
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"Kafka did not start within {timeout:.0f}s; see {self.log_file}:\n" + self._log_tail())

    def _log_says_started(self) -> bool:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
                return b"Kafka Server started" in f.read()
        except OSError:
            return False

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL); True when one was running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.pid == pid:
            proc.wait(timeout=5)
            self._proc = None
        # A restart appends to the same log: forget the old "started" line.
        if self.log_file.exists():
            self.log_file.rename(self.log_file.with_suffix(".log.1"))
        return True


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def min_heap(heap: str) -> str:
    return "256m" if heap.lower().endswith("g") or int(heap.rstrip("mM") or 0) >= 256 else heap
