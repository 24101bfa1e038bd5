"""Sending mail to the gateway as an internet MTA does: a proper HELO name and
opportunistic STARTTLS without certificate checks (the gateway's local certificate
is self-signed)."""

from __future__ import annotations

import asyncio

import aiosmtplib

CLIENT_HELO = "client.outside.test"


async def send_mail(port: int, data: bytes, sender: str, recipients: list[str], timeout: float = 30) -> str:
    """Returns the reply text of DATA ("2.0.0 Ok: queued as <id>"); raises aiosmtplib errors."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=timeout, local_hostname=CLIENT_HELO,
                             validate_certs=False)
    async with client:
        _, text = await client.sendmail(sender, recipients, data)
        protocol = client.protocol
    await _closed(protocol)
    return text


async def _closed(protocol: asyncio.BaseProtocol | None, timeout: float = 2.0) -> None:
    """Waits for the connection to be gone. After QUIT, closing a TLS connection takes a few
    more loop turns (close_notify both ways); a caller's ``asyncio.run`` that ends first
    leaves the socket to the garbage collector, whose ResourceWarning fails a later test."""
    deadline = asyncio.get_running_loop().time() + timeout
    while getattr(protocol, "transport", None) is not None and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)
