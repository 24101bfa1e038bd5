"""spam-filter: scoring waits for the pattern table (issue 6), but only as long as it is told,
and the metrics count what was scored and learnt."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from streams.spam.agents import table_loaded
from streams.spam.metrics import count_report, count_scored


async def test_scoring_waits_until_the_table_is_read() -> None:
    ready = asyncio.Event()
    waiting = asyncio.create_task(table_loaded(ready, 30.0, "m1"))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # the table is not read yet: no mail is scored
    ready.set()
    await asyncio.wait_for(waiting, 1.0)


async def test_the_wait_is_bounded_and_happens_once() -> None:
    ready = asyncio.Event()
    started = time.monotonic()
    await table_loaded(ready, 0.2, "m1")
    assert 0.15 <= time.monotonic() - started < 2.0
    assert ready.is_set()  # past the bound, the next mails do not wait again
    started = time.monotonic()
    await table_loaded(ready, 10.0, "m2")
    assert time.monotonic() - started < 0.1


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_count_verdicts_scores_and_reports() -> None:
    spam = sample("mailgate_spam_scored_total", verdict="spam")
    ham = sample("mailgate_spam_scored_total", verdict="ham")
    reports, total = sample("mailgate_spam_reports_applied_total", label="ham"), sample("mailgate_spam_score_sum")
    high = sample("mailgate_spam_score_bucket", le="0.5")
    count_scored("spam", 0.9)
    count_report("ham")
    assert sample("mailgate_spam_scored_total", verdict="spam") == spam + 1
    assert sample("mailgate_spam_scored_total", verdict="ham") == ham
    assert sample("mailgate_spam_reports_applied_total", label="ham") == reports + 1
    assert abs(sample("mailgate_spam_score_sum") - total - 0.9) < 1e-9
    assert sample("mailgate_spam_score_bucket", le="0.5") == high  # 0.9 is not in the low bucket
