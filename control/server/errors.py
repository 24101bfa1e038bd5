"""control-server: the errors the service layer raises; the servicer maps them to gRPC status codes."""

from __future__ import annotations


class InvalidArgument(ValueError):
    """The request is wrong; the message says what is wrong (INVALID_ARGUMENT)."""


class NotFound(LookupError):
    """What the request names does not exist, or not for this caller (NOT_FOUND)."""


class Unavailable(ConnectionError):
    """What the request needs does not answer (no archiver running, Kafka down): UNAVAILABLE."""
