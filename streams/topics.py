"""The Faust topic handles of the stream stages, from the shared topic names."""

from __future__ import annotations

import faust

from schemas import topics as t
from schemas.topics import TopicNames


class StreamTopics:
    def __init__(self, app: faust.App, prefix: str) -> None:
        names = TopicNames(prefix)

        def topic(name: str) -> faust.TopicT:
            return app.topic(names(name), key_type=bytes, value_type=bytes, internal=False)

        self.mail_in = topic(t.MAIL_IN)
        self.mail_scored = topic(t.MAIL_SCORED)
        self.spam_reports = topic(t.SPAM_REPORTS)
        self.spam_patterns = topic(t.SPAM_PATTERNS)
        self.mail_out = topic(t.MAIL_OUT)
        self.mail_quarantine = topic(t.MAIL_QUARANTINE)
        self.by_queue = {
            "out": self.mail_out,
            "quarantine": self.mail_quarantine,
            "spam": topic(t.MAIL_SPAM),
            "virus": topic(t.MAIL_VIRUS),
            "ciss": topic(t.MAIL_CISS),
            "archive": topic(t.MAIL_ARCHIVE),
        }
