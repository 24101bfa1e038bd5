"""pop3-proxy's UIDL ledger on the real broker (the compacted topic pop3.uidls) and
a real Dovecot: a crash between the publish and the ledger's "collected" makes
the next process fetch the mail once more under the same mail id; mails gone from
the server are forgotten with tombstones; a restart reads it all back."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from core.kafka import AsyncProducer
from core.publish import Publisher
from control.settings import Settings
from ingress.pop3.collector import AccountCollector, CollectError
from ingress.pop3.kafka import KafkaUidlStore
from ingress.pop3.settings import Pop3Account
from ingress.pop3.uidls import UidlEntry
from schemas.topics import POP3_UIDLS, TopicNames
from tests.support.dovecot import Dovecot, generated_mail
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration


class DiesBeforeCollected(KafkaUidlStore):
    """The process "dies" after Kafka acknowledged the event, before the ledger says collected."""

    async def put(self, account: str, uidl: str, entry: UidlEntry) -> None:
        if entry.state == "collected":
            raise RuntimeError("the process died here (test)")
        await super().put(account, uidl, entry)


async def restored(settings: Settings, producer: AsyncProducer, cls: type[KafkaUidlStore] = KafkaUidlStore,
                   ) -> KafkaUidlStore:
    """A store as a freshly started process has it: only what pop3.uidls holds."""
    store = cls(producer, TopicNames(settings.kafka.topic_prefix)(POP3_UIDLS))
    await asyncio.to_thread(store.restore, settings)
    return store


async def test_crash_after_publish_refetches_once_under_the_same_mail_id(
        kafka_settings: Settings, dovecot: Dovecot, make_account: Callable[..., Pop3Account]) -> None:
    settings = kafka_settings
    box = dovecot.mailbox(generated_mail(i) for i in range(3))
    account = make_account(box)
    names = TopicNames(settings.kafka.topic_prefix)
    producer = AsyncProducer(settings, "pop3-test")
    publisher = Publisher.on(producer)
    try:
        dying = await restored(settings, producer, DiesBeforeCollected)
        with pytest.raises(CollectError, match="will be published once more under the same id"):
            await AccountCollector(account, publisher, dying, "gw-test", mail_in=names.mail_in).collect_once()
        assert box.count() == 3  # nothing deleted: the ledger never said collected
        reserved = {u: e.mail_id for u, e in (await dying.load(account.name)).items()}
        assert len(reserved) == 3

        after_crash = await restored(settings, producer)
        entries = await after_crash.load(account.name)
        assert {u: e.mail_id for u, e in entries.items()} == reserved
        assert {e.state for e in entries.values()} == {"pending"}
        report = await AccountCollector(account, publisher, after_crash, "gw-test", mail_in=names.mail_in).collect_once()
        assert (report.collected, report.deleted, box.count()) == (3, 3, 0)

        after_success = await restored(settings, producer)
        entries = await after_success.load(account.name)
        assert {u: (e.state, e.mail_id) for u, e in entries.items()} == {u: ("collected", m) for u, m in reserved.items()}
        report = await AccountCollector(account, publisher, after_success, "gw-test", mail_in=names.mail_in).collect_once()
        assert (report.listed, report.forgotten) == (0, 3)  # gone from the server: tombstones
        assert await (await restored(settings, producer)).load(account.name) == {}
    finally:
        await asyncio.to_thread(producer.close, 10.0)

    published = [r.value for r in read_topic(settings, names.mail_in)]
    counts = Counter(e["mail_id"] for e in published)
    assert set(counts) == set(reserved.values())  # every re-publish under its first mail id
    assert 4 <= len(published) <= 6 and set(counts.values()) <= {1, 2}
    assert {(e["origin"], e["account"]) for e in published} == {("POP3", account.name)}
