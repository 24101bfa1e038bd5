"""message-validation: is virus scanning on? Decided once at start, and said loudly.

``validation.virus_scan`` is ``auto`` by default: scanning is on when a clamd answers
PING with PONG and its VERSION (clamd refuses to start without signatures, so an
answering clamd has some) at the configured address or at Debian's socket; when
none answers, scanning is OFF and that is a warning every time: in `mailgate up`'s
table, in message-validation's log at each start, and on its /metrics
(``mailgate_virus_scanning{state="OFF",reason=...} 0``). ``true`` scans whatever
answers (a mail clamd cannot answer for is held, never passed as clean); ``false``
turns it off on purpose, still with the warning.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from prometheus_client import Gauge

from core.logging import get_logger
from streams.validation.clamd import ClamdClient, ClamdError
from streams.validation.settings import ClamdSettings, Settings, ValidationFilterSettings

log = get_logger("message-validation")

DEBIAN_SOCKET = "unix:/var/run/clamav/clamd.ctl"
PROBE_TIMEOUT_S = 3.0

SCANNING = Gauge("mailgate_virus_scanning", "1 while message-validation scans mail with clamd; 0: virus scanning "
                 "OFF (the reason says why)", ["state", "reason"])


@dataclass(frozen=True)
class ScanState:
    on: bool
    address: str  # the clamd to scan with (when on), or the one that was looked for
    why: str

    @property
    def headline(self) -> str:
        return f"virus scanning {'ON' if self.on else 'OFF'}: {self.why}"


def decide(setting: Literal["auto"] | bool, answers: dict[str, str | None], configured: str) -> ScanState:
    """Pure: the state from the setting and what each candidate clamd answered (its version,
    or None when it gave no answer), in the order they were asked."""
    if setting is False:
        return ScanState(False, configured, "validation.virus_scan is false (MAILGATE_VALIDATION__VIRUS_SCAN); "
                                            "set it to auto or true to scan")
    if setting is True:
        version = answers.get(configured)
        state = f"{version}" if version else "no answer now: mail is held until clamd answers"
        return ScanState(True, configured, f"clamd at {configured} ({state})")
    for address, version in answers.items():
        if version:
            return ScanState(True, address, f"clamd at {address} answered ({version})")
    asked = " or ".join(answers) or configured
    return ScanState(False, configured, f"no clamd answers at {asked}: mail passes unscanned. Install and start "
                                        "clamav-daemon, or set MAILGATE_VALIDATION__CLAMD__ADDRESS, then restart "
                                        "message-validation")


def candidates(settings: ClamdSettings) -> list[str]:
    configured = settings.address
    return [configured] if configured in (DEBIAN_SOCKET, "unix:/run/clamav/clamd.ctl") \
        else [configured, DEBIAN_SOCKET]


async def _version(address: str, timeout: float) -> str | None:
    try:
        client = ClamdClient(address, connect_timeout_s=timeout)
        await client.ping()
        return await client.version()
    except (ClamdError, ValueError):
        return None


def probe(settings: ValidationFilterSettings, timeout: float = PROBE_TIMEOUT_S) -> ScanState:
    """Asks the candidate clamds (not when scanning is off on purpose) and decides."""
    configured = settings.clamd.address
    if settings.virus_scan is False:
        return decide(False, {}, configured)
    asked = [configured] if settings.virus_scan is True else candidates(settings.clamd)

    async def ask() -> dict[str, str | None]:
        return {address: await _version(address, timeout) for address in asked}

    return decide(settings.virus_scan, asyncio.run(ask()), configured)


def announce(state: ScanState) -> None:
    """message-validation's start: the log line and the metric, OFF as a warning."""
    SCANNING.clear()
    SCANNING.labels(state="ON" if state.on else "OFF", reason=state.why).set(1 if state.on else 0)
    if state.on:
        log.info("virus scanning ON", clamd=state.address, why=state.why)
    else:
        log.warning("virus scanning OFF", why=state.why)


def startup_note(settings: Settings) -> tuple[str, bool, str]:
    """`mailgate up`'s row for this service (control/engine/services.py names it as a string)."""
    state = probe(settings.validation)
    return "virus scanning", state.on, state.why
