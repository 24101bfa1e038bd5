"""Which offsets smtp-client may commit: the lowest offset of each partition that
is not yet finished. Deliveries run concurrently and finish out of order; a mail
that is still being tried holds back the commit point of its partition, so a
crash redelivers it instead of losing it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import NamedTuple

TP = tuple[str, int]  # (topic, partition)


class Ticket(NamedTuple):
    """One record being processed; the generation tells a revoked-and-reassigned
    partition's old work from its new work."""

    tp: TP
    offset: int
    generation: int


@dataclass
class _Partition:
    pending: set[int] = field(default_factory=set)
    next_offset: int | None = None  # one past the highest offset seen
    committed: int | None = None
    generation: int = 0


class OffsetTracker:
    """Thread-safe: the consumer's rebalance callbacks run in the Kafka thread."""

    def __init__(self) -> None:
        self._parts: dict[TP, _Partition] = {}
        self._generations: dict[TP, int] = {}
        self._lock = threading.Lock()

    def started(self, tp: TP, offset: int) -> Ticket:
        with self._lock:
            part = self._parts.get(tp)
            if part is None:
                part = self._parts[tp] = _Partition(generation=self._generations.get(tp, 0))
            part.pending.add(offset)
            if part.next_offset is None or offset + 1 > part.next_offset:
                part.next_offset = offset + 1
            return Ticket(tp, offset, part.generation)

    def finished(self, ticket: Ticket) -> None:
        with self._lock:
            part = self._parts.get(ticket.tp)
            if part is not None and part.generation == ticket.generation:
                part.pending.discard(ticket.offset)

    def in_flight(self) -> int:
        with self._lock:
            return sum(len(p.pending) for p in self._parts.values())

    def in_flight_on(self, tps: set[TP]) -> int:
        with self._lock:
            return sum(len(p.pending) for tp, p in self._parts.items() if tp in tps)

    def committable(self, only: set[TP] | None = None) -> dict[TP, int]:
        """Commit points that moved since the last ``committed()`` call."""
        out: dict[TP, int] = {}
        with self._lock:
            for tp, part in self._parts.items():
                if only is not None and tp not in only:
                    continue
                point = min(part.pending) if part.pending else part.next_offset
                if point is not None and (part.committed is None or point > part.committed):
                    out[tp] = point
        return out

    def committed(self, points: dict[TP, int]) -> None:
        with self._lock:
            for tp, point in points.items():
                if tp in self._parts:
                    self._parts[tp].committed = point

    def revoke(self, tps: set[TP]) -> None:
        """Forget partitions this consumer lost; work still running on them no longer counts."""
        with self._lock:
            for tp in tps:
                if self._parts.pop(tp, None) is not None:
                    self._generations[tp] = self._generations.get(tp, 0) + 1
