"""Structured logs (structlog): one key=value line per event, the mail id on every
line that concerns a mail (bind it with ``log.bind(mail_id=...)``)."""

from __future__ import annotations

import logging
import sys
from typing import cast

import structlog


def setup_logging(level: str = "info", fmt: str = "console", service: str | None = None) -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.processors.LogfmtRenderer(key_order=["timestamp", "level", "service", "event", "mail_id"],
                                                   drop_missing=True)
    )
    def add_service(_: object, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
        if service:  # a process-wide fact: threads without our contextvars get it too
            event.setdefault("service", service)
        return event

    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries that use stdlib logging (faust, aiokafka) go to stderr at WARNING.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return cast(structlog.stdlib.BoundLogger, structlog.get_logger(name))
