"""control-server: the quarantine read model — a materialised view of the quarantine topics.

mail.spam, mail.virus, mail.ciss and mail.quarantine are the source of truth: their
MailRouted records put a mail in a queue, the QueueAction records after them (RELEASE,
DELETE) take recipients out, a tombstone takes the whole mail out. This view folds
them, in a thread of its own that follows every partition from its start (no consumer
group: each control-server holds the whole view), into the current state: per queue,
mail id → ``Held`` (recipients still held, sender, subject, reasons, time, size) and an
index by recipient address, so a user's listing touches only that user's mail.

It lives in control/ because it is the control plane's read side (the map: control-server
reads the topics; stages never import each other). Bodies are not kept: a ``Held`` knows
where its record is (topic, partition, offset) and ``raw()`` fetches that one record.

Reads are consistent with the topics at the time of the call: ``sync()`` waits until the
view has applied everything up to the partitions' ends as they were then (bounded; a
topic with an open transaction of a killed message-validation is served as it stood).
"""

from __future__ import annotations

import email.parser
import email.policy
import heapq
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from core.kafka import make_consumer
from core.logging import get_logger
from core.settings import Settings
from schemas import DecodeError, default_codec, unpack_message
from schemas import topics as t
from schemas.topics import TopicNames

log = get_logger("control-server")
QUEUES = {"spam": t.MAIL_SPAM, "virus": t.MAIL_VIRUS, "ciss": t.MAIL_CISS, "quarantine": t.MAIL_QUARANTINE}
Where = tuple[str, int, int]  # topic, partition, offset of the MailRouted record


def subject_of(raw: bytes) -> str:
    head = raw[:65536].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    msg = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(head)
    try:
        return str(msg.get("subject", ""))
    except (ValueError, TypeError, IndexError):  # a malformed encoded word: show it raw
        return str((msg.get_all("subject") or [""])[0])


@dataclass
class Held:
    """One quarantined mail and the recipients it is still held for."""

    queue: str
    record: dict[str, Any]  # the MailRouted record (in the view: without its message)
    remaining: list[str] = field(default_factory=list)
    where: Where | None = None
    fetch: Callable[[Where], bytes] | None = None
    _subject: str | None = None

    @property
    def mail_id(self) -> str:
        return str(self.record["mail_id"])

    def for_whom(self, principal: Any) -> list[str]:
        """The recipients this caller may see and act for (empty: none)."""
        if principal.is_admin:
            return list(self.remaining)
        return [r for r in self.remaining if r.lower() == principal.name]

    def visible_to(self, principal: Any) -> bool:
        return principal.is_admin or bool(self.for_whom(principal))

    def subject(self) -> str:
        if self._subject is None:
            self._subject = subject_of(self.raw())
        return self._subject

    def raw(self) -> bytes:
        if "message" in self.record:
            return unpack_message(self.record["message"])
        if self.fetch is None or self.where is None:
            raise LookupError(f"mail {self.mail_id}: its message is not at hand")
        return self.fetch(self.where)

    def summary(self) -> Held:
        """This entry as the view keeps it: the subject read once, the body left on the topic."""
        try:
            self._subject = subject_of(self.raw())
        except Exception:  # an unreadable body: the listing shows no subject, show gives the bytes
            self._subject = ""
        self.record = {k: v for k, v in self.record.items() if k != "message"}
        return self


def apply_record(queue: str, held: dict[str, Held], key: bytes | None, value: bytes | None) -> Held | None:
    """Folds one record of a quarantine topic into ``held`` (mail_id → Held); returns a new entry."""
    if value is None:
        if key is not None:
            held.pop(key.decode(errors="replace"), None)
        return None
    try:
        event = default_codec().decode(value)
    except DecodeError:
        return None  # not ours to show; message-validation quarantines what it cannot read
    record = event.record
    if event.type == "MailRouted":
        held[record["mail_id"]] = entry = _merged(held.get(record["mail_id"]), Held(queue, record,
                                                                                  list(record["rcpt_to"])))
        return entry
    if event.type == "QueueAction" and record["action"] in ("RELEASE", "DELETE"):
        mail = held.get(record["mail_id"])
        if mail is None:
            return None
        if not record["recipients"] or not mail.record["rcpt_to"]:
            held.pop(record["mail_id"])
        else:
            gone = {r.lower() for r in record["recipients"]}
            mail.remaining = [r for r in mail.remaining if r.lower() not in gone]
    return None


def _merged(before: Held | None, new: Held) -> Held:
    """A second routing record of the same mail into the same queue (another recipient group, or
    the copy a release sent back to be scanned and that was held again) adds its recipients: it
    does not replace the recipients still held by the first."""
    if before is None:
        return new
    seen = {r.lower() for r in before.remaining}
    new.remaining = before.remaining + [r for r in new.remaining if r.lower() not in seen]
    known = {r.lower() for r in before.record["rcpt_to"]}
    new.record = {**new.record,
                  "rcpt_to": list(before.record["rcpt_to"]) + [r for r in new.record["rcpt_to"]
                                                             if r.lower() not in known],
                  "reasons": list(dict.fromkeys([*before.record["reasons"], *new.record["reasons"]]))}
    return new


def is_held(h: Held) -> bool:
    return bool(h.remaining) or not h.record["rcpt_to"]


class QuarantineView:
    """The followed view of the quarantine queues of one gateway (one topic prefix)."""

    def __init__(self, settings: Settings) -> None:
        names = TopicNames(settings.kafka.topic_prefix)
        self.topics = {names(topic): queue for queue, topic in QUEUES.items()}
        self._held: dict[str, dict[str, Held]] = {queue: {} for queue in QUEUES}
        self._by_rcpt: dict[str, set[tuple[str, str]]] = {}
        self._seen: dict[tuple[str, int], int] = {}  # (topic, partition) → next offset applied
        self._lock = threading.Lock()
        self._applied = threading.Condition(self._lock)
        self._stop = threading.Event()
        self.error: Exception | None = None
        group = names.group("control-queues")
        self._consumer = make_consumer(settings, group, "quarantine-view", **{"enable.partition.eof": True})
        self._meta = make_consumer(settings, group, "quarantine-view-meta")  # watermarks while poll() runs
        self._fetcher = make_consumer(settings, group, "quarantine-fetch")
        self._fetch_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="quarantine-view", daemon=True)
        self._started = False
        self._parts: list[tuple[str, int]] = []
        self._caught_up = False

    # -- following -----------------------------------------------------------------

    def start(self) -> QuarantineView:
        with self._lock:
            if self._started:
                return self
            self._started = True
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    parts = self._partitions(self._consumer)
                    break
                except LookupError as exc:  # `mailgate topics create` not run yet: the view is empty
                    log.warning("quarantine view waits for its topics", error=str(exc))
                    self._stop.wait(2.0)
            else:
                return
            self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for topic, p in parts])
            while not self._stop.is_set():
                msg = self._consumer.poll(0.2)
                if msg is not None:
                    self._apply(msg)
        except Exception as exc:
            self.error = exc
            log.exception("quarantine view stopped")
        finally:
            self._consumer.close()

    def _partitions(self, consumer: Any) -> list[tuple[str, int]]:
        found = []
        for topic in self.topics:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                raise LookupError(f"topic {topic} does not exist: run `mailgate topics create`")
            found += [(topic, p) for p in meta.partitions]
        return found

    def _apply(self, msg: Any) -> None:
        tp, offset = (msg.topic(), msg.partition()), msg.offset()
        if msg.error() is not None:
            if msg.error().code() == KafkaError._PARTITION_EOF:  # the end (a transaction marker may sit there)
                with self._applied:
                    self._seen[tp] = max(self._seen.get(tp, 0), offset)
                    self._applied.notify_all()
            else:
                log.warning("quarantine view: consumer error", topic=tp[0], error=msg.error().str())
            return
        queue, key = self.topics[tp[0]], (msg.key() or b"").decode(errors="replace")
        with self._applied:
            held = self._held[queue]
            before = held.get(key)
            entry = apply_record(queue, held, msg.key(), msg.value())
            if before is not None and key not in held:  # gone whole: out of the index too
                self._index(queue, before, add=False)
            if entry is not None:
                entry.where, entry.fetch = (tp[0], tp[1], offset), self.fetch
                self._index(queue, entry.summary(), add=True)
            self._seen[tp] = offset + 1
            self._applied.notify_all()

    def _index(self, queue: str, entry: Held, add: bool) -> None:
        for rcpt in entry.record["rcpt_to"]:
            keys = self._by_rcpt.setdefault(rcpt.lower(), set())
            if add:
                keys.add((queue, entry.mail_id))
            else:
                keys.discard((queue, entry.mail_id))
                if not keys:
                    del self._by_rcpt[rcpt.lower()]

    def sync(self, timeout: float = 5.0) -> None:
        """Waits until everything in the topics now has been applied (or ``timeout`` passed)."""
        self.start()
        if not self._parts:
            try:
                self._parts = self._partitions(self._meta)
            except LookupError:
                return  # no quarantine topics: nothing is held
        ends = {(topic, p): self._meta.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for topic, p in self._parts}
        if self.wait_for(ends, timeout if self._caught_up else max(timeout, 30.0)):
            self._caught_up = True  # the first read of the whole topics may take longer

    def wait_for(self, ends: dict[tuple[str, int], int], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._applied:
            while not all(self._seen.get(tp, 0) >= end for tp, end in ends.items() if end > 0):
                if self.error is not None:
                    raise RuntimeError(f"the quarantine view stopped: {self.error}") from self.error
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("quarantine view behind the topics: answering from what it has",
                                behind=[f"{t}[{p}]" for (t, p), e in ends.items() if self._seen.get((t, p), 0) < e])
                    return False
                self._applied.wait(min(left, 0.5))
        return True

    # -- reading ---------------------------------------------------------------------

    def mails(self, queues: Iterable[str], address: str | None = None) -> list[Held]:
        """Held mail of these queues; of one recipient address only when ``address`` is given."""
        wanted = set(queues)
        with self._lock:
            if address is None:
                found = [h for q in wanted for h in self._held[q].values()]
            else:
                keys = [k for k in self._by_rcpt.get(address.lower(), ()) if k[0] in wanted]
                found = [h for q, m in keys if (h := self._held[q].get(m)) is not None]
            return [h for h in found if is_held(h)]

    def newest(self, held: list[Held], limit: int) -> list[Held]:
        return heapq.nlargest(limit, held, key=lambda h: h.record["received_time"])

    def get(self, queue: str, mail_id: str) -> Held | None:
        with self._lock:
            h = self._held[queue].get(mail_id)
            return h if h is not None and is_held(h) else None

    def fetch(self, where: Where) -> bytes:
        """The raw message of one MailRouted record, read at its offset."""
        topic, partition, offset = where
        with self._fetch_lock:
            self._fetcher.assign([TopicPartition(topic, partition, offset)])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                msg = self._fetcher.poll(1.0)
                if msg is None or msg.error() is not None or msg.offset() != offset:
                    continue
                return unpack_message(default_codec().decode(msg.value(), expect="MailRouted").record["message"])
        raise TimeoutError(f"{topic}[{partition}]@{offset}: the quarantined mail could not be read")

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        elif not self._started:
            self._consumer.close()
        self._meta.close()
        self._fetcher.close()
