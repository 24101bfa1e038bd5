"""Entry point of spam-filter: `mailgate service spam-filter`.

A Faust worker (consumer group ``mailgate.spam-filter``): scores mail.in into
mail.scored, learns from spam.reports, follows spam.patterns.
"""

from __future__ import annotations

import faust

from core.control_channel import attach_faust
from streams.spam.settings import Settings
from schemas import default_codec
from streams.app import build_app, run_worker
from streams.spam.agents import STAGE, register
from streams.spam.scoring import SpamFilter
from streams.topics import StreamTopics


def build(settings: Settings) -> faust.App:
    app = build_app(settings, STAGE)
    spam = SpamFilter(settings.spam, node=settings.node)
    gate = attach_faust(app, settings, STAGE)  # pause/resume of the consumers, as control.desired says
    register(app, StreamTopics(app, settings.kafka.topic_prefix), default_codec(), settings, spam, gate)
    return app


def run(settings: Settings) -> None:
    run_worker(build(settings), settings)
