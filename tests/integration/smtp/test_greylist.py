"""Greylisting with its triplet state in the compacted topic smtp.greylist: a new
triplet gets 451 on one node; the retry after the delay passes on *another* node,
because every node reads the same topic."""

from __future__ import annotations

import asyncio

import aiosmtplib

from tests.integration.smtp.conftest import StartServer
from tests.integration.smtp.test_filters import MSG, rcpt_reply


async def test_greylisting_is_shared_by_the_nodes(smtp_server: StartServer) -> None:
    grey = {"enabled": True, "delay_s": 1.0, "retry_window_s": 60}
    node_a = smtp_server(greylist=grey, node="node-a")
    node_b = smtp_server(greylist=grey, node="node-b", prefix=node_a.prefix)

    code, text = rcpt_reply(node_a.port, "u@example.com", sender="new@outside.test")
    assert code == 451 and text.startswith("4.7.1 Greylisted") and "try again in 1 s" in text
    await asyncio.sleep(0.3)
    assert rcpt_reply(node_b.port, "u@example.com", sender="new@outside.test")[0] == 451  # too early, on B too
    assert rcpt_reply(node_b.port, "other@example.com", sender="new@outside.test")[0] == 451  # its own triplet
    await asyncio.sleep(1.0)
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=node_b.port, start_tls=False, local_hostname="client.test")
    await client.connect()
    await client.sendmail("new@outside.test", ["u@example.com"], MSG)  # B knows A's first attempt
    await client.quit()
    assert rcpt_reply(node_a.port, "u@example.com", sender="new@outside.test")[0] == 250  # known now, on A too

    (mail,) = node_b.mail_in()
    assert mail.value["verdicts"][0]["filter"] == "greylist" and mail.value["verdicts"][0]["reason"].startswith(
        "passed after")
    node_c = smtp_server(greylist=grey, node="node-c", prefix=node_a.prefix)  # started later: reads the topic
    assert rcpt_reply(node_c.port, "u@example.com", sender="new@outside.test")[0] == 250
    assert rcpt_reply(node_c.port, "u@example.com", sender="newer@outside.test")[0] == 451


def test_allow_listed_and_trusted_clients_are_not_greylisted(smtp_server: StartServer) -> None:
    grey = {"enabled": True, "delay_s": 300}
    srv = smtp_server(greylist=grey, lists={"sender_allow": ["friend.test"]})
    assert rcpt_reply(srv.port, "u@example.com", sender="a@friend.test")[0] == 250
    assert rcpt_reply(srv.port, "u@example.com", sender="a@stranger.test")[0] == 451
    trusted = smtp_server(greylist=grey, relay={"trusted_networks": ["127.0.0.1/32"]})
    assert rcpt_reply(trusted.port, "u@example.com", sender="a@stranger.test")[0] == 250
