"""`docker compose config` accepts compose.yaml — where a Docker engine with compose answers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.kafka import docker_engine_problem

ROOT = Path(__file__).resolve().parents[2]


def test_docker_compose_accepts_the_file() -> None:
    problem = docker_engine_problem()
    if problem or shutil.which("docker") is None:
        pytest.skip(problem or "no docker client")
    run = subprocess.run(["docker", "compose", "-f", str(ROOT / "compose.yaml"), "config", "--quiet"],
                         capture_output=True, text=True, timeout=60)
    if "is not a docker command" in run.stderr:
        pytest.skip("the docker client has no compose plugin")
    assert run.returncode == 0, run.stderr
