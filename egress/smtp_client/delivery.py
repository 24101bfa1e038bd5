"""One delivery attempt to the next hop (aiosmtplib), turned into an outcome per
recipient: accepted, temporarily failed (try again) or permanently failed."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiosmtplib


@dataclass(frozen=True)
class Reply:
    code: int | None  # None: no SMTP reply (refused, timeout, dropped connection)
    text: str

    @property
    def permanent(self) -> bool:
        return self.code is not None and 500 <= self.code < 600


@dataclass
class Outcome:
    accepted: list[str] = field(default_factory=list)
    accepted_reply: Reply | None = None
    failed: dict[str, Reply] = field(default_factory=dict)

    @property
    def temporary(self) -> list[str]:
        return [r for r, reply in self.failed.items() if not reply.permanent]

    @property
    def permanent(self) -> list[str]:
        return [r for r, reply in self.failed.items() if reply.permanent]


@dataclass(frozen=True)
class NextHop:
    host: str
    port: int
    helo: str
    timeout_s: float
    starttls: bool | None = None  # None: when offered (opportunistic, like Postfix's "may")

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


def _all(recipients: list[str], reply: Reply) -> Outcome:
    return Outcome(failed={r: reply for r in recipients})


async def attempt(hop: NextHop, mail_from: str, recipients: list[str], data: bytes) -> Outcome:
    client = aiosmtplib.SMTP(hostname=hop.host, port=hop.port, local_hostname=hop.helo,
                             timeout=hop.timeout_s, start_tls=hop.starttls, validate_certs=False)
    try:
        await client.connect()
        refused, text = await client.sendmail(mail_from, recipients, data)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return Outcome(failed={e.recipient: Reply(e.code, e.message) for e in exc.recipients})
    except aiosmtplib.SMTPResponseException as exc:  # sender refused, DATA refused, 421, ...
        return _all(recipients, Reply(exc.code, exc.message))
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return _all(recipients, Reply(None, f"{type(exc).__name__}: {exc}"))
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()
    outcome = Outcome(failed={r: Reply(resp.code, resp.message) for r, resp in refused.items()})
    outcome.accepted = [r for r in recipients if r not in refused]
    outcome.accepted_reply = Reply(250, text)  # sendmail raises on any DATA reply but 2xx
    return outcome
