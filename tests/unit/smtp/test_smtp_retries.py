"""smtp-server: a client's retry of an accepted mail is recognised (pure logic, no broker)."""

from __future__ import annotations

import asyncio

from ingress.smtp.retries import RecentAccepts, retry_key

RAW = b"From: a@outside.test\r\nMessage-ID: <1@outside.test>\r\nSubject: hi\r\n\r\nhello\r\n"


def test_the_key_is_the_client_envelope_message_id_and_body() -> None:
    key = retry_key("192.0.2.1", "a@outside.test", ["b@example.com", "c@example.com"], RAW)
    assert key is not None
    assert key == retry_key("192.0.2.1", "A@outside.test", ["c@example.com", "b@example.com"], RAW)
    for other in (retry_key("192.0.2.2", "a@outside.test", ["b@example.com", "c@example.com"], RAW),
                  retry_key("192.0.2.1", "a@outside.test", ["b@example.com"], RAW),
                  retry_key("192.0.2.1", "a@outside.test", ["b@example.com", "c@example.com"], RAW + b"more\r\n"),
                  retry_key("192.0.2.1", "a@outside.test", ["b@example.com", "c@example.com"],
                            RAW.replace(b"<1@", b"<2@"))):
        assert other is not None and other != key
    assert retry_key("192.0.2.1", "a@outside.test", ["b@example.com"], b"Subject: no id\r\n\r\nhello\r\n") is None


async def test_a_retry_gets_the_first_copy_and_a_failed_copy_lets_the_next_one_publish() -> None:
    recent = RecentAccepts(window_s=60)
    assert await recent.claim(b"k") is None  # the first copy: publish it
    waiting = asyncio.ensure_future(recent.claim(b"k"))  # a retry while the first waits for the broker
    await asyncio.sleep(0)
    assert not waiting.done()
    recent.published(b"k", "mail-1")
    assert await waiting == "mail-1"
    assert await recent.claim(b"k") == "mail-1"

    assert await recent.claim(b"f") is None
    retry = asyncio.ensure_future(recent.claim(b"f"))
    await asyncio.sleep(0)
    recent.published(b"f", None)  # Kafka did not take it: 451 to the first, the retry publishes itself
    assert await retry is None
    recent.published(b"f", "mail-2")
    assert await recent.claim(b"f") == "mail-2"


async def test_keys_are_forgotten_after_the_window_and_beyond_the_limit() -> None:
    recent = RecentAccepts(window_s=0.05, limit=2)
    for key in (b"a", b"b", b"c"):
        assert await recent.claim(key) is None
        recent.published(key, key.decode())
    assert await recent.claim(b"a") is None  # pushed out by the limit
    recent.published(b"a", None)
    assert await recent.claim(b"c") == "c"
    await asyncio.sleep(0.1)
    assert await recent.claim(b"c") is None  # past the window
