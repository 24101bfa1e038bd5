"""The small chaos run of the suite (bench/chaos.py is the large one, with the broker and the whole
node killed too): mail through `mailgate up` while kill -9 hits each pipeline service in turn.
Nothing accepted is lost, and no stored mail is delivered twice."""

from __future__ import annotations

import threading
import time

from tests.support.chaos import Ledger, kill, outcome, send_all, service_pid, subjects
from tests.support.gateway import Gateway
from tests.support.sink import Sink

VICTIMS = ("spam-filter", "smtp-server", "message-validation", "smtp-client")


def test_kill_9_of_each_pipeline_service_loses_nothing_and_delivers_nothing_twice(gateway: Gateway,
                                                                                  sink: Sink) -> None:
    ledger, done, killed = Ledger(), threading.Event(), []

    def killer() -> None:
        for name in VICTIMS:
            if done.wait(2.5):
                return
            assert gateway.proc is not None
            if kill(service_pid(gateway.proc.pid, name)):
                killed.append(name)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    send_all(gateway.smtp_port, 300, 4, ledger)
    done.set()
    thread.join()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not set(ledger.accepted) <= set(subjects(sink)):
        time.sleep(1)
    time.sleep(3)  # a late second copy would show now

    result = outcome(ledger, sink)
    assert len(killed) >= 3, f"the run ended before the kills: {killed}"
    assert result.accepted == 300
    assert result.lost == [], f"lost after kill -9 of {killed}: {result.lost[:10]}\n{gateway.log()[-3000:]}"
    assert result.delivery == 0, f"{result.delivery} stored mails delivered twice after kill -9 of {killed}"
