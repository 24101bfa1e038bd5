"""The UIDL ledger: pending before publish, collected after, same mail id on retry."""

from __future__ import annotations

import pytest

from ingress.pop3.uidls import MemoryUidlStore, UidlEntry, UidlLedger, record_key, split_key


async def test_reserve_commit_and_a_retry_keeps_the_mail_id() -> None:
    store = MemoryUidlStore()
    ledger = UidlLedger(store, "sales")
    await ledger.load()
    mail_id = (await ledger.reserve(["u1"]))["u1"]
    assert (await store.load("sales"))["u1"].state == "pending" and not ledger.collected("u1")

    restarted = UidlLedger(store, "sales")  # crash before commit: the next cycle
    await restarted.load()
    assert await restarted.reserve(["u1", "u2"]) == {"u1": mail_id, "u2": restarted.entries["u2"].mail_id}
    await restarted.commit("u1", mail_id)
    assert restarted.collected("u1")
    assert (await store.load("sales"))["u1"] == UidlEntry("collected", mail_id, restarted.entries["u1"].at_ms)


async def test_prune_forgets_what_left_the_server_and_only_this_account() -> None:
    store = MemoryUidlStore()
    a, b = UidlLedger(store, "a"), UidlLedger(store, "b")
    for uidl in ("1", "2", "3"):
        await a.commit(uidl, f"id{uidl}")
    await b.commit("1", "other")
    assert await a.prune({"2"}) == 2
    assert set(await store.load("a")) == {"2"} and set(await store.load("b")) == {"1"}


def test_records_round_trip_through_the_topic_format() -> None:
    store = MemoryUidlStore()
    store.apply(record_key("sales", "0000a/b+c"), UidlEntry("collected", "01ABC", 5).to_bytes())
    store.apply(record_key("ops", "x"), b'{"state":"pending","mail_id":"01DEF","at":7}')
    assert split_key(b"sales/0000a/b+c") == ("sales", "0000a/b+c")
    restored = MemoryUidlStore()
    for key, value in store.records():
        restored.apply(key, value)
    restored.apply(record_key("ops", "x"), None)  # tombstone
    assert list(restored.records()) == [(b"sales/0000a/b+c", b'{"state":"collected","mail_id":"01ABC","at":5}')]


@pytest.mark.parametrize("value", [b"not json", b'{"state":"gone","mail_id":"x","at":1}', b'{"state":"pending"}'])
def test_bad_values_are_named(value: bytes) -> None:
    with pytest.raises(ValueError, match="not a pop3.uidls value"):
        UidlEntry.from_bytes(value)
    with pytest.raises(ValueError, match="not a pop3.uidls key"):
        split_key(b"no-separator")
