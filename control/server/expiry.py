"""control-server: nothing leaves a quarantine silently — an EXPIRE event before retention.

Retention (control/topic_retention.py) removes a quarantine topic's old records; before
it does, this sweeper puts a ``QueueAction`` with action ``EXPIRE`` on the mail's queue
(key: its mail id, actor ``system:retention``, the recipients it was still held for, and
when the broker will remove it), the same way a release or delete is recorded. Every
reader of the queue sees the mail leave (the quarantine view drops it), so it is
announced once; the time of the announcement is ``retention.expiry_notice_s`` (shorter
than every queue's retention) before the record's retention runs out.

It runs in control-server, over the quarantine view that control-server keeps anyway.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from control.server.auth import Principal
from control.server.quarantine_view import QUEUES, Held, is_held
from control.server.queues import QueueBrowser
from core.control_channel import now_ms
from core.logging import get_logger
from control.settings import Settings

log = get_logger("control-server")
RETENTION = Principal("system", "retention")


def expires_ms(mail: Held, settings: Settings) -> int:
    """When the broker may remove the mail's record (its event time plus the queue's retention)."""
    return int(mail.record["event_time"]) + settings.retention.ms_for(QUEUES[mail.queue])


def due(mail: Held, settings: Settings, now: int) -> bool:
    return is_held(mail) and now >= expires_ms(mail, settings) - settings.retention.expiry_notice_s * 1000


class QuarantineSweeper:
    def __init__(self, settings: Settings, browser: QueueBrowser) -> None:
        self.settings, self.browser = settings, browser
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quarantine-sweeper", daemon=True)

    def start(self) -> QuarantineSweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.retention.sweep_interval_s):
            try:
                self.sweep()
            except Exception as exc:  # the broker away: the next sweep tries again, well before removal
                log.warning("quarantine sweep failed", error=str(exc))

    def sweep(self) -> int:
        """Announces every held mail that is due; returns how many."""
        self.browser.view.sync()
        now = now_ms()
        announced = 0
        for mail in self.browser.view.mails(QUEUES):
            if not due(mail, self.settings, now):
                continue
            when = datetime.fromtimestamp(expires_ms(mail, self.settings) / 1000, UTC).isoformat(timespec="seconds")
            reason = (f"retention of {QUEUES[mail.queue]} ({self.settings.retention.days_for(QUEUES[mail.queue]):g} "
                      f"days) ends at {when}; the broker removes the mail then")
            self.browser.expire(RETENTION, mail, reason)
            log.warning("quarantined mail expires", mail_id=mail.mail_id, queue=mail.queue, recipients=mail.remaining,
                        removed_after=when)
            announced += 1
        return announced
