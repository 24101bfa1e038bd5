"""One POP3 account's collect cycle and schedule (pop3-proxy / pop3s-proxy).

A cycle: log in → UIDL+LIST → forget ledger entries of mails gone from the
server → DELE mails already collected (an earlier cycle died before QUIT) →
ledger ``pending`` (with its mail id) for every new mail → for each: RETR, then
in a task of its own: publish MailReceived → ledger ``collected`` → DELE → at
the end QUIT, which is when the server really deletes. Up to ``max_in_flight``
mails (and ``max_in_flight_bytes``) wait for Kafka at once while the next RETRs
run, so the broker's round trip does not set the pace.

Nothing is deleted for a mail whose publish failed; a failure stops the cycle
(the rest stays on the server for the next one) and backs the account off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from core.logging import get_logger
from core.metrics import MAILS
from ingress.pop3.client import Listed, Pop3CommandError, Pop3Error, Pop3Session, Pop3TooLarge
from ingress.pop3.events import mail_received
from ingress.pop3.settings import Pop3Account
from ingress.pop3.uidls import UidlEntry, UidlLedger, UidlStore

log = get_logger("pop3-proxy")


class Publisher(Protocol):
    """``core.publish.Publisher`` (on the service's producer), or a test's in-memory one."""

    async def publish(self, topic: Any, event: Any, *, event_type: str | None = None) -> Any:
        """Returns once the event is durable (Kafka acknowledged it); raises otherwise."""
        ...


StatusCallback = Callable[["AccountStatus"], Awaitable[None] | None]


class CollectError(Exception):
    """A cycle ended early; the message says why and what stays on the server."""


@dataclass(frozen=True)
class Plan:
    """What a cycle does with each listed mail."""

    fetch: list[Listed]
    delete_known: list[Listed]  # collected before, still on the server
    too_large: list[Listed]


def plan_cycle(listing: list[Listed], entries: dict[str, UidlEntry], *, delete: bool, max_size: int,
               too_large: Collection[str] = ()) -> Plan:
    fetch: list[Listed] = []
    known: list[Listed] = []
    big: list[Listed] = []
    for m in listing:
        entry = entries.get(m.uidl)
        if entry is not None and entry.state == "collected":
            if delete:
                known.append(m)
        elif m.size > max_size or m.uidl in too_large:
            big.append(m)
        else:
            fetch.append(m)
    return Plan(fetch, known, big)


@dataclass
class CycleReport:
    listed: int = 0
    collected: int = 0
    deleted: int = 0
    skipped_known: int = 0
    forgotten: int = 0
    too_large: list[str] = field(default_factory=list)  # "UIDL (N bytes)": left on the server
    refused: list[str] = field(default_factory=list)  # "UIDL (RETR n: -ERR ...)": the server would not send it
    seconds: float = 0.0


@dataclass
class AccountStatus:
    """What the control plane shows for one account."""

    account: str
    server: str
    state: str = "idle"  # idle | collecting | backoff | stopped
    last_attempt_ms: int | None = None
    last_success_ms: int | None = None
    last_error: str | None = None
    last_error_ms: int | None = None
    consecutive_failures: int = 0
    next_attempt_ms: int | None = None
    collected_total: int = 0
    deleted_total: int = 0
    last_cycle: CycleReport | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now_ms() -> int:
    return int(time.time() * 1000)


@contextmanager
def _ledger_errors(what: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        raise CollectError(f"the UIDL ledger {what} ({type(exc).__name__}: {exc})") from exc


class _Budget:
    """Mails fetched but not yet acknowledged: at most ``count`` and ``size`` bytes
    (one mail always fits, however large)."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size
        self.n = self.bytes = 0
        self._cond = asyncio.Condition()

    async def admit(self, size: int) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.n == 0 or (self.n < self.count and self.bytes + size <= self.size))
            self.n += 1
            self.bytes += size

    async def release(self, size: int) -> None:
        async with self._cond:
            self.n -= 1
            self.bytes -= size
            self._cond.notify_all()


class AccountCollector:
    """Collects one account: ``collect_once`` for one cycle, ``run`` on its schedule."""

    def __init__(self, account: Pop3Account, publisher: Publisher, store: UidlStore, node: str, *,
                 max_in_flight: int = 256, max_in_flight_bytes: int = 64 * 1024 * 1024,
                 backoff_max_s: float = 3600.0, sessions: asyncio.Semaphore | None = None,
                 mail_in: str = "mail.in", service: str = "pop3-proxy") -> None:
        self.account = account
        self.publisher, self.mail_in = publisher, mail_in
        self._published = MAILS.labels(service, "mail.in")  # /metrics: mailgate_mails_total
        self.ledger = UidlLedger(store, account.name)
        self.node = node
        self.max_in_flight = max_in_flight
        self.max_in_flight_bytes = max_in_flight_bytes
        self.backoff_max_s = backoff_max_s
        self.sessions = sessions or asyncio.Semaphore(1)
        self.status = AccountStatus(account.name, account.address)
        self.too_large: set[str] = set()  # UIDLs that outgrew the cap while being read
        self.log = log.bind(account=account.name)

    # -- one cycle -----------------------------------------------------------

    async def collect_once(self, stop: asyncio.Event | None = None) -> CycleReport:
        """One cycle. Raises Pop3Error (the server) or CollectError (publish, ledger)."""
        began = time.monotonic()
        report = CycleReport()
        acct = self.account
        with _ledger_errors("cannot be read"):
            await self.ledger.load()
        session = await Pop3Session.open(acct)
        try:
            listing = await session.listing()
            report.listed = len(listing)
            with _ledger_errors("is not writable"):
                report.forgotten = await self.ledger.prune({m.uidl for m in listing})
            self.too_large &= {m.uidl for m in listing}
            plan = plan_cycle(listing, self.ledger.entries, delete=acct.delete,
                              max_size=acct.max_message_size, too_large=self.too_large)
            report.skipped_known = len(listing) - len(plan.fetch) - len(plan.too_large)
            report.too_large = [f"{m.uidl} (sent more than {acct.max_message_size} bytes, LIST said {m.size})"
                                if m.uidl in self.too_large else f"{m.uidl} ({m.size} bytes)"
                                for m in plan.too_large]
            report.deleted += await self._dele_known(session, plan.delete_known)
            with _ledger_errors("is not writable"):
                await self.ledger.reserve(m.uidl for m in plan.fetch)
            failure = await self._fetch_all(session, plan.fetch, report, stop)
            if failure is not None:
                await session.quit()  # still commit the deletions of what did get through
                raise CollectError(f"{failure}; {report.collected} mail(s) collected before that, the rest stay"
                                   " on the server for the next cycle") from failure
            await session.quit()
        finally:
            await session.close()
            report.seconds = time.monotonic() - began
        return report

    @staticmethod
    async def _dele_known(session: Pop3Session, known: list[Listed]) -> int:
        """DELE mails collected before (a cycle that died before QUIT); pipelined."""
        results = await asyncio.gather(*(session.dele(m.number) for m in known), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, Pop3CommandError):
                raise r  # the session broke; -ERR for one mail only leaves that mail for the next cycle
        return sum(r is None for r in results)

    async def _fetch_all(self, session: Pop3Session, todo: list[Listed], report: CycleReport,
                         stop: asyncio.Event | None) -> Exception | None:
        """RETR one by one; publish, commit and DELE each in its own task. Returns
        the first publish/ledger failure; raises what breaks the session."""
        budget = _Budget(self.max_in_flight, self.max_in_flight_bytes)
        tasks: set[asyncio.Task[None]] = set()
        failures: list[Exception] = []

        async def finish(m: Listed, raw: bytes) -> None:
            try:
                await self._deliver(session, m, raw, report)
            except Pop3Error:
                pass  # the DELE did not reach the server: the next cycle repeats it
            except Exception as exc:
                failures.append(exc)
            finally:
                await budget.release(len(raw))

        cap = self.account.max_message_size

        def go_on() -> bool:
            return not failures and not (stop is not None and stop.is_set())

        try:
            async with aclosing(session.retrieve(todo, cap, go_on)) as mails:
                async for m, raw in mails:
                    if not go_on():
                        break  # RETRs still out are read and dropped; the mails stay on the server
                    if isinstance(raw, Pop3CommandError):
                        report.refused.append(f"{m.uidl} ({raw})")
                        continue
                    if len(raw) > cap:
                        self.too_large.add(m.uidl)
                        report.too_large.append(f"{m.uidl} ({len(raw)} bytes)")
                        continue
                    await budget.admit(len(raw))
                    task = asyncio.create_task(finish(m, raw))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        except Pop3TooLarge as exc:
            if exc.listed is not None:
                self.too_large.add(exc.listed.uidl)
                report.too_large.append(f"{exc.listed.uidl} (LIST said {exc.listed.size} bytes, sent more)")
            raise
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        return failures[0] if failures else None

    async def _deliver(self, session: Pop3Session, m: Listed, raw: bytes, report: CycleReport) -> None:
        """publish → collected → DELE; a failure before DELE raises CollectError."""
        mail_id = self.ledger.entries[m.uidl].mail_id  # reserved (pending) at the start of the cycle
        event = mail_received(raw, self.account, self.node, mail_id, session.tls)
        try:
            await self.publisher.publish(self.mail_in, event, event_type="MailReceived")
        except Exception as exc:
            raise CollectError(f"MailReceived not published ({type(exc).__name__}: {exc})") from exc
        self._published.inc()
        try:
            await self.ledger.commit(m.uidl, mail_id)
        except Exception as exc:
            raise CollectError(f"the UIDL ledger is not writable ({type(exc).__name__}: {exc}); mail {mail_id}"
                               " was published and will be published once more under the same id") from exc
        report.collected += 1
        self.log.debug("collected", mail_id=mail_id, uidl=m.uidl, size=len(raw), mail_from=event["mail_from"])
        if self.account.delete:
            await session.dele(m.number)
            report.deleted += 1

    # -- the schedule --------------------------------------------------------

    async def cycle(self, stop: asyncio.Event | None = None) -> CycleReport | None:
        """One cycle with status bookkeeping; never raises (except cancellation)."""
        st = self.status
        st.state, st.last_attempt_ms = "collecting", _now_ms()
        try:
            async with self.sessions:
                report = await self.collect_once(stop)
        except (Pop3Error, CollectError) as exc:
            self._failed(str(exc))
            return None
        except Exception as exc:  # a bug or an unforeseen error: report it, keep the service up
            self.log.exception("collect cycle crashed")
            self._failed(f"{type(exc).__name__}: {exc}")
            return None
        st.last_success_ms = _now_ms()
        st.consecutive_failures = 0
        st.collected_total += report.collected
        st.deleted_total += report.deleted
        st.last_cycle = report
        st.state = "idle"
        problems = []
        if report.too_large:
            problems.append(f"{len(report.too_large)} mail(s) over max_message_size"
                            f" ({self.account.max_message_size} bytes) left on the server: "
                            + ", ".join(report.too_large[:5]))
        if report.refused:
            problems.append(f"{len(report.refused)} mail(s) the server refused to send, left for the next cycle: "
                            + ", ".join(report.refused[:5]))
        if problems:
            st.last_error, st.last_error_ms = "; ".join(problems), st.last_success_ms
            self.log.warning("mails left on the server", error=st.last_error)
        self.log.info("cycle done", listed=report.listed, collected=report.collected, deleted=report.deleted,
                      skipped=report.skipped_known, seconds=round(report.seconds, 3))
        return report

    def _failed(self, error: str) -> None:
        st = self.status
        st.state = "backoff"
        st.last_error, st.last_error_ms = error, _now_ms()
        st.consecutive_failures += 1
        self.log.warning("collect failed", error=error, failures=st.consecutive_failures)

    def next_delay(self) -> float:
        """interval_s after a success and after a first failure, then doubling up to backoff_max_s."""
        interval = self.account.interval_s
        n = self.status.consecutive_failures
        if n <= 1:
            return interval
        return float(min(interval * 2 ** (n - 1), max(self.backoff_max_s, interval)))

    async def run(self, stop: asyncio.Event, on_status: StatusCallback | None = None) -> None:
        """Collect at intervals until ``stop`` is set; ``on_status`` after every cycle."""
        try:
            while not stop.is_set():
                await self.cycle(stop)
                delay = self.next_delay()
                self.status.next_attempt_ms = _now_ms() + int(delay * 1000)
                await self._report(on_status)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
        finally:
            self.status.state = "stopped"
            self.status.next_attempt_ms = None
        await self._report(on_status)

    async def _report(self, on_status: StatusCallback | None) -> None:
        if on_status is None:
            return
        try:
            result = on_status(self.status)
            if result is not None:
                await result
        except Exception:
            self.log.exception("status callback failed")
