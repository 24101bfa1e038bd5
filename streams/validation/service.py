"""Entry point of message-validation: `mailgate service message-validation`.

A Faust worker (consumer group ``mailgate.message-validation``) running the
``validate`` agent on mail.in.
"""

from __future__ import annotations

import faust

from core.control_channel import attach_faust
from streams.validation.settings import Settings
from schemas import default_codec
from streams.app import build_app
from streams.topics import StreamTopics
from streams.validation.agents import register
from streams.validation.inspect import Inspector
from streams.validation.once import make_router
from streams.validation.scan_switch import announce, probe
from streams.validation.senders import ConfirmedSenders

STAGE = "message-validation"
FAUST_LOGLEVEL = {"debug": "debug", "info": "info", "warning": "warn", "warn": "warn", "error": "error"}


def build(settings: Settings) -> faust.App:
    app = build_app(settings, STAGE)
    ciss = settings.validation.decision.ciss_anywhere  # only then is ciss.senders read
    senders = ConfirmedSenders().follow(app, settings, default_codec()) if ciss else None
    scanning = probe(settings.validation)  # said at every start; OFF as a warning
    announce(scanning)
    validation = settings.validation.model_copy(
        update={"clamd": settings.validation.clamd.model_copy(update={"address": scanning.address})})
    inspector = Inspector(validation, virus_scan=scanning.on, node=settings.node, senders=senders)
    gate = attach_faust(app, settings, STAGE)  # pause/resume of the consumers, as control.desired says
    register(app, StreamTopics(app, settings.kafka.topic_prefix), default_codec(), settings.node, inspector, gate,
             archive=settings.archive.enabled, once=make_router(settings, default_codec()),
             batch=settings.validation.routing_batch, within_s=settings.validation.routing_batch_within_s)
    return app


def run(settings: Settings) -> None:
    """Runs the worker until SIGINT/SIGTERM (Faust's worker installs the handlers)."""
    app = build(settings)
    loglevel = FAUST_LOGLEVEL.get(settings.log_level.lower(), "warn")
    # Faust's own INFO lines are chatty; our agent logs through structlog at log_level.
    worker = faust.Worker(app, loglevel="warn" if loglevel == "info" else loglevel, quiet=True,
                          override_logging=False, redirect_stdouts=False)
    worker.execute_from_commandline()
