"""maildepot-connector's import: a Kafka time-out leaves the file where it is (imported
again, under the same ids, at the next scan); only a file that is no mail source fails."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from control.settings import Settings
from ingress.connector import importer


class TimingOutSpool:
    async def put(self, record: dict[str, Any]) -> None:
        raise TimeoutError("Kafka did not acknowledge in time")


def settled(path: Path) -> Path:
    old = time.time() - importer.SETTLE_S - 5
    os.utime(path, (old, old))
    return path


def test_a_kafka_time_out_leaves_the_file_in_place(tmp_path: Path) -> None:
    eml = tmp_path / "one.eml"
    eml.write_bytes(b"From: a@x.test\r\nTo: b@example.com\r\nSubject: s\r\n\r\nbody\r\n")
    settled(eml)
    with pytest.raises(TimeoutError):
        asyncio.run(importer.scan(Settings(), TimingOutSpool(), tmp_path))  # type: ignore[arg-type]
    assert eml.exists() and not (tmp_path / "failed").exists()
