"""Virus scanning on by default when a real clamd answers; OFF, as a warning, when none does:
in message-validation's start and in `mailgate up`'s table."""

from __future__ import annotations

import time
from pathlib import Path

from streams.validation.scan_switch import probe
from streams.validation.settings import ClamdSettings, ValidationFilterSettings
from tests.support.clamd import Clamd
from tests.support.gateway import Gateway
from tests.support.sink import Sink


def test_auto_is_on_with_a_clamd_that_answers(clamd: Clamd) -> None:
    state = probe(ValidationFilterSettings(clamd=ClamdSettings(address=clamd.unix_address)))
    assert state.on and state.address == clamd.unix_address and "ClamAV" in state.why


def test_auto_is_off_when_nothing_answers(tmp_path: Path) -> None:
    nowhere = f"unix:{tmp_path}/no-clamd.ctl"
    state = probe(ValidationFilterSettings(clamd=ClamdSettings(address=nowhere)))
    assert not state.on and nowhere in state.why


def test_up_says_virus_scanning_off_in_its_table_and_validation_warns(broker, sink: Sink, tmp_path: Path) -> None:
    gw = Gateway(broker.bootstrap_servers, tmp_path / "node", sink.address,
                 MAILGATE_VALIDATION__CLAMD__ADDRESS=f"unix:{tmp_path}/no-clamd.ctl")
    said = 'service=message-validation event="virus scanning OFF"'
    with gw:
        deadline = time.monotonic() + 90
        while said not in gw.log_path.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.5)
    log = gw.log_path.read_text(errors="replace")
    table = log[:log.index("Ctrl-C stops")]
    assert "virus scanning" in table and "OFF" in table
    assert "warning: virus scanning OFF: no clamd answers" in " ".join(table.split())
    assert said in log
