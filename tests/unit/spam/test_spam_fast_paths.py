"""spam-filter: each fast path gives exactly what the plain way gives (so fingerprints and scores stay put)."""

from __future__ import annotations

import math
import random
import re
from email.message import Message
from hashlib import blake2b
from urllib.parse import parse_qsl

import pytest

from streams.spam import classifier, fingerprint, mime, normalize, urls
from streams.spam.classifier import Clue, TokenClassifier, chi2q
from streams.spam.fingerprint import BINS, shingles, signature, similarity, token_hash
from streams.spam.lsh import SignatureIndex

_ROTATE = 0x9E3779B1


def reference_signature(hashes: set[int], min_shingles: int) -> list[int] | None:
    """The one-permutation MinHash as first written: sort, least hash per bin, densify by rotation."""
    if len(hashes) < min_shingles:
        return None
    sig = [-1] * BINS
    for h in sorted(hashes, reverse=True):
        sig[h >> 57] = h & 0xFFFFFFFF
    out = list(sig)
    for i in range(BINS):
        if sig[i] < 0:
            dist = 1
            while sig[(i + dist) % BINS] < 0:
                dist += 1
            out[i] = (sig[(i + dist) % BINS] + dist * _ROTATE) & 0xFFFFFFFF
    return out


@pytest.mark.parametrize("size", [12, 40, 300, 5000])
def test_signature_equals_the_reference_minhash_dense_or_sparse(size: int) -> None:
    rng = random.Random(size)
    hashes = {rng.getrandbits(64) for _ in range(size)} | {0, 2**64 - 1}
    sig = signature(hashes, 12)
    assert sig is not None and list(sig) == reference_signature(hashes, 12)


def test_signature_counts_each_shingle_once() -> None:
    words = [token_hash(w) for w in "buy now buy now buy now buy now".split()]
    repeated = shingles([], words * 20, [])
    assert len(repeated) > 12 and len(set(repeated.tolist())) < 12
    assert signature(repeated, 12) is None  # many shingles, too few different ones


def test_shingles_are_the_three_word_xor_shift() -> None:
    rng = random.Random(7)
    subject, body = [rng.getrandbits(64) for _ in range(4)], [rng.getrandbits(64) for _ in range(50)]
    words = subject + [0x5EB5EB5EB5EB5EB5] + body
    expected = {a ^ (b >> 1) ^ (c >> 2) for a, b, c in zip(words, words[1:], words[2:])}
    url = token_hash("\x01url " + urls.url_skeleton("example.com/a/123"))
    assert set(shingles(subject, body, ["example.com/a/123"]).tolist()) == expected | {url}


def test_a_known_mail_keeps_its_signature() -> None:
    # pinned (XXH3 word hashes; the MinHash checked against the first, pure-Python one above): a change here
    # invalidates every stored pattern
    words = [token_hash(w) for w in ("cheap meds online order today and save more money " * 3).split()]
    sig = signature(shingles([token_hash("offer")], words, ["example.com/buy?id=1"]), 12)
    assert sig is not None
    assert blake2b(sig.tobytes(), digest_size=8).hexdigest() == "f5ead6acdb54eb67"


def reference_classify(c: TokenClassifier, tokens: list[int]) -> tuple[float, list[Clue]]:
    clues = [clue for clue in map(c._token, tokens) if clue is not None]
    best = sorted(clues, reverse=True)[: c.max_tokens]
    if not best:
        return 0.5, []
    ham = 1.0 - chi2q(-2.0 * math.fsum(x[1] for x in best), 2 * len(best))
    spam = 1.0 - chi2q(-2.0 * math.fsum(x[2] for x in best), 2 * len(best))
    return (spam - ham + 1.0) / 2.0, best


@pytest.mark.parametrize("count", [5, 100, 400])  # one by one, as arrays, and more than max_tokens
def test_classifier_memo_gives_what_each_token_gives(count: int) -> None:
    rng = random.Random(count)
    c = TokenClassifier(max_tokens=150)
    vocabulary = [rng.getrandbits(64) for _ in range(600)]
    for n in range(60):
        c.learn(set(rng.sample(vocabulary, 80)), is_spam=n % 3 == 0)
    tokens = rng.sample(vocabulary, count) + [rng.getrandbits(64) for _ in range(5)]  # and unknown ones
    verdict = c.classify(tokens)
    prob, best = reference_classify(c, tokens)
    assert verdict.best == best and verdict.prob == prob
    assert c.classify(tokens).best == best  # from the memo
    spammy = verdict.prob >= 0.5
    assert all((p > 0.5) == spammy for p, _ in verdict.clues(5)) and len(verdict.clues()) == len(best)
    on_side = [(math.exp(c[1]), c[3]) for c in best if (c[1] > c[2]) == spammy][:5]  # sorted first, then the side
    assert verdict.clues(5) == on_side
    assert [(p, tokens[at]) for p, at in verdict.clue_positions(5)] == on_side


@pytest.mark.parametrize("url", [
    "http://Example.COM//a//b/", "https://a.b.c./x", "http://1234/", "http://xn--bcher-kva.ch/x", "www.foo.com/bar/",
    "http://a.com:8080/x", "HTTP://FOO.com/A_b~c!", "http://user@a.com/", "http://a.com/%41b", "http://a.com/x#frag",
    "http://a.com/\u00e9t\u00e9", "https://shop.example.co.uk/p/1234?utm_source=x&id=7", "http://.../", "http://-/",
    "http://a.com/x?b=2&a=1&b=1", "http://a.com?x", "http://a.com/p?k=&j&utm_medium=m", "http://a.com/p?utm_x=1",
    "http://a.com/p?q=a%20b", "http://a.com/p?q=a+b", "http://a.com/p?a=1&&b=2", "http://a.com/p?a=b=c", "http://a.com/p?",
])
def test_simple_urls_normalise_as_the_general_path_does(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = urls.normalize_url_py(url)
    assert urls.normalize_url.__wrapped__(url) == fast  # the Rust simple path, where built
    monkeypatch.setattr(urls, "_SIMPLE_URL_RE", re.compile(r"(?!)"))  # never matches: the general path
    assert fast == urls.normalize_url_py(url)


@pytest.mark.parametrize("query", ["", "a=1", "B=2&a=1&b", "a=1&&b=2", "=x&k=", "x=a%20b&y=1", "q=a+b", "k=v=w"])
def test_url_skeleton_keys_are_what_parse_qsl_gives(query: str) -> None:
    keys = sorted({k.lower() for k, _ in parse_qsl(query, keep_blank_values=True)})
    for skeleton in (urls.url_skeleton.__wrapped__, urls.url_skeleton_py):
        assert skeleton("a.com/p" + ("?" + query if query else "")) == "a.com/p" + ("?" + "&".join(keys) if keys else "")


@pytest.mark.parametrize("head", ["", "a: b", "a: b\r\nc: d", "a: b\r\n c\r\nd: e\r", "a: b\n\tc\n d\ne: f",
                                  " lead\nx: y", "a\r\r\nb", "a: b\n\nc", "a: b\n\r\nc", "From x\na: b\r"])
def test_header_fields_split_where_the_regex_splits(head: str) -> None:
    assert mime._split_fields(head) == mime._FIELD_SPLIT_RE.split(head)


@pytest.mark.parametrize("line", ["from mx.example.com (mx.example.com [10.1.2.3]) by a.b.org with esmtp id x.y.z",
                                  "from esmtpaaaaaaaaaaaaaaaaaaa.. by -.- (.) a..b x-y.z9 ..", "nothing dotted here", ""])
def test_received_runs_are_what_the_backtracking_regex_finds(line: str) -> None:
    assert classifier._RECEIVED_DOTTED_RE.findall(line) == re.findall(r"[a-z0-9.-]*\.[a-z0-9.-]*", line)


@pytest.mark.parametrize("text", ["", "\n", "a: b", "a: b\n\nbody", "a: b\r\n\r\nbody", "a: b\n\r\nbody",
                                  "a: b\r\n\nbody", "\r\n\r\n", "a\r\r\n\n", "a: b\nc: d\n\n\nx\n\ny", "x\n"])
def test_header_block_ends_where_the_regex_says(text: str) -> None:
    found = re.search(r"\r?\n\r?\n", text)
    expected = (text, "") if found is None else (text[: found.start()], text[found.end() :])
    if text.startswith(("\n", "\r\n")):
        expected = ("", text.split("\n", 1)[1])
    assert mime._split_head(text) == expected


@pytest.mark.parametrize("value", [None, "text/html", 'text/plain; charset="ISO-8859-1"', "TEXT/plain;charset=utf-8",
                                   "text/plain; charset*=us-ascii'en'utf-8", "bogus", "text/plain; charset=\u00e9"])
def test_content_type_memo_answers_as_the_stdlib(value: str | None) -> None:
    msg = Message(policy=mime.POLICY)
    if value is not None:
        msg.set_raw("Content-Type", value)
    assert mime.content_type(msg) == (msg.get_content_type(), msg.get_content_charset())


def test_top_level_fields_are_all_returned_and_only_content_fields_kept() -> None:
    msg, fields = mime.parse(b"Received: x\nSubject: hi\nContent-Type: text/plain; charset=utf-8\n\nbody\n")
    assert [name for name, _ in fields] == ["Received", "Subject", "Content-Type"]
    assert msg.keys() == ["Content-Type"] and mime.content_type(msg) == ("text/plain", "utf-8")


def test_signature_index_compares_like_similarity_and_forgets() -> None:
    rng = random.Random(5)
    base = {rng.getrandbits(64) for _ in range(400)}
    sigs = {f"p{n}": signature(set(rng.sample(sorted(base), 300)), 12) for n in range(100)}  # past the first 64 rows
    index = SignatureIndex()
    for key, sig in sigs.items():
        assert sig is not None
        index.add(key, sig)
    query = signature(base, 12)
    assert query is not None
    found = dict(index.candidates(query, 1000))
    assert found and all(sim == similarity(query, sigs[key]) for key, sim in found.items())  # type: ignore[arg-type]
    for key in sigs:
        index.discard(key)
    assert len(index) == 0 and index.candidates(query, 1000) == []


@pytest.mark.parametrize("x2", [0.0, 0.5, 3.0, 40.0, 299.0, 300.0, 301.0, 900.0, 1500.0])
def test_chi2q_stops_early_only_where_the_rest_cannot_change_the_sum(x2: float) -> None:
    m = x2 / 2.0
    term = total = math.exp(-m)
    for i in range(1, 150):
        term *= m / i
        total += term
    assert chi2q(x2, 300) == min(total, 1.0)


@pytest.mark.parametrize("v", [2, 10, 100, 300])
def test_one_minus_chi2q_skips_the_sum_only_where_it_rounds_away(v: int) -> None:
    for x2 in [0.0, 0.1, 1.0, 5.0, 50.0, v * 0.9, v * 1.1, v + 40.0, 2.0 * v, 5.0 * v, 1e4]:
        assert classifier.one_minus_chi2q(x2, v) == 1.0 - chi2q(x2, v)


@pytest.mark.parametrize("text", ["", "plain words here", " ..lead trail.. (x) a.b. ...", "don't $0.00 e-mail --",
                                  "a\x1cb\x1fc\x85d\u3000e\u2028f\xa0g", "\"'()[]{}<>.,;:!?*|`~^+=/\\_#&@%-",
                                  "x-.-y .-z-. caf\u00e9! \u65e5\u672c\u8a9e", "a\tb\nc\rd\x0be\x0cf"])
def test_words_are_the_split_words_with_edges_stripped(text: str) -> None:
    folded = re.sub("[1-9]", "0", text)
    if not folded.isascii():
        folded = fingerprint._CJK_RE.sub(r" \g<0> ", folded)
    expected = [w.strip(fingerprint._EDGES) for w in folded.split()]
    assert fingerprint.words(text) == [w for w in expected if w]


def test_classifier_memo_is_bounded_and_refilled(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(9)
    c = TokenClassifier()
    vocabulary = [rng.getrandbits(64) for _ in range(300)]
    for n in range(40):
        c.learn(set(rng.sample(vocabulary, 60)), is_spam=n % 2 == 0)
    first, second = vocabulary[:100], vocabulary[100:250]
    expected = c.classify(second).best
    monkeypatch.setattr(classifier, "MEMO_LIMIT", 50)
    mixed = first + second[:10]  # some memoised, some not, and the memo past its limit
    assert c.classify(mixed).best == reference_classify(c, mixed)[1] and len(c._memo) == len(mixed)
    assert c.classify(second).best == expected


def test_plain_addresses_parse_as_the_stdlib_parses_them() -> None:
    """The regex shortcut of ``normalize._parseaddr`` answers as ``email.utils.parseaddr`` for what it takes."""
    from email.utils import parseaddr

    rng = random.Random(4)
    pieces = ["a", "Zz", "0", "_", "+", "=", "%", "-", "x.y", ".", "..", "", " ", "\t", "'", '"', "\\", "<", ">",
              "@", ",", "(", ")", ":", ";", "[", "]", "é"]
    values = ["a@b.c", " Ann  Lee\t<a.b+c@d-e.f> ", '"Lee, Ann" <x@y>', '""<x@y>', ". <a@b>", "a..b@c", "<a@b>",
              "a@b.", '"a\\"b" <c@d>', "Ann <a@b> (x)", "a@b, c@d", "A <@r:a@b>"]
    for _ in range(30_000):
        values.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 9))))
        local = "".join(rng.choice(["a", "b.c", ".", "-", "+"]) for _ in range(rng.randint(1, 3)))
        domain = "".join(rng.choice(["x", "y.z", ".", "-"]) for _ in range(rng.randint(1, 3)))
        name = "".join(rng.choice(["A", " ", "\t", ".", "'", "_", '"', "b", ""]) for _ in range(rng.randint(0, 4)))
        values.append(rng.choice([f"{local}@{domain}", f"{name} <{local}@{domain}>", f'"{name}" <{local}@{domain}>',
                                  f" {local}@{domain}\t", f"{name}<{local}@{domain}> "]))
    taken = 0
    for value in values:
        normalize._parseaddr.cache_clear()
        taken += normalize._PLAIN_ADDRESS_RE.fullmatch(value) is not None
        assert normalize._parseaddr(value) == parseaddr(value), value
    assert taken > 5_000
