"""maildepot-connector: the SMTP journal endpoint and the import directory.

The ``[connector]`` section (``MAILGATE_CONNECTOR__JOURNAL_PORT``, ...); ``Settings`` is what the
service is given: the gateway's identity and this section.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from core.settings import GatewaySettings


class ConnectorSettings(BaseModel):
    journal_host: str = "127.0.0.1"
    journal_port: int | None = Field(
        default=None, ge=1, le=65535, description="SMTP journal endpoint (journaling/BCC from a mail server); unset: off.")
    import_dir: Path | None = Field(
        default=None, description="Drop mbox, Maildir and .eml here; unset: <home>/archive-import.")
    scan_interval_s: float = Field(default=5.0, gt=0, description="How often the import directory is looked at.")
    rule: str = Field(default="connector", description="The rule name the archive records for this mail.")
    retention_days: int | None = Field(default=None, ge=0, description="Unset: the store's default.")

    def import_path(self, home: Path) -> Path:
        return self.import_dir or home / "archive-import"


class Settings(GatewaySettings):
    """What maildepot-connector is given: the gateway's identity and its own section."""

    connector: ConnectorSettings = Field(default_factory=ConnectorSettings)
