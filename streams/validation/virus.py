"""message-validation: the virus verdict on one mail, from clamd.

    verdict = await scan_message(raw, client)                  # raises ClamdError: retry, then hold
    verdict = await scan_with_retry(raw, client, settings.clamd)  # raises the last ClamdError after N attempts
    verdict = await scan_with_retry(raw, client, settings.clamd, batch=ScanBatch(settings.clamd))  # per batch
    verdict.kind in ("clean", "infected", "unscannable")

clamd gets the whole raw mail (it decodes MIME and archives itself) and, apart, every
part that our own walk had to decode (base64/quoted-printable/uuencoded parts,
attached mails sent encoded, archive members, and what the other readings of a
malformed mail gave: mime.py, readings.py): a mail reader and clamd may take a
malformed mail apart differently, and what our walk extracted is what the attachment
policy judged. Each stream is bounded by ``max_stream_bytes`` and ``scan_timeout_s``. Parts found verbatim in the raw mail are not sent twice.

The verdict is *clean* only when clamd answered OK for every stream and the walk saw
all of the mail. A mail that could not be taken apart, hit a walk limit (a zip
bomb), holds an encrypted entry clamd cannot read, or is over the scan cap is
*unscannable* (quarantine, with the reason). When clamd does not answer, times out
or errs, a ClamdError is raised: the caller retries with backoff and then holds the
mail; it never passes it. The mails of one batch share their retries (``ScanBatch``):
a clamd that is down costs a batch one backoff, not one per mail.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from streams.validation.clamd import ClamdClient, ClamdError, ClamdScanError, ClamdTimeout, ClamdTooLarge, ScanResult
from streams.validation.mime import MimeWalk, Part, walk_message
from streams.validation.settings import ClamdSettings, MimeLimits

#: clamd "detections" that say it could not look, not that it found malware
#: (AlertExceedsMax, AlertEncrypted*): the mail is unscannable, not infected.
NOT_SCANNED_PREFIXES = ("Heuristics.Limits.Exceeded", "Heuristics.Encrypted")
#: Mails larger than this are walked on a worker thread, so the event loop keeps serving.
THREAD_WALK_BYTES = 256 * 1024

Kind = Literal["clean", "infected", "unscannable"]


@dataclass(frozen=True)
class VirusVerdict:
    kind: Kind
    names: tuple[str, ...] = ()  # signature names (infected)
    reason: str = ""             # human-readable: where the names were found, or why not scannable
    streams: int = 0             # INSTREAMs clamd answered for this mail

    @property
    def clean(self) -> bool:
        return self.kind == "clean"


def scan_targets(walk: MimeWalk) -> list[Part]:
    """The parts clamd must see apart from the raw mail: decoded, readable, non-empty,
    each content once."""
    seen: set[bytes] = set()
    targets: list[Part] = []
    for part in walk.parts:
        if part.verbatim or part.encrypted or not part.data:
            continue
        digest = hashlib.blake2b(part.data, digest_size=16).digest()
        if digest not in seen:
            seen.add(digest)
            targets.append(part)
    return targets


async def scan_message(raw: bytes, client: ClamdClient, *, walk: MimeWalk | None = None,
                       limits: MimeLimits | None = None) -> VirusVerdict:
    """clamd's verdict on the raw mail and on each decoded part (see the module doc).
    Raises ClamdError (ClamdUnavailable, ClamdTimeout, ClamdScanError) when clamd
    gives no verdict; a mail too large to scan is unscannable, not an error."""
    if len(raw) > client.max_stream_bytes:
        return VirusVerdict("unscannable", reason=f"mail of {len(raw)} bytes is over the scan cap of "
                                                  f"{client.max_stream_bytes} bytes")
    if walk is None:
        walk = (await asyncio.to_thread(walk_message, raw, limits) if len(raw) > THREAD_WALK_BYTES
                else walk_message(raw, limits))
    targets = scan_targets(walk)
    gate = asyncio.Semaphore(client.concurrency)

    async def scan(label: str, data: bytes) -> tuple[str, ScanResult | str]:
        async with gate:
            try:
                return label, await client.instream(data)
            except ClamdTooLarge as exc:
                return label, f"{label} not scanned: {exc}"

    try:
        async with asyncio.TaskGroup() as group:  # the first ClamdError cancels the other scans
            tasks = [group.create_task(scan("the mail", raw))]
            tasks += [group.create_task(scan(f"part {p.locator}", p.data)) for p in targets]
    except BaseExceptionGroup as group_error:
        first = group_error.exceptions[0]
        if isinstance(first, ClamdError):
            raise first from None
        raise
    return _verdict(walk, [t.result() for t in tasks])


def _verdict(walk: MimeWalk, results: list[tuple[str, ScanResult | str]]) -> VirusVerdict:
    names: list[str] = []
    where: list[str] = []
    not_scanned: list[str] = []
    for label, result in results:
        if isinstance(result, str):
            not_scanned.append(result)
            continue
        for name in result.found:
            if name.startswith(NOT_SCANNED_PREFIXES):
                not_scanned.append(f"clamd could not scan {label}: {name}")
            else:
                where.append(f"{name} in {label}")
                if name not in names:
                    names.append(name)
    streams = sum(1 for _, r in results if not isinstance(r, str))
    if names:
        return VirusVerdict("infected", tuple(names), "; ".join(where), streams)
    if walk.unparseable:
        not_scanned.insert(0, f"unparseable: {walk.unparseable}")
    if walk.incomplete:
        not_scanned.insert(0, f"not fully inspected: {walk.incomplete}")
    not_scanned += [f"encrypted entry {p.locator} cannot be scanned" for p in walk.parts if p.encrypted]
    if not_scanned:
        return VirusVerdict("unscannable", (), "; ".join(not_scanned), streams)
    return VirusVerdict("clean", (), f"clamd: OK for {streams} stream(s)", streams)


class ScanBatch:
    """clamd as one batch of mail.scored sees it. The retries of all its mails share one time
    budget (``batch_retry_s``, counted from the batch's first failure), and once clamd gave no
    answer for a mail after its retries (down, or frozen), the other mails of the batch are not
    tried: they are held at once. A mail clamd answered ERROR for (ClamdScanError: clamd is up)
    is held alone. So a batch waits on clamd at most about scan_timeout_s + batch_retry_s,
    whatever its size, and the next batch tries clamd again."""

    def __init__(self, settings: ClamdSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget_s, self.clock = settings.batch_retry_s, clock
        self.deadline: float | None = None  # set by the first failure of the batch
        self.down: ClamdError | None = None  # what clamd did to the mail that gave up

    def left(self) -> float:
        """The retry time the batch has left; its clock starts at the batch's first failure."""
        if self.deadline is None:
            self.deadline = self.clock() + self.budget_s
        return self.deadline - self.clock()

    def give_up(self, exc: ClamdError) -> None:
        if self.down is None and not isinstance(exc, ClamdScanError):
            self.down = exc

    def check(self) -> None:
        """Raises at once (the class of clamd's failure) when clamd is down for this batch."""
        if self.down is not None:
            raise type(self.down)(f"not tried: clamd gave no answer for an earlier mail of this batch ({self.down})")

    async def retry(self, scan: Awaitable[VirusVerdict]) -> VirusVerdict:
        """A repeated scan, within what is left of the batch's retry time."""
        left = self.left()
        try:
            async with asyncio.timeout(max(left, 0.0)):
                return await scan
        except TimeoutError as exc:
            raise ClamdTimeout(f"no verdict within the {self.budget_s:g}s a batch may spend retrying clamd") from exc


async def scan_with_retry(raw: bytes, client: ClamdClient, settings: ClamdSettings, *,
                          walk: MimeWalk | None = None, limits: MimeLimits | None = None,
                          sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                          on_retry: Callable[[int, ClamdError, float], None] | None = None,
                          batch: ScanBatch | None = None) -> VirusVerdict:
    """scan_message, tried up to ``settings.attempts`` times with exponential backoff
    (``retry_initial_s`` doubling up to ``retry_max_s``) while the batch's retry time lasts;
    then the last ClamdError is raised, and the caller puts the mail on hold. Alone (no
    ``batch``), the mail is a batch of its own."""
    if walk is None and len(raw) <= client.max_stream_bytes:
        walk = walk_message(raw, limits)
    batch = batch or ScanBatch(settings)
    delay = settings.retry_initial_s
    for attempt in range(1, settings.attempts + 1):
        batch.check()
        scan = scan_message(raw, client, walk=walk, limits=limits)
        try:
            return await (scan if attempt == 1 else batch.retry(scan))
        except ClamdError as exc:
            if attempt == settings.attempts or batch.left() < delay or batch.down is not None:
                batch.give_up(exc)
                raise
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            await sleep(delay)
            delay = min(delay * 2, settings.retry_max_s)
    raise AssertionError("unreachable")  # pragma: no cover
