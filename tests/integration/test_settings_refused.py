"""A gateway refuses to start on a setting it does not know: `mailgate up` and
`mailgate service NAME`, run as an administrator runs them, exit non-zero with a
readable message before they start a broker, a topic or a listener."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ports import free_port, wait_listening

ROOT = Path(__file__).resolve().parents[2]


def mailgate(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    outside = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    return subprocess.run([sys.executable, "-m", "control.cli", *args], cwd=cwd,
                          env={**outside, "PYTHONPATH": str(ROOT), "COLUMNS": "400", **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [("up",), ("service", "smtp-server")])
def test_a_misspelt_key_in_the_file_refuses_the_start(tmp_path: Path, command: tuple[str, ...]) -> None:
    port = free_port()
    (tmp_path / "mailgate.toml").write_text(f'[smtp_server]\nport = {port}\ndomans = ["a.test"]\n')
    done = mailgate(tmp_path, *command, MAILGATE_HOME=str(tmp_path / "home"),
                    MAILGATE_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:1")
    assert done.returncode != 0
    assert "unknown setting smtp_server.domans in mailgate.toml: did you mean domains?" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(TimeoutError):  # nothing listens on the configured port
        wait_listening("127.0.0.1", port, timeout=0.5)


@pytest.mark.parametrize("command", [("up",), ("service", "smtp-client")])
def test_a_misspelt_variable_refuses_the_start(tmp_path: Path, command: tuple[str, ...]) -> None:
    done = mailgate(tmp_path, *command, MAILGATE_HOME=str(tmp_path / "home"),
                    MAILGATE_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:1", MAILGATE_SMTP_SERVR__PORT="2600")
    assert done.returncode != 0
    assert ("unknown setting MAILGATE_SMTP_SERVR__PORT in the environment: did you mean "
            "MAILGATE_SMTP_SERVER__PORT?") in done.stderr, done.stderr
    assert not (tmp_path / "home").exists()  # refused before anything was made
