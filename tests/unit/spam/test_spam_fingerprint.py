"""spam-filter: fingerprints survive small changes and tell unrelated mail apart (real corpus mail)."""

from __future__ import annotations

import random

import pytest
from spam_helpers import corpus_dir, mutate, plain_spams

from streams.spam.fingerprint import (
    BINS,
    attachment_distance,
    attachment_hashes,
    signature,
    signature_bytes,
    signature_from_bytes,
    similarity,
    token_hash,
    token_hashes,
)
from streams.spam.normalize import Attachment
from streams.spam.patterns import PatternStore
from streams.spam.scoring import SpamFilter
from streams.spam.settings import SpamSettings

SETTINGS = SpamSettings()


def sig_of(raw: bytes) -> tuple[int, ...]:
    sig = SpamFilter(SETTINGS).features(raw).print.signature
    assert sig is not None
    return sig


def test_token_hash_is_stable_across_processes_and_versions() -> None:
    # XXH3 of the UTF-8, not Python's salted hash(): these values are stored in Kafka and compared on every node
    assert token_hash("spam") == 13252761902675072545
    assert token_hash("\x01url example.com") == 16450243267810565953
    assert token_hashes(["spam", "\ud800x"]) == [13252761902675072545, token_hash("\ud800x")]  # a lone surrogate too


def test_signature_of_identical_sets_is_identical_and_of_disjoint_sets_differs() -> None:
    rng = random.Random(1)
    a = {rng.getrandbits(64) for _ in range(300)}
    b = {rng.getrandbits(64) for _ in range(300)}
    sa, sb = signature(a, 12), signature(b, 12)
    assert sa is not None and sb is not None and len(sa) == BINS
    assert signature(set(a), 12) == sa and similarity(sa, sa) == 1.0
    assert similarity(sa, sb) < 0.1
    assert signature(set(list(a)[:5]), 12) is None  # too short to fingerprint


def test_similarity_estimates_jaccard() -> None:
    rng = random.Random(2)
    shared = {rng.getrandbits(64) for _ in range(600)}
    a = shared | {rng.getrandbits(64) for _ in range(200)}
    b = shared | {rng.getrandbits(64) for _ in range(200)}
    sa, sb = signature(a, 12), signature(b, 12)
    assert sa is not None and sb is not None
    assert abs(similarity(sa, sb) - 600 / 1000) < 0.12


def test_signature_bytes_round_trip() -> None:
    rng = random.Random(3)
    sig = signature({rng.getrandbits(64) for _ in range(50)}, 12)
    data = signature_bytes(sig)
    assert len(data) == BINS * 4 and signature_from_bytes(data) == sig
    assert signature_from_bytes(b"") is None and signature_bytes(None) == b""
    with pytest.raises(ValueError):
        signature_from_bytes(b"\x00" * 7)


def test_spam_with_changed_whitespace_names_and_tracking_still_matches() -> None:
    spams = plain_spams(15)
    assert len(spams) == 15
    for raw in spams:
        original = sig_of(raw)
        for name, salt in (("Mary Smith", "a1"), ("Wolfgang Amadeus Mozart-Schmidt", "zz9")):
            assert similarity(original, sig_of(mutate(raw, name, salt))) >= SETTINGS.pattern_similarity


def test_unrelated_ham_does_not_match_spam() -> None:
    spams = [sig_of(raw) for raw in plain_spams(15)]
    hams = sorted(corpus_dir("easy_ham").iterdir())[:300]
    worst = 0.0
    for path in hams:
        sig = SpamFilter(SETTINGS).features(path.read_bytes()).print.signature
        if sig is not None:
            worst = max(worst, *(similarity(sig, s) for s in spams))
    assert worst < SETTINGS.pattern_similarity


def test_store_finds_mutated_spam_through_the_lsh_index_among_many_patterns() -> None:
    spam_filter = SpamFilter(SETTINGS)
    spams = plain_spams(15)
    store = PatternStore(SETTINGS)
    ids = []
    for n, raw in enumerate(spams):  # a campaign's second mail joins the first one's pattern
        (pattern, *_) = store.apply_report(spam_filter.features(raw).print, "spam", "user", "u@x.test", f"m{n}", 1000)
        ids.append(pattern.pattern_id)
    assert 12 <= len(set(ids)) <= 15
    rng = random.Random(4)
    for n in range(3000):  # noise: unrelated signatures
        noise = signature({rng.getrandbits(64) for _ in range(200)}, 12)
        store.apply_report(_print(noise), "spam", "user", "u@x.test", f"noise{n}", 1000)
    for n, raw in enumerate(spams):
        matches = store.match(spam_filter.features(mutate(raw, "Bob", f"s{n}")).print)
        assert matches and matches[0].label == "spam" and matches[0].pattern_id == ids[n]


def _print(sig: tuple[int, ...] | None):
    from streams.spam.patterns import MailPrint

    return MailPrint(sig)


def test_attachment_fuzzy_hash_survives_small_edits() -> None:
    rng = random.Random(5)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(400)]
    doc = b" ".join(rng.choice(words) for _ in range(3000))
    edited = doc[:5000] + b"INVOICE 2024-0042 for Mr Smith" + doc[5000:]
    other = b" ".join(rng.choice(words[:200]) for _ in range(3000))
    (h1,), (h2,), (h3,) = (attachment_hashes([Attachment("f", "application/pdf", d)], 1 << 20)
                           for d in (doc, edited, other))
    assert attachment_distance(h1, h2) <= SETTINGS.attachment_max_distance
    assert attachment_distance(h1, h3) > SETTINGS.attachment_max_distance
    assert attachment_hashes([Attachment("f", "text/plain", b"tiny")], 1 << 20) == []
