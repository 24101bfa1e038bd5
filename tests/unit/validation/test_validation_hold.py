"""A mail held because clamd gave no answer, without I/O: what its record keeps for a rescan
(routing.held_facts), the MailScored a release puts back before validation
(control.server.queues.rescan_record), routing once per release (once.Routing.key), the per-batch
clamd backoff (virus.ScanBatch, with a client that fails as told) and the metrics of routing."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from control.server.quarantine_view import Held
from control.server.queues import rescan_record, unscanned
from core.publish import Encoder
from streams.validation.agents import read_scored
from control.settings import Settings
from schemas import default_codec, pack_message, unpack_message
from streams.validation.agents import count
from streams.validation.clamd import ClamdScanError, ClamdUnavailable, ScanResult
from streams.validation.once import PartitionRouter, Routing
from streams.validation.findings import Findings
from streams.validation.routing import archive_copy, decide
from streams.validation.settings import ClamdSettings
from streams.validation.virus import ScanBatch, scan_with_retry

RAW = b"From: y@x.test\r\nTo: bob@example.com\r\nSubject: held\r\n\r\nbody\r\n"


def received(rcpts: list[str], spf: str | None = "pass") -> dict[str, Any]:
    return {"mail_id": "01HELD", "event_time": 1000, "node": "gw1", "origin": "SMTP", "client_address": "192.0.2.1",
            "client_helo": "h", "tls": None, "mail_from": "y@x.test", "rcpt_to": rcpts, "size": len(RAW),
            "message": pack_message(RAW), "spf": spf}


def failed(**spam: Any) -> Findings:
    return Findings(virus_scan="failed", virus_detail="ClamdUnavailable: cannot connect", **spam)


def test_a_held_mail_keeps_the_spam_verdict_and_the_door_spf() -> None:
    (route,) = decide(received(["bob@example.com"]), "gw", failed(spam_verdict="spam", spam_score=0.875))
    assert (route.queue, route.filter) == ("quarantine", "virus-scan-failed")
    assert route.record["reasons"] == ["held: virus scan failed: ClamdUnavailable: cannot connect",
                                       "spam filter: spam (0.8750)", "spf at the door: pass"]
    (route,) = decide(received(["bob@example.com"], spf=None), "gw", failed())
    assert route.record["reasons"] == ["held: virus scan failed: ClamdUnavailable: cannot connect"]


def held(reasons: list[str], queue: str = "quarantine") -> Held:
    record = {**decide(received(["bob@example.com", "carol@example.org"]), "v1", failed())[0].record,
              "reasons": reasons}
    return Held(queue, record, list(record["rcpt_to"]))


def test_the_rescan_record_rebuilds_what_validation_reads() -> None:
    codec = default_codec()
    mail = held(["held: virus scan failed: ClamdTimeout: x", "spam filter: unsure (0.4200)", "spf at the door: fail"])
    assert unscanned(mail) and not unscanned(held(["attachment policy: invoice.exe"]))
    assert not unscanned(held(["held: x"], queue="spam"))
    record = rescan_record(mail, RAW, ["carol@example.org"], "admin:alice", "ctl", 5000)
    scored, mail_in = read_scored(codec, Encoder(codec).encode(record))
    assert (scored["mail_id"], scored["verdict"], scored["score"], scored["event_time"]) == \
        ("01HELD", "unsure", 0.42, 5000)
    assert scored["reasons"] == ["released from hold by admin:alice: the spam filter's verdict kept"]
    assert scored["received"] == b""  # the mail is carried once, in "mail"
    assert (mail_in["rcpt_to"], mail_in["mail_from"], mail_in["spf"], mail_in["event_time"]) == \
        (["carol@example.org"], "y@x.test", "fail", 1000)  # only the recipients released
    assert unpack_message(mail_in["message"]) == RAW and mail_in["size"] == len(RAW)
    bare = rescan_record(held(["held: virus scan failed: ClamdTimeout: x"]), RAW, ["bob@example.com"], "a", "c", 1)
    assert (bare.verdict, bare.score, bare.reasons) == \
        ("unsure", 0.0, ["released from hold by a: not scored again"])


def test_a_rescan_is_routed_once_per_release(tmp_path: Any) -> None:
    router = PartitionRouter(Settings(home=tmp_path), default_codec(), 0, {"01HELD": {"input_offset": 3}}, None,
                             "validation.routed")  # type: ignore[arg-type]  # no producer: unrouted() only
    first, again = Routing(3, "01HELD", ()), Routing(9, "01HELD", ())
    rescan, rescan_copy = Routing(10, "01HELD", (), "q[1]@7"), Routing(11, "01HELD", (), "q[1]@7")
    later = Routing(12, "01HELD", (), "q[1]@8")
    assert rescan.key == "01HELD#rescan:q[1]@7" and first.key == "01HELD"
    assert router.unrouted([first, again, rescan, rescan_copy, later]) == [rescan, later]
    router.marks[rescan.key] = {"input_offset": 10}
    assert router.unrouted([rescan_copy, later]) == [later]  # read again after a crash: skipped


class FailingClamd:
    """Stands in for ClamdClient: fails ``fail`` times (then answers OK), as ``error``."""

    max_stream_bytes, concurrency = 1 << 20, 1

    def __init__(self, fail: int, error: type[Exception] = ClamdUnavailable) -> None:
        self.fail, self.error, self.calls = fail, error, 0

    async def instream(self, data: bytes) -> ScanResult:
        self.calls += 1
        if self.calls <= self.fail:
            raise self.error("clamd said no")
        return ScanResult()


async def test_a_batch_retries_on_one_backoff_and_a_scan_error_holds_one_mail() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    settings = ClamdSettings(attempts=3, retry_initial_s=1, retry_max_s=5)
    down, batch = FailingClamd(fail=1000), ScanBatch(settings)
    for i in range(20):
        with pytest.raises(ClamdUnavailable) as caught:
            await scan_with_retry(RAW, down, settings, sleep=sleep, batch=batch)  # type: ignore[arg-type]
        assert ("not tried" in str(caught.value)) == (i > 0)
    assert waits == [1, 2] and down.calls == 3  # one mail's retries, not twenty

    waits.clear()
    erring, batch = FailingClamd(fail=3, error=ClamdScanError), ScanBatch(settings)
    with pytest.raises(ClamdScanError):  # clamd answered ERROR for this mail: up, so the rest is scanned
        await scan_with_retry(RAW, erring, settings, sleep=sleep, batch=batch)  # type: ignore[arg-type]
    assert (await scan_with_retry(RAW, erring, settings, sleep=sleep, batch=batch)).clean  # type: ignore[arg-type]


async def test_a_batch_stops_retrying_when_its_retry_time_is_spent() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    settings = ClamdSettings(attempts=10, retry_initial_s=1, retry_max_s=4, batch_retry_s=6)
    batch = ScanBatch(settings, clock=lambda: now[0])
    flaky = FailingClamd(fail=1000)
    with pytest.raises(ClamdUnavailable):
        await scan_with_retry(RAW, flaky, settings, sleep=sleep, batch=batch)  # type: ignore[arg-type]
    assert now[0] == 3.0 and flaky.calls == 3  # waited 1 + 2; a wait of 4 would pass the 6 s


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": "message-validation", **labels}) or 0.0


def test_routing_counts_the_queue_and_the_check_that_held_a_mail() -> None:
    before = {q: sample("mailgate_mails_total", queue=q) for q in ("mail.quarantine", "mail.out", "mail.archive")}
    held_before = sample("mailgate_rejections_total", reason="virus-scan-failed")
    mail = received(["bob@example.com", "carol@example.org"])
    routes = decide(mail, "gw", failed())
    count([*routes, archive_copy(mail, routes, "gw")])
    count(decide(mail, "gw", Findings(virus_scan="clean")))  # two records on mail.out: one mail
    assert sample("mailgate_mails_total", queue="mail.quarantine") == before["mail.quarantine"] + 1
    assert sample("mailgate_mails_total", queue="mail.archive") == before["mail.archive"] + 1
    assert sample("mailgate_mails_total", queue="mail.out") == before["mail.out"] + 1
    assert sample("mailgate_rejections_total", reason="virus-scan-failed") == held_before + 1
