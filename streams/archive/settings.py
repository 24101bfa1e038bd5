"""message-archive: whether the gateway archives, and the archive rules.

The ``[archive]`` section; ``Settings`` is what message-archive is given (the gateway's
identity and this section). In the TOML file::

    [archive]
    enabled = true

    [[archive.rules]]              # the first rule that matches a mail decides
    name = "legal"
    domains = ["example.com"]
    directions = ["inbound", "outbound"]
    exclude = ["spam", "virus"]
    retention_days = 3650

Environment: ``MAILGATE_ARCHIVE__ENABLED=true``, ``MAILGATE_ARCHIVE__RULES='[{"name": ...}]'`` (JSON).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from core.settings import GatewaySettings

Direction = Literal["inbound", "outbound", "internal", "external"]
Verdict = Literal["out", "spam", "virus", "quarantine", "ciss"]


def _split(v: Any) -> Any:
    if isinstance(v, str):
        return [x.strip().lower() for x in v.split(",") if x.strip()]
    return v


class ArchiveRule(BaseModel):
    """One archive rule: which mail it takes, and how long the archive keeps it."""

    name: str = Field(min_length=1)
    domains: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Mail from or to these domains; empty: every domain.")
    directions: Annotated[list[Direction], NoDecode] = Field(
        default_factory=lambda: ["inbound", "outbound", "internal", "external"],
        description="inbound (to our domains), outbound (from ours to others), internal, external.")
    exclude: Annotated[list[Verdict], NoDecode] = Field(
        default_factory=lambda: ["spam", "virus"], description="Mail that validation put on these queues.")
    retention_days: int | None = Field(default=None, ge=0, description="0: forever; unset: the store's default.")
    archive: bool = Field(default=True, description="False: a matching mail is not archived (an exception rule).")

    @field_validator("domains", "directions", "exclude", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _split(v)


class ArchiveSettings(BaseModel):
    """Archiving on or off (message-validation sends its copies to mail.archive), and the rules."""

    enabled: bool = Field(default=False, description="message-validation copies every mail to mail.archive.")
    rules: list[ArchiveRule] = Field(default_factory=lambda: [ArchiveRule(name="all")],
                                     description="The first matching rule decides; no match: not archived.")


class Settings(GatewaySettings):
    """What message-archive is given: the gateway's identity and its own section."""

    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
