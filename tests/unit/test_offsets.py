"""smtp-client commits only offsets below the first mail still being delivered."""

from __future__ import annotations

from egress.smtp_client.offsets import OffsetTracker

TP = ("mail.out", 0)


def test_commit_point_waits_for_the_oldest_unfinished_record() -> None:
    t = OffsetTracker()
    tickets = [t.started(TP, o) for o in (10, 11, 12)]
    assert t.committable() == {TP: 10}
    t.finished(tickets[1])
    t.finished(tickets[2])
    assert t.committable() == {TP: 10}  # 10 is still being tried: a crash must redeliver it
    t.finished(tickets[0])
    assert t.committable() == {TP: 13}
    t.committed({TP: 13})
    assert t.committable() == {}
    assert t.in_flight() == 0


def test_revoked_partition_forgets_old_work() -> None:
    t = OffsetTracker()
    old = t.started(TP, 5)
    t.revoke({TP})
    assert t.committable() == {}
    new = t.started(TP, 5)  # reassigned later: the same offset is delivered again
    t.finished(old)  # the old attempt finishing must not release the new one
    assert t.committable() == {TP: 5}
    t.finished(new)
    assert t.committable() == {TP: 6}


def test_partitions_are_independent() -> None:
    t = OffsetTracker()
    t.started(("mail.out", 0), 3)
    done = t.started(("mail.out", 1), 8)
    t.finished(done)
    assert t.committable() == {("mail.out", 0): 3, ("mail.out", 1): 9}
    assert t.committable(only={("mail.out", 1)}) == {("mail.out", 1): 9}
