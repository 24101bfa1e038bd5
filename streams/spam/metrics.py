"""spam-filter: its Prometheus metrics, served on the /metrics of the spam-filter process
(core.metrics.start_metrics). Labels are bounded: a verdict (spam/unsure/ham) or a report
label (spam/ham), never a mail id or a sender."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from core.metrics import shown_at_zero
from streams.spam.patterns import HAM, SPAM
from streams.spam.scoring import VERDICTS

SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

SCORED = shown_at_zero(Counter("mailgate_spam_scored_total", "Mails scored by the spam filter, by verdict",
                               ["verdict"]), *VERDICTS)
SCORE = Histogram("mailgate_spam_score", "Spam score of each mail scored (0 ham .. 1 spam)", buckets=SCORE_BUCKETS)
REPORTS = shown_at_zero(Counter("mailgate_spam_reports_applied_total",
                                "Spam/ham reports applied to the pattern table, by label", ["label"]), SPAM, HAM)


def count_scored(verdict: str, score: float) -> None:
    SCORED.labels(verdict).inc()
    SCORE.observe(score)


def count_report(label: str) -> None:
    REPORTS.labels(label).inc()
