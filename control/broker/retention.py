"""`mailgate topics create`: how long each queue topic keeps its mail, set on purpose.

A broker's default (7 days on ours) would empty a quarantine without a record. Every
queue topic (not the compacted state topics, which keep the latest record per key)
gets ``retention.ms`` from these settings when it is created, and again at every
``mailgate topics create`` / ``mailgate up`` for a topic that exists, so a change of
setting reaches the broker.

    MAILGATE_RETENTION__SPAM_DAYS=60     # mail.spam keeps its records 60 days
"""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

DAY_MS = 86_400_000
CISS_HOLD_DAYS = 14.0  # how long CISS waits for a sender's confirmation (DESIGN: ciss)


class QueueRetentionSettings(BaseModel):
    """Retention of the queue topics, in days (each per queue; the rest take ``default_days``)."""

    default_days: float = Field(default=30.0, gt=0, description="Every queue topic not named below.")
    spam_days: float = Field(default=30.0, gt=0, description="mail.spam, the spam quarantine.")
    virus_days: float = Field(default=30.0, gt=0, description="mail.virus, the virus quarantine.")
    quarantine_days: float = Field(default=30.0, gt=0, description="mail.quarantine: unparseable or held mail.")
    ciss_days: float = Field(
        default=30.0, gt=CISS_HOLD_DAYS,
        description=f"mail.ciss: longer than CISS's hold time ({CISS_HOLD_DAYS:g} days), or a mail waiting for "
                    "its sender's confirmation could vanish before it is released or expired.",
    )

    expiry_notice_s: float = Field(
        default=86400.0, gt=0, description="How long before retention removes a quarantined mail its EXPIRE "
                                           "event is written (shorter than every queue's retention).")
    sweep_interval_s: float = Field(default=60.0, gt=0, description="How often control-server looks for them.")

    @model_validator(mode="after")
    def _whole_ms(self) -> QueueRetentionSettings:
        for name in ("default_days", "spam_days", "virus_days", "quarantine_days", "ciss_days"):
            if getattr(self, name) * DAY_MS < 60_000:
                raise ValueError(f"retention.{name} is under a minute (MAILGATE_RETENTION__{name.upper()}): "
                                 "give days, e.g. 30")
            if self.expiry_notice_s * 1000 >= getattr(self, name) * DAY_MS:
                raise ValueError(f"retention.expiry_notice_s ({self.expiry_notice_s:g} s, "
                                 f"MAILGATE_RETENTION__EXPIRY_NOTICE_S) must be shorter than retention.{name}: "
                                 "the notice has to come before the mail is removed")
        return self

    def days_for(self, topic: str) -> float:
        """Days for a topic of the map (its name without the prefix)."""
        return {"mail.spam": self.spam_days, "mail.virus": self.virus_days, "mail.quarantine": self.quarantine_days,
                "mail.ciss": self.ciss_days}.get(topic, self.default_days)

    def ms_for(self, topic: str) -> int:
        return int(self.days_for(topic) * DAY_MS)
