"""spam-filter: reports change verdicts (on every node), ham overrides, expiry, hit counts, serialisation."""

from __future__ import annotations

import pytest
from spam_helpers import mail, mutate, plain_spams

from streams.spam.classifier import TokenClassifier
from streams.spam.patterns import Pattern
from streams.spam.scoring import Report, SpamFilter
from streams.spam.settings import SpamSettings

DAY = 86_400_000
BLANK = SpamSettings(base_model="none")  # these tests learn from nothing: no base model under the reports


def report(raw: bytes, label: str, at: int = 1_000, role: str = "user", mail_id: str = "m1") -> Report:
    return Report(mail_id=mail_id, label=label, reporter=f"{role}@example.com", time_ms=at, raw_message=raw, role=role)


@pytest.fixture
def spam() -> bytes:
    return plain_spams(1)[0]


def test_a_spam_report_turns_the_next_near_duplicate_to_spam(spam: bytes) -> None:
    node = SpamFilter(BLANK, node="gw1")
    variant = mutate(spam, "Alice Jones", "v1")
    before = node.score(variant, now_ms=2_000)
    assert before.verdict != "spam" and before.matched == []
    (pattern,) = node.learn(report(spam, "spam"))
    after = node.score(variant, now_ms=3_000)
    assert after.verdict == "spam" and after.score >= node.settings.spam_threshold
    assert after.matched == [pattern.pattern_id]
    assert any("reported as spam" in r and pattern.pattern_id in r for r in after.reasons)


def test_every_node_learns_from_the_records_one_node_publishes(spam: bytes) -> None:
    gw1, gw2 = SpamFilter(BLANK, node="gw1"), SpamFilter(BLANK, node="gw2")
    published = [p.to_record() for p in gw1.learn(report(spam, "spam"))]
    assert all(gw2.apply_record(rec["pattern_id"], rec) for rec in published)
    assert not gw2.apply_record(published[0]["pattern_id"], published[0])  # the same record again: no change
    assert gw2.score(mutate(spam, "Bob", "n2"), now_ms=2_000).verdict == "spam"
    assert gw2.apply_record(published[0]["pattern_id"], None)  # tombstone
    assert gw2.score(mutate(spam, "Bob", "n3"), now_ms=3_000).verdict != "spam"


def test_a_ham_report_retracts_the_spam_pattern(spam: bytes) -> None:
    node = SpamFilter(BLANK)
    (spam_pattern,) = node.learn(report(spam, "spam", at=1_000))
    changed = node.learn(report(mutate(spam, "Carol", "h1"), "ham", at=2_000, mail_id="m2"))
    flipped = next(p for p in changed if p.pattern_id == spam_pattern.pattern_id)
    assert flipped.label == "ham" and flipped.version == 2
    score = node.score(mutate(spam, "Dave", "h2"), now_ms=3_000)
    assert score.verdict == "ham" and score.score < node.settings.ham_threshold
    assert any("not spam" in r for r in score.reasons)


def test_a_user_does_not_overrule_an_administrator(spam: bytes) -> None:
    node = SpamFilter(BLANK)
    (admin_ham,) = node.learn(report(spam, "ham", role="admin"))
    assert node.learn(report(mutate(spam, "Eve", "u1"), "spam", at=2_000, role="user")) == []
    assert node.score(mutate(spam, "Eve", "u2"), now_ms=3_000).verdict == "ham"
    changed = node.learn(report(mutate(spam, "Eve", "u3"), "spam", at=4_000, role="admin"))
    flipped = next(p for p in changed if p.pattern_id == admin_ham.pattern_id)
    assert flipped.label == "spam" and flipped.role == "admin"
    assert all(p.label == "spam" for p in changed)  # plus, maybe, the variant as a pattern of its own


def test_patterns_expire_unless_reported_or_hit(spam: bytes) -> None:
    node = SpamFilter(SpamSettings(base_model="none", spam_ttl_days=2))
    (pattern,) = node.learn(report(spam, "spam", at=0))
    assert node.expire(now_ms=2 * DAY - 1) == []
    node.score(mutate(spam, "Fay", "e1"), now_ms=DAY)  # a hit renews it
    assert node.store.get(pattern.pattern_id).hit_count == 1  # type: ignore[union-attr]
    assert node.expire(now_ms=3 * DAY - 1) == []
    assert node.expire(now_ms=3 * DAY) == [pattern.pattern_id]
    assert node.score(mutate(spam, "Fay", "e2"), now_ms=3 * DAY).verdict != "spam"
    assert node.classifier.nspam == 0  # an expired pattern is unlearned too


def test_hit_counts_merge_per_node_and_newer_content_wins(spam: bytes) -> None:
    gw1, gw2 = SpamFilter(BLANK, node="gw1"), SpamFilter(BLANK, node="gw2")
    (pattern,) = gw1.learn(report(spam, "spam"))
    gw2.apply_record(pattern.pattern_id, pattern.to_record())
    for n in range(3):
        gw1.score(mutate(spam, "G", f"a{n}"), now_ms=5_000)
    gw2.score(mutate(spam, "H", "b"), now_ms=6_000)
    (dirty1,), (dirty2,) = gw1.take_dirty(), gw2.take_dirty()
    assert gw1.take_dirty() == []
    gw1.apply_record(pattern.pattern_id, dirty2.to_record())
    gw2.apply_record(pattern.pattern_id, dirty1.to_record())
    for node in (gw1, gw2):
        merged = node.store.get(pattern.pattern_id)
        assert merged is not None and merged.hits == {"gw1": 3, "gw2": 1} and merged.last_hit_ms == 6_000
    gw1.learn(report(mutate(spam, "I", "c"), "ham", at=7_000, role="admin"))
    stale = dirty2.to_record()  # an older version (a hit flush from before the flip) arrives late
    gw1.apply_record(pattern.pattern_id, stale)
    assert gw1.store.get(pattern.pattern_id).label == "ham"  # type: ignore[union-attr]


def test_pattern_record_and_bytes_round_trip(spam: bytes) -> None:
    node = SpamFilter(BLANK, node="gw1")
    (pattern,) = node.learn(report(spam, "spam"))
    node.score(mutate(spam, "J", "r"), now_ms=9_000)
    pattern = node.store.get(pattern.pattern_id)
    assert pattern is not None
    record = pattern.to_record()
    assert set(record) == {"pattern_id", "label", "signature", "attachments", "domains", "tokens", "role",
                           "reporter", "mail_id", "created_ms", "updated_ms", "reports", "version",
                           "last_hit_ms", "hits"}
    assert isinstance(record["signature"], bytes) and isinstance(record["tokens"], bytes)
    assert Pattern.from_record(record) == pattern
    assert Pattern.from_bytes(pattern.to_bytes()) == pattern
    with pytest.raises(ValueError):
        Pattern.from_record({**record, "label": "maybe"})


def test_classifier_learns_from_patterns_and_unlearns_exactly() -> None:
    node = SpamFilter(SpamSettings(base_model="none", classifier_min_patterns=5))
    for n in range(6):
        node.learn(report(mail(f"cheap meds {n}", f"buy cheap pills now viagra discount pharmacy offer {n} " * 3),
                          "spam", mail_id=f"s{n}"))
        node.learn(report(mail(f"meeting notes {n}", f"the build failed on the arm runner see log item {n} " * 3,
                               sender=f"dev{n}@example.org"), "ham", mail_id=f"h{n}"))
    assert node.classifier_ready
    fresh = node.score(mail("pharmacy discount", "cheap viagra pills from our pharmacy, discount offer today"))
    # the reason names spam words of the reports (which 5 of the equally strong ones: the token hashes decide)
    clues = " ".join(fresh.reasons)
    assert fresh.parts["classifier"] > 0.9 and sum(f"'{w}'" in clues for w in ("viagra", "cheap", "pills", "discount",
                                                                               "pharmacy", "offer")) >= 3
    ham = node.score(mail("build", "the arm runner build failed again, see the log", sender="dev9@example.org"))
    assert ham.parts["classifier"] < 0.1

    clf = TokenClassifier()
    clf.learn([1, 2, 3], True)
    clf.learn([3, 4], False)
    clf.learn([1, 2, 3], True, weight=-1)
    assert (clf.spam, clf.ham, clf.nspam, clf.nham) == ({}, {3: 1, 4: 1}, 0, 1)


def test_report_validation() -> None:
    node = SpamFilter(BLANK)
    with pytest.raises(ValueError):
        node.learn(report(mail("x", "y"), "spam", role="root"))
    with pytest.raises(ValueError):
        node.learn(report(mail("x", "y"), "probably"))


def test_header_anomalies_become_classifier_tokens() -> None:
    from streams.spam.classifier import anomalies
    from streams.spam.normalize import extract

    raw = (b"From: \"support@bank.test\" <x@evil.test>\nReply-To: y@other.test\nTo: someone@else.test\n"
           b"Subject: hi\nContent-Type: text/html\n\n<a href='http://10.0.0.1/login'>login</a>")
    flags = set(anomalies(extract(raw), "bounce@third.test", ["victim@example.com"]))
    assert flags == {"anomaly:no_date", "anomaly:no_message_id", "anomaly:from_name_has_address",
                     "anomaly:reply_to_elsewhere", "anomaly:envelope_elsewhere", "anomaly:html_only",
                     "anomaly:url_ip_host", "anomaly:rcpt_not_in_to"}
    clean = extract(mail("hello", "see you tomorrow", sender="a@shop.test"))
    assert anomalies(clean, "a@shop.test", ["you@example.com"]) == []


def test_a_mail_too_short_to_fingerprint_matches_only_itself() -> None:
    node = SpamFilter(BLANK)
    short = mail("hi", "call me 555 0100")
    assert node.features(short).print.signature is None
    (pattern,) = node.learn(report(short, "spam"))
    assert node.score(short, now_ms=2_000).matched == [pattern.pattern_id]
    assert node.score(mail("hi", "call me 555 0100 tomorrow please"), now_ms=2_000).matched == []
