"""Entry point of message-archive: `mailgate service message-archive`.

A Faust worker (consumer group ``mailgate.message-archive``) running the
``archive`` agent: mail.archive → archive rules → archive.spool.
"""

from __future__ import annotations

import faust

from core.control_channel import attach_faust
from streams.archive.settings import Settings
from schemas import default_codec
from streams.app import build_app, run_worker
from streams.archive.agents import STAGE, register
from streams.topics import StreamTopics


def build(settings: Settings) -> faust.App:
    app = build_app(settings, STAGE)
    gate = attach_faust(app, settings, STAGE)  # pause/resume of the consumers, as control.desired says
    register(app, StreamTopics(app, settings.kafka.topic_prefix), default_codec(), settings.node,
             settings.kafka.topic_prefix, settings.archive.rules, settings.domains, gate)
    return app


def run(settings: Settings) -> None:
    run_worker(build(settings), settings)
