"""smtp-server phase-1 filters as plain functions and objects (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ingress.smtp.settings import GreylistSettings, HeloFilterSettings, ListFilterSettings, RateLimitSettings, RelayFilterSettings
from ingress.smtp.auth import hash_password, password_ok
from ingress.smtp.events import smtp_rejected
from ingress.smtp.filters import (
    CONTINUE,
    Action,
    Chain,
    Check,
    Client,
    Stage,
    Transaction,
    Verdict,
    accept,
    note,
    reject,
    tempfail,
)
from ingress.smtp.filters.dnsbl import query_name
from ingress.smtp.filters.greylist import Expiry, Greylist, GreylistStore, Triplet, triplet_key
from ingress.smtp.filters.helo import HeloCheck, helo_problem
from core.address_lists import AddressList
from ingress.smtp.filters.lists import Lists
from ingress.smtp.filters.ratelimit import RateLimit, SlidingWindow
from ingress.smtp.filters.recipients import CalloutCache
from ingress.smtp.filters.relay import RelayControl, relay_verdict
from schemas import default_codec


@dataclass
class Fixed:
    name: str
    verdict: Verdict
    bypassable: bool = False
    stages: frozenset[Stage] = frozenset({Stage.MAIL, Stage.RCPT})
    calls: int = 0

    async def check(self, ask: Check) -> Verdict:
        self.calls += 1
        return self.verdict


def ask(stage: Stage = Stage.MAIL, client: Client | None = None, tx: Transaction | None = None,
        rcpt: str | None = None) -> Check:
    return Check(stage, client or Client(ip="192.0.2.1"), tx or Transaction(mail_from="s@outside.test"), rcpt)


async def test_the_first_verdict_that_is_not_continue_decides() -> None:
    later = Fixed("later", reject("later", 550, "5.7.1", "no"))
    chain = Chain([Fixed("quiet", CONTINUE), Fixed("noted", note("noted", "spf=pass")),
                   Fixed("soft", tempfail("soft", 451, "4.7.1", "later")), later])
    check = ask()
    verdict = await chain.run(check)
    assert verdict.action is Action.TEMPFAIL and later.calls == 0
    assert [(v.filter, v.stage) for v in check.tx.verdicts] == [("noted", Stage.MAIL), ("soft", Stage.MAIL)]


async def test_accept_at_mail_makes_the_transaction_skip_bypassable_filters() -> None:
    grey = Fixed("grey", tempfail("grey", 451, "4.7.1", "greylisted"), bypassable=True)
    guard = Fixed("guard", reject("guard", 550, "5.7.1", "never bypassed"))
    chain = Chain([Fixed("allow", accept("allow", "on the allow list"), stages=frozenset({Stage.MAIL})), grey])
    tx = Transaction(mail_from="friend@ok.test")
    assert (await chain.run(ask(Stage.MAIL, tx=tx))).action is Action.ACCEPT and tx.allowed
    assert (await chain.run(ask(Stage.RCPT, tx=tx, rcpt="u@example.com"))) is CONTINUE and grey.calls == 0
    assert (await Chain([grey, guard]).run(ask(Stage.RCPT, tx=tx, rcpt="u@example.com"))).action is Action.REJECT
    trusted = Client(ip="10.0.0.1", trusted=True)
    assert (await Chain([grey]).run(ask(Stage.RCPT, client=trusted, rcpt="u@example.com"))) is CONTINUE


@pytest.mark.parametrize(("name", "problem"), [
    ("mx.outside.test", None), ("mx.outside.test.", None), ("[192.0.2.1]", None), ("[IPv6:2001:db8::1]", None),
    ("localhost", 504), ("192.0.2.1", 501), ("[999.1.1.1]", 501), ("bad name.test", 501), ("-x.test", 501),
    ("a" * 64 + ".test", 501),
])
def test_helo_names(name: str, problem: int | None) -> None:
    found = helo_problem(name, require_fqdn=True)
    assert (found[0] if found else None) == problem


ROUTED = ["victim%elsewhere.test@example.com", "elsewhere.test!victim@example.com",
          '"victim@elsewhere.test"@example.com', "a%b!c@EXAMPLE.com"]


@pytest.mark.parametrize("rcpt", ROUTED)
async def test_sender_specified_routing_is_refused_from_untrusted_clients(rcpt: str) -> None:
    relay = RelayControl(["example.com"], RelayFilterSettings(trusted_networks=["10.0.0.0/8"]))
    verdict = await relay.check(ask(Stage.RCPT, rcpt=rcpt))
    assert (verdict.action, verdict.code, verdict.status) == (Action.REJECT, 550, "5.7.1")
    assert "sender-specified routing" in verdict.reason and rcpt in verdict.reason
    assert relay_verdict(rcpt, {"example.com"}).startswith("550 5.7.1 Relay access denied: sender-specified routing")
    trusted = await relay.check(ask(Stage.RCPT, Client(ip="10.1.2.3", trusted=True), rcpt=rcpt))
    assert trusted.action is Action.CONTINUE and "trusted network" in trusted.reason
    authenticated = await relay.check(ask(Stage.RCPT, Client(ip="192.0.2.1", user="alice"), rcpt=rcpt))
    assert authenticated.action is Action.CONTINUE and "authenticated user alice" in authenticated.reason


async def test_plain_local_parts_of_our_domains_still_pass() -> None:
    relay = RelayControl(["example.com"], RelayFilterSettings())
    for rcpt in ("bob@example.com", "bob+tag@example.com", "first.last@example.com", "o'neil@example.com"):
        assert await relay.check(ask(Stage.RCPT, rcpt=rcpt)) is CONTINUE, rcpt
        assert relay_verdict(rcpt, {"example.com"}) is None
    elsewhere = await relay.check(ask(Stage.RCPT, rcpt="victim@elsewhere.test"))
    assert elsewhere.code == 550 and "only for its own domains" in elsewhere.reason


async def test_helo_claiming_to_be_us() -> None:
    check = HeloCheck(HeloFilterSettings(), "mx.example.com", ["example.com"])
    verdict = await check.check(ask(client=Client(ip="192.0.2.1", helo="MX.example.com")))
    assert verdict.action is Action.REJECT and verdict.code == 550


def test_address_lists_match_users_domains_and_subdomains() -> None:
    lst = AddressList(["Bob@Example.com", "spam.test", "@other.test", ".bulk.test"])
    assert lst.match("bob@example.com") == "bob@example.com"
    assert lst.match("alice@example.com") is None
    assert lst.match("x@SPAM.test") == "spam.test" and lst.match("x@other.test") == "other.test"
    assert lst.match("x@a.bulk.test") == ".bulk.test" and lst.match("x@bulk.test") is None
    # a bare domain takes its subdomains too; "@domain" does not (core.address_lists, as in phase 2)
    assert lst.match("x@mx1.Spam.test") == "spam.test" and lst.match("x@sub.other.test") is None


async def test_deny_before_allow() -> None:
    lists = Lists(ListFilterSettings(sender_allow=["ok.test"], sender_deny=["bad@ok.test"], client_deny=["10.0.0.0/8"]))
    verdict = await lists.check(ask(tx=Transaction(mail_from="bad@ok.test")))
    assert verdict.action is Action.REJECT
    assert (await lists.check(ask(tx=Transaction(mail_from="good@ok.test")))).action is Action.ACCEPT
    assert (await lists.check(ask(client=Client(ip="10.1.2.3")))).code == 554


async def test_rate_limits_slide() -> None:
    now = [0.0]
    limit = RateLimit(RateLimitSettings(per_client=2, window_s=10), clock=lambda: now[0])
    assert [(await limit.check(ask())).action for _ in range(3)] == [Action.CONTINUE] * 2 + [Action.TEMPFAIL]
    now[0] = 10.5
    assert (await limit.check(ask())).action is Action.CONTINUE
    w = SlidingWindow(1, 1.0, clock=lambda: now[0])
    assert w.hit("a") and not w.hit("a") and w.hit("b")


async def test_greylist_triplets() -> None:
    now = [1000.0]
    store = GreylistStore()
    grey = Greylist(GreylistSettings(delay_s=60, retry_window_s=600, expiry_s=3600), store, clock=lambda: now[0])
    check = ask(Stage.RCPT, rcpt="U@example.com")
    assert (await grey.check(check)).code == 451
    now[0] += 30
    assert "try again in 30 s" in (await grey.check(check)).reason
    now[0] += 31
    assert (await grey.check(check)).reason.startswith("passed after 61")
    now[0] += 3000
    assert (await grey.check(check)).reason == "known triplet"
    now[0] += 3601
    assert (await grey.check(check)).code == 451  # expired: new again
    key = triplet_key("192.0.2.77", "S@Outside.test", "u@example.com")
    assert key == "192.0.2.0/24|s@outside.test|u@example.com"
    assert Triplet.from_bytes(Triplet(1, None, 2).to_bytes()) == Triplet(1, None, 2)


DAY = 86400.0


async def test_greylist_expiry_with_an_injected_clock() -> None:
    now = [1_000_000.0]
    store = GreylistStore()
    cfg = GreylistSettings(delay_s=60, retry_window_s=3600, max_age_s=35 * DAY, pending_max_age_s=DAY)
    grey = Greylist(cfg, store, clock=lambda: now[0])
    check = ask(Stage.RCPT, rcpt="u@example.com")
    key = triplet_key("192.0.2.1", "s@outside.test", "u@example.com")
    assert (await grey.check(check)).code == 451
    now[0] += 61
    assert (await grey.check(check)).reason.startswith("passed after")
    now[0] += 34 * DAY  # seen within max_age: still known, and its "last" refreshed
    assert (await grey.check(check)).reason == "known triplet"
    now[0] += 34 * DAY
    assert (await grey.check(check)).reason == "known triplet"
    assert (stored := store.get(key)) is not None and stored.last_ms == int(now[0] * 1000)
    now[0] += 35 * DAY + 1  # not seen for longer than max_age: unknown, greylisted again
    assert (await grey.check(check)).code == 451
    assert (stored := store.get(key)) is not None and stored.passed_ms is None
    assert stored.first_ms == int(now[0] * 1000)


def test_greylist_expiry_rule() -> None:
    expiry = Expiry.of(GreylistSettings(retry_window_s=3600, max_age_s=10 * DAY, pending_max_age_s=DAY))
    day_ms = 86_400_000
    assert not expiry.expired(Triplet(0, 5, 10 * day_ms), 20 * day_ms)  # passed: counts from the last sighting
    assert expiry.expired(Triplet(0, 5, 10 * day_ms), 20 * day_ms + 1)
    assert not expiry.expired(Triplet(0, None, 0), day_ms)  # pending: counts from the first attempt
    assert expiry.expired(Triplet(0, None, day_ms), day_ms + 1)
    with pytest.raises(ValueError, match="pending_max_age_s .* at least greylist.retry_window_s"):
        GreylistSettings(retry_window_s=2 * DAY, pending_max_age_s=DAY)
    assert GreylistSettings(expiry_s=5).max_age_s == 5  # the old name still configures it


def test_greylist_sweep_tombstones_only_the_expired() -> None:
    published: list[tuple[str, Triplet | None]] = []
    store = GreylistStore(lambda key, entry: published.append((key, entry)))
    day_ms = 86_400_000
    now = 100 * day_ms
    store.apply("old-passed", Triplet(0, 1, now - 36 * day_ms))
    store.apply("fresh-passed", Triplet(0, 1, now - 34 * day_ms))
    store.apply("old-pending", Triplet(now - 2 * day_ms, None, now - 2 * day_ms))
    store.apply("fresh-pending", Triplet(now - 60_000, None, now - 60_000))
    expiry = Expiry.of(GreylistSettings(max_age_s=35 * DAY, pending_max_age_s=DAY))
    assert sorted(store.sweep(expiry, now)) == ["old-passed", "old-pending"]
    assert sorted(published) == [("old-passed", None), ("old-pending", None)]  # tombstones
    assert store.get("old-passed") is None and store.get("fresh-passed") is not None and len(store) == 2
    assert store.sweep(expiry, now) == [] and len(published) == 2
    store.apply("fresh-passed", None)  # a tombstone read from the topic (another node swept it)
    assert store.get("fresh-passed") is None


def test_callout_cache_expires() -> None:
    now = [0.0]
    cache = CalloutCache(valid_s=10, invalid_s=5, size=2, clock=lambda: now[0])
    cache.put("a@x", True, "250 ok")
    cache.put("b@x", False, "550 no")
    assert cache.get("a@x") == (True, "250 ok") and cache.get("b@x") == (False, "550 no")
    now[0] = 6
    assert cache.get("b@x") is None and cache.get("a@x") is not None
    cache.put("c@x", True, "")
    cache.put("d@x", True, "")
    assert cache.get("a@x") is None  # the oldest went


def test_dnsbl_query_names() -> None:
    assert query_name("192.0.2.7", "bl.test.") == "7.2.0.192.bl.test"
    assert query_name("2001:db8::1", "bl.test").endswith(".8.b.d.0.1.0.0.2.bl.test")


def test_passwords() -> None:
    hashed = hash_password("s3cret", 1000)
    assert password_ok(hashed, "s3cret") and not password_ok(hashed, "other")
    assert password_ok("plain", "plain") and not password_ok("plain", "plai")
    assert not password_ok("pbkdf2_sha256$x$zz$yy", "x")


def test_rejection_event_fits_its_schema() -> None:
    tx = Transaction(mail_from="s@outside.test", started=True,
                     verdicts=[note("spf", "spf=fail").at(Stage.MAIL, None),
                               reject("relay", 550, "5.7.1", "Relay access denied").at(Stage.RCPT, "v@else.test")])
    event = smtp_rejected(Client(ip="192.0.2.1", helo="c.test"), tx, "gw1")
    assert event is not None and event.stage == "RCPT" and event.code == 550
    decoded = default_codec().decode(default_codec().encode("SmtpRejected", event)).record
    assert decoded["verdicts"][1]["rcpt"] == "v@else.test"
    assert smtp_rejected(Client(ip="192.0.2.1"), Transaction(verdicts=[note("x", "y")]), "gw1") is None


def test_the_fast_mail_received_encoding_is_the_codecs() -> None:
    from aiosmtpd.smtp import Envelope

    from ingress.smtp.events import mail_received
    from ingress.smtp.protocol import GatewayEnvelope, GatewaySession
    from core.publish import Encoder

    session = GatewaySession(loop=None)  # type: ignore[arg-type]
    session.peer, session.host_name = ("192.0.2.9", 4000), "mx.outside.test"
    session.client = Client(ip="192.0.2.9", helo="mx.outside.test", name="mx.outside.test", user="bob")
    envelope = GatewayEnvelope()
    envelope.mail_from, envelope.rcpt_tos = "s@outside.test", ["a@example.com"]
    envelope.original_content = b"Subject: x\r\n\r\n" + b"line\r\n" * 300
    envelope.tx.verdicts.append(note("spf", "spf=pass").at(Stage.MAIL, None))
    envelope.tx.spf = ("pass", "sender SPF authorized")
    codec = default_codec()
    encoder = Encoder(codec)
    for env in (envelope, Envelope()):
        event = mail_received(env, session, "gw1", mail_id="01M88VEJ91K48V10FW8NH70J07")
        assert encoder.encode(event) == codec.encode("MailReceived", event)
    decoded = codec.decode(encoder.encode(mail_received(envelope, session, "gw1"))).record
    assert decoded["spf"] == "pass" and decoded["authenticated"] == "bob" and decoded["verdicts"][0]["filter"] == "spf"
