"""maildepot-archiver: where the archive store lives and how long it keeps mail.

Composed in ``core.settings.Settings`` as ``maildepot`` (``MAILGATE_MAILDEPOT__DIRECTORY``, ...).
Only the archiver opens the store; the control server and ``mailgate archive`` ask it over
Kafka (``egress/maildepot/asked.py``), from any node.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class MaildepotSettings(BaseModel):
    directory: Path | None = Field(default=None, description="The archive store; unset: <home>/archive.")
    retention_days: int = Field(default=3650, ge=0, description="When a rule names none; 0: forever.")
    sweep_interval_s: float = Field(default=3600.0, gt=0, description="How often expired mail is removed.")
    batch: int = Field(default=200, ge=1, description="Records stored per transaction (and offset commit).")
    compression_level: int = Field(default=10, ge=1, le=22, description="zstd level of the stored mail.")

    def path(self, home: Path) -> Path:
        return self.directory or home / "archive"
