"""For test_journal_kill: `mailgate service smtp-client` that kills itself (SIGKILL) at the
worst moment for one recipient: its mark is in the local journal, not yet produced to
the delivery log topic. The recipient is named by CRASH_AFTER_JOURNAL_OF.

    python -m tests.integration.smtp_client.crash_after_journal
"""

from __future__ import annotations

import os
import signal
import sys

from control.cli import main
from egress.smtp_client.deliverylog import DeliveryLog
from egress.smtp_client.journal import Entry

TARGET = os.environ["CRASH_AFTER_JOURNAL_OF"]
publish = DeliveryLog.publish


async def killed_before_producing(self: DeliveryLog, entry: Entry) -> None:
    if TARGET in entry.recipients:
        os.kill(os.getpid(), signal.SIGKILL)
    await publish(self, entry)


if __name__ == "__main__":
    DeliveryLog.publish = killed_before_producing  # type: ignore[method-assign]
    sys.argv = ["mailgate", "service", "smtp-client"]
    main()
