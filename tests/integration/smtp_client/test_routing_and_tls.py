"""Routing by MX (a loopback DNS server), TLS policies, dropped connections,
connection reuse and per-destination limits, and pausing."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import trustme

from control.server.auth import Principal
from control.server.plane import ControlPlane
from core.control_channel import ControlChannel
from tests.integration.smtp_client.conftest import Harness, message
from tests.integration.smtp_client.peers import DroppingServer, ScriptedSink
from tests.support.dns import DnsServer
from tests.support.ports import free_port


async def test_mx_lookup_tries_the_next_mx_and_falls_back_to_a(harness_factory: Callable[..., Harness],
                                                               dns_server: DnsServer) -> None:
    port = free_port()
    dns_server.add("mx.test", "MX", "10 down.mx.test.", "20 up.mx.test.")
    dns_server.add("down.mx.test", "A", "127.0.0.2")  # nothing listens there
    dns_server.add("up.mx.test", "A", "127.0.0.1")
    dns_server.add("nomx.test", "A", "127.0.0.1")  # no MX: the implicit MX
    with ScriptedSink(port=port) as sink:
        h = harness_factory(mx_port=port, dns=dns_server.settings(), transport={"origin.test": sink.address})
        await h.start()
        via_mx = h.send(message("by mx"), ["u@mx.test"])
        via_a = h.send(message("by a"), ["u@nomx.test"])
        nowhere = h.send(message("no such domain"), ["u@nxdomain.test"])
        got = await sink.await_for(3)  # two mails and the bounce for nxdomain.test
        events = await h.wait_events(lambda ev: sum(e.event_type == "MailDelivered" for e in ev) >= 3)
        await h.stop()
    assert sorted(r for m in got for r in m.rcpt_to) == ["sender@origin.test", "u@mx.test", "u@nomx.test"]
    hop = {e.value["mail_id"]: e.value["next_hop"] for e in events if e.event_type == "MailDelivered"}
    assert hop[via_mx] == f"up.mx.test[127.0.0.1]:{port}"
    assert hop[via_a] == f"nomx.test[127.0.0.1]:{port}"
    (failed,) = [e.value for e in events if e.value["mail_id"] == nowhere]
    assert failed["permanent"] and failed["reply_code"] == 550 and "5.1.2" in failed["reply_text"]
    assert ("mx.test", "MX") in dns_server.queries and ("down.mx.test", "A") in dns_server.queries


def tls_server(ca: trustme.CA, name: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(ctx)
    return ctx


async def test_tls_required_is_never_sent_in_clear_and_verified_when_offered(
        harness_factory: Callable[..., Harness], dns_server: DnsServer, tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    dns_server.add("secure.test", "MX", "10 mx.secure.test.")
    dns_server.add("mx.secure.test", "A", "127.0.0.1")
    with ScriptedSink(port=port, tls=tls_server(ca, "mx.secure.test")) as secure, \
            ScriptedSink() as plain, ScriptedSink(tls=tls_server(ca, "elsewhere.test")) as loose:
        h = harness_factory(mx_port=port, dns=dns_server.settings(), tls_ca_file=ca_file,
                            tls_policy={"secure.test": "required", "plain.test": "required"},
                            transport={"plain.test": plain.address, "secure.test": "mx", "loose.test": loose.address})
        await h.start()
        clear = h.send(message("must be encrypted"), ["u@plain.test"])
        verified = h.send(message("verified tls"), ["u@secure.test"])
        opportunistic = h.send(message("any tls"), ["u@loose.test"])
        (got,) = await secure.await_for(1)
        (got_loose,) = await loose.await_for(1)
        events = await h.wait_events(
            lambda ev: sum(e.value["mail_id"] == clear for e in ev) >= 2 and len(ev) >= 4)
        await h.stop()
    assert got.tls == "TLSv1.3" and got_loose.tls == "TLSv1.3"
    delivered = {e.value["mail_id"]: e.value for e in events if e.event_type == "MailDelivered"}
    assert delivered[verified]["tls_version"] == "TLSv1.3" and delivered[verified]["tls_cipher"]
    assert delivered[opportunistic]["tls_version"] == "TLSv1.3"
    deferred = [e.value for e in events if e.value["mail_id"] == clear]
    assert all(d["permanent"] is False and "4.7.4" in d["reply_text"] for d in deferred), deferred
    assert plain.mails == [] and plain.handler.mail_commands == 0  # not even MAIL FROM in clear


async def test_tls_required_with_a_certificate_that_fails_verification_is_deferred_never_sent_in_clear(
        harness_factory: Callable[..., Harness], tmp_path: Path) -> None:
    trusted, stranger = trustme.CA(), trustme.CA()
    ca_file = tmp_path / "ca.pem"
    trusted.cert_pem.write_to_path(str(ca_file))
    # One sink's certificate is for the right address but from a CA the client does not trust; the
    # other's is from the trusted CA but for another host name.
    with ScriptedSink(tls=tls_server(stranger, "127.0.0.1")) as untrusted, \
            ScriptedSink(tls=tls_server(trusted, "elsewhere.test")) as misnamed:
        h = harness_factory(tls_ca_file=ca_file, tls_policy={"untrusted.test": "required", "misnamed.test": "required"},
                            transport={"untrusted.test": untrusted.address, "misnamed.test": misnamed.address})
        await h.start()
        by_ca = h.send(message("untrusted issuer"), ["u@untrusted.test"])
        by_name = h.send(message("wrong host name"), ["u@misnamed.test"])
        events = await h.wait_events(lambda ev: all(sum(e.value["mail_id"] == m for e in ev) >= 2
                                                    for m in (by_ca, by_name)))
        retried = {r.value["mail_id"]: r.value for r in await asyncio.to_thread(h.topic, "mail.retry.1")}
        await h.stop()
    for sink in (untrusted, misnamed):
        assert sink.mails == [] and sink.handler.mail_commands == 0  # not even MAIL FROM in clear
        assert sink.counter.sessions >= 2  # it was reached (and offered STARTTLS) on each attempt
    assert not [e for e in events if e.event_type == "MailDelivered"]
    for mail_id, problem in ((by_ca, "unable to get local issuer certificate"),
                             (by_name, "IP address mismatch, certificate is not valid for '127.0.0.1'")):
        failed = [e.value for e in events if e.value["mail_id"] == mail_id]
        assert all(e.event_type == "DeliveryFailed" for e in events if e.value["mail_id"] == mail_id)
        assert all(f["permanent"] is False and f["next_attempt_time"] and f["reply_code"] is None
                   for f in failed), failed
        assert all("4.7.5" in f["reply_text"] and "certificate verify failed" in f["reply_text"]
                   and problem in f["reply_text"] for f in failed), failed
        assert retried[mail_id]["rcpt_to"] == failed[0]["rcpt_to"] and retried[mail_id]["attempt"] == 1


async def test_connection_dropped_mid_data_is_retried(harness_factory: Callable[..., Harness]) -> None:
    with DroppingServer(drops=1) as server:
        h = harness_factory(transport={"dest.test": server.address})
        await h.start()
        data = message("dropped once")
        mail_id = h.send(data, ["u@dest.test"])
        events = await h.wait_events(lambda ev: any(e.event_type == "MailDelivered" for e in ev))
        await h.stop()
    assert server.dropped == 1 and len(server.mails) == 1
    assert server.mails[0].replace(b"..", b".") == data + (b"" if data.endswith(b"\r\n") else b"\r\n")
    mine = [(e.event_type, e.value["attempt"], e.value["reply_code"]) for e in events
            if e.value["mail_id"] == mail_id]
    assert mine == [("DeliveryFailed", 1, None), ("MailDelivered", 2, 250)]


async def test_connections_are_reused_and_limited_per_destination(harness_factory: Callable[..., Harness]) -> None:
    with ScriptedSink() as sink:
        sink.script.delay_s = 0.02
        h = harness_factory(transport={"dest.test": sink.address}, destination_concurrency=2)
        await h.start()
        h.feed(*(h.routed(message(f"mail {i}"), [f"u{i}@dest.test"]) for i in range(30)))
        await sink.await_for(30)
        await h.stop()
    assert sorted(m.rcpt_to[0] for m in sink.mails) == sorted(f"u{i}@dest.test" for i in range(30))
    assert sink.counter.most_active <= 2
    assert sink.counter.sessions <= 4, f"{sink.counter.sessions} sessions for 30 mails: connections not reused"


async def test_pausing_the_consumer_group_stops_delivery_and_resuming_goes_on(
        harness_factory: Callable[..., Harness]) -> None:
    """Through the control plane, as an administrator does: control.desired → the client's control channel."""
    with ScriptedSink() as sink:
        h = harness_factory(transport={"dest.test": sink.address})
        client = await h.start()
        loop = asyncio.get_running_loop()
        channel = await asyncio.to_thread(ControlChannel(h.settings, "smtp-client", pause=client.pause,
                                                         resume=client.resume, loop=loop).start)
        plane = await asyncio.to_thread(ControlPlane(h.settings).start)
        admin = Principal("admin", "test")
        try:
            h.send(message("before the pause"), ["before@dest.test"])
            await sink.await_for(1)
            await asyncio.to_thread(plane.set_consumers, admin, "smtp-client", "*", "paused")
            for _ in range(100):
                if client.paused:
                    break
                await asyncio.sleep(0.05)
            h.feed(*(h.routed(message(f"paused {i}"), [f"p{i}@dest.test"]) for i in range(5)))
            await asyncio.sleep(2.5)
            assert [m.rcpt_to for m in sink.mails] == [["before@dest.test"]], "delivered while paused"
            await asyncio.to_thread(plane.set_consumers, admin, "smtp-client", "*", "running")
            await sink.await_for(6)
            await asyncio.sleep(1)
            await h.stop()
        finally:
            await asyncio.to_thread(channel.stop)
            await asyncio.to_thread(plane.stop)
    assert sorted(m.rcpt_to[0] for m in sink.mails) == ["before@dest.test", *(f"p{i}@dest.test" for i in range(5))]
