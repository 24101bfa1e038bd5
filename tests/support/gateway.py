"""A whole gateway node, started the way an administrator does: `mailgate up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from control.settings import Settings
from core.settings import KafkaSettings
from egress.smtp_client.settings import SmtpClientSettings
from ingress.smtp.settings import SmtpServerSettings
from tests.support.ports import free_port, wait_listening


class Gateway:
    """`mailgate up` against a given broker, on free ports, with its own topic prefix."""

    def __init__(self, bootstrap: str, home: Path, smarthost: str, prefix: str | None = None, **env: str) -> None:
        self.prefix = prefix or f"t{uuid.uuid4().hex[:8]}."  # another node of the same cluster: its prefix
        self.smtp_port = free_port()
        self.home = home
        self.log_path = home / "gateway.log"
        outside = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
        self.env = {
            **outside,
            "MAILGATE_HOME": str(home),
            "MAILGATE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "MAILGATE_KAFKA__TOPIC_PREFIX": self.prefix,
            "MAILGATE_KAFKA__PARTITIONS": "3",
            "MAILGATE_SMTP_SERVER__PORT": str(self.smtp_port),
            "MAILGATE_DOMAINS": "example.com,example.org",
            "MAILGATE_SMTP_CLIENT__SMARTHOST": smarthost,
            "MAILGATE_LOG_LEVEL": "info",
            # free ports, not the defaults: another gateway on this machine may hold 50051 and 9400+
            "MAILGATE_CONTROL__PORT": str(free_port()),
            "MAILGATE_CONTROL__REMOTE_SUPPORT_PORT": str(free_port()),
            "MAILGATE_WEB__PORT": str(free_port()),
            "MAILGATE_CONTROL__METRICS_PORT_BASE": "0",
            # transport tests send made-up mails and compare what arrives: no statistical spam verdict,
            # no marking (tests/integration/spam tests the shipped base model and the marking as shipped)
            "MAILGATE_SPAM__BASE_MODEL": "none",
            "MAILGATE_VALIDATION__DECISION__MARK_UNSURE": "false",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def settings(self) -> Settings:
        """The same settings the gateway's processes read (for the test's own clients)."""
        return Settings(
            home=self.home,
            kafka=KafkaSettings(bootstrap_servers=self.env["MAILGATE_KAFKA__BOOTSTRAP_SERVERS"],
                                topic_prefix=self.prefix, partitions=3),
            domains=["example.com", "example.org"],
            smtp_server=SmtpServerSettings(port=self.smtp_port),
            smtp_client=SmtpClientSettings(smarthost=self.env["MAILGATE_SMTP_CLIENT__SMARTHOST"]),
        )

    def start(self) -> Gateway:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "control.cli", "up"], env=self.env, cwd=self.home,
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        try:
            wait_listening("127.0.0.1", self.smtp_port, timeout=60)
        except TimeoutError:
            self.stop()
            raise AssertionError(f"gateway did not come up:\n{self.log()}") from None
        return self

    def wait_for_mail(self, topic: str, mail_id: str, timeout: float = 60.0) -> dict:
        """The first record of ``mail_id`` on ``topic`` (without the prefix), read from the start."""
        from tests.support.topics import read_topic

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in read_topic(self.settings(), f"{self.prefix}{topic}"):
                if record.value["mail_id"] == mail_id:
                    return record.value
            time.sleep(0.5)
        raise AssertionError(f"{mail_id} not on {topic} within {timeout:.0f}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"`mailgate up` did not stop within 40 s of Ctrl-C:\n{self.log()}") from None

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        code = self.stop()
        if exc_type is None:
            assert code == 0, f"`mailgate up` exited with {code} after Ctrl-C:\n{self.log()}"

