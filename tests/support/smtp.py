"""Sending mail to the gateway as an internet MTA does: a proper HELO name and
opportunistic STARTTLS without certificate checks (the gateway's local certificate
is self-signed)."""

from __future__ import annotations

import aiosmtplib

CLIENT_HELO = "client.outside.test"


async def send_mail(port: int, data: bytes, sender: str, recipients: list[str], timeout: float = 30) -> str:
    """Returns the reply text of DATA ("2.0.0 Ok: queued as <id>"); raises aiosmtplib errors."""
    _, text = await aiosmtplib.send(data, sender=sender, recipients=recipients, hostname="127.0.0.1", port=port,
                                    timeout=timeout, local_hostname=CLIENT_HELO, validate_certs=False)
    return text
