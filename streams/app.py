"""Builds the Faust App for one stream stage from settings, and nothing else.

Run a stage with `mailgate service message-validation` (control/cli/node.py), which
calls ``build_app`` and starts a worker with the stage's agents.
"""

from __future__ import annotations

import faust

from core.kafka import faust_broker_url
from core.settings import Settings
from schemas.topics import TopicNames


def build_app(settings: Settings, stage: str) -> faust.App:
    names = TopicNames(settings.kafka.topic_prefix)
    data_dir = settings.home / "streams" / names.group(stage)
    data_dir.parent.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    return faust.App(
        names.group(stage),  # the consumer group, and the prefix of Faust's internal topics
        broker=faust_broker_url(settings),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        topic_allow_declare=False,  # topics are made by `mailgate topics create`
        topic_disable_leader=True,
        store="memory://",
        web_enabled=False,
        producer_acks=-1,
        producer_max_request_size=int(settings.smtp_server.max_message_size * 1.05) + 65536,
        consumer_max_fetch_size=int(settings.smtp_server.max_message_size * 1.05) + 65536,
        broker_commit_every=100,
        stream_wait_empty=False,  # a paused agent (core.control_channel.FaustGate) must not stall a rebalance
        broker_commit_interval=1.0,
        # The group's session timeout, from kafka.extra as for the other consumers: how soon a killed
        # worker's partitions go to the others (and to its own restart). Faust's default: 60 s.
        broker_session_timeout=int(settings.kafka.extra.get("session.timeout.ms", "60000")) / 1000,
        broker_heartbeat_interval=min(3.0, int(settings.kafka.extra.get("session.timeout.ms", "60000")) / 3000),
        datadir=str(data_dir),
        autodiscover=False,
    )


FAUST_LOGLEVEL = {"debug": "debug", "info": "warn", "warning": "warn", "warn": "warn", "error": "error"}


def run_worker(app: faust.App, settings: Settings) -> None:
    """Runs a stage's worker until SIGINT/SIGTERM (Faust's worker installs the handlers).
    Faust's own INFO lines are chatty; our agents log through structlog at log_level."""
    worker = faust.Worker(app, loglevel=FAUST_LOGLEVEL.get(settings.log_level.lower(), "warn"), quiet=True,
                          override_logging=False, redirect_stdouts=False)
    worker.execute_from_commandline()
