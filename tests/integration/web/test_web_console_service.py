"""web-console as the engine runs it: `mailgate service web-console`, a real HTTP server."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"web-console exited {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"web-console not answering on {url}")


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    env = {**os.environ, "MAILGATE_HOME": str(tmp_path), "MAILGATE_WEB__PORT": str(port),
           "MAILGATE_WEB__PUBLIC_URL": "https://mail.example.com/console/"}
    proc = subprocess.Popen([sys.executable, "-m", "control.cli", "service", "web-console"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url + "/healthz", proc)
        yield url, tmp_path
    finally:
        proc.terminate()
        code = proc.wait(timeout=15)
        assert proc.stderr is not None
        proc.stderr.close()
        assert code == 0, "web-console does not stop cleanly on SIGTERM"


def test_console_serves_pages_and_keeps_its_key_private(console: tuple[str, Path]) -> None:
    url, home = console
    assert httpx.get(url + "/healthz").text == "ok"
    front = httpx.get(url + "/")
    assert front.status_code == 200 and "mailgate" in front.text
    assert httpx.get(url + "/static/console.css").status_code == 200
    missing = httpx.get(url + "/no-such-page")
    assert missing.status_code == 404 and "<h1>404</h1>" in missing.text
    key = home / "web-secret"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) >= 32


def test_a_public_address_without_scheme_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "MAILGATE_HOME": str(tmp_path), "MAILGATE_WEB__PUBLIC_URL": "mail.example.com"}
    done = subprocess.run([sys.executable, "-m", "control.cli", "service", "web-console"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "MAILGATE_WEB__PUBLIC_URL" in done.stderr and "http://" in done.stderr
