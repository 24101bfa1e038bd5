"""The counters of the three archive services (message-archive, maildepot-archiver,
maildepot-connector) move as their counting functions say, read from prometheus_client's
registry without a process or a port."""

from __future__ import annotations

from prometheus_client import REGISTRY

from egress.maildepot import metrics as archiver
from egress.maildepot.store import Stored
from ingress.connector import metrics as connector
from streams.archive import metrics as archive


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_message_archive_counts_mails_not_archived_by_reason() -> None:
    name = "mailgate_message_archive_not_archived_total"
    assert REGISTRY.get_sample_value(name, {"reason": "no-rule"}) is not None  # on the page before the first
    before = {r: sample(name, reason=r) for r in ("exception", "excluded", "no-rule")}
    archive.count_not_archived("excluded")
    archive.count_not_archived("excluded")
    archive.count_not_archived("no-rule")
    assert {r: sample(name, reason=r) - before[r] for r in before} == {"exception": 0, "excluded": 2, "no-rule": 1}
    spooled = sample("mailgate_mails_total", service="message-archive", queue="archive.spool")
    archive.SPOOLED.inc()
    assert sample("mailgate_mails_total", service="message-archive", queue="archive.spool") == spooled + 1


def test_maildepot_archiver_counts_a_batch_and_times_it() -> None:
    name, batch = "mailgate_maildepot_archiver_mails_total", {"service": "maildepot-archiver", "step": "store-batch"}
    before = (sample(name, outcome="stored"), sample(name, outcome="duplicate"),
              sample("mailgate_latency_seconds_count", **batch), sample("mailgate_latency_seconds_sum", **batch))
    archiver.count_batch(Stored(stored=["a", "b", "c"], duplicates=["d"]), 0.25)
    after = (sample(name, outcome="stored"), sample(name, outcome="duplicate"),
             sample("mailgate_latency_seconds_count", **batch), sample("mailgate_latency_seconds_sum", **batch))
    assert [x - y for x, y in zip(after, before)] == [3, 1, 1, 0.25]


def test_maildepot_connector_counts_imports_by_kind_and_outcome() -> None:
    name = "mailgate_maildepot_connector_imports_total"
    before = {(k, o): sample(name, kind=k, outcome=o) for k in ("mbox", "maildir", "eml", "unknown")
              for o in ("imported", "failed")}
    connector.count_import("maildir", "imported")
    connector.count_import("mbox", "failed")
    connector.count_import(None, "failed")  # not a mail source at all
    moved = {key: sample(name, kind=key[0], outcome=key[1]) - value for key, value in before.items()}
    assert {key: n for key, n in moved.items() if n} == {("maildir", "imported"): 1, ("mbox", "failed"): 1,
                                                         ("unknown", "failed"): 1}
