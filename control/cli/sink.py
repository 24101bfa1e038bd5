"""control/cli — `mailgate sink`: a small SMTP sink for trying the gateway out — it accepts
every mail, prints one line per mail, and can keep them in a Maildir."""

from __future__ import annotations

import asyncio
import mailbox
import signal
from collections.abc import Callable
from email.parser import BytesHeaderParser
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session


class SinkHandler:
    def __init__(self, say: Callable[[str], None], maildir: Path | None = None) -> None:
        self.say = say
        self.box = mailbox.Maildir(maildir, create=True) if maildir else None
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        headers = BytesHeaderParser().parsebytes(data)
        self.count += 1
        if self.box is not None:
            self.box.add(data)
        self.say(f"#{self.count} {headers.get('Message-ID', '(no Message-ID)')} from <{envelope.mail_from}> "
                 f"to {', '.join(envelope.rcpt_tos)} ({len(data)} bytes) subject: {headers.get('Subject', '')}")
        return "250 2.0.0 Ok: delivered to the sink"


async def run_sink(host: str, port: int, say: Callable[[str], None], maildir: Path | None = None) -> None:
    handler = SinkHandler(say, maildir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink", decode_data=False, enable_SMTPUTF8=True,
                     data_size_limit=None), host=host, port=port)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    say(f"SMTP sink listening on {host}:{port}" + (f", keeping mail in {maildir}" if maildir else ""))
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
