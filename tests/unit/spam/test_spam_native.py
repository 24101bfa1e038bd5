"""spam-filter: the Rust extension gives exactly what the Python reference gives, on every mail of the corpus.

``streams.spam._native`` (crate in streams/spam/rust) replaces, where it is built, the Python code of
``textprints.text_prints_py``, ``normalize.split_urls_py`` and ``_strip_markup``, ``mime._set_headers_py``,
``classifier.TokenClassifier`` and ``lsh.SignatureIndex``. These tests hold the two to the same values,
so that fingerprints stored by one node match those of another whichever it runs.
"""

from __future__ import annotations

import contextlib
import random
import sys
from array import array
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from streams.spam import _native, classifier, lsh, mime, normalize, rules, textprints, urls
from streams.spam.classifier import NativeTokenClassifier, TokenClassifier, extra_tokens
from streams.spam.fingerprint import words
from streams.spam.scoring import Report, SpamFilter, clear_caches
from streams.spam.settings import SpamSettings

from spam_helpers import corpus_dir

FOLDERS = ("easy_ham", "easy_ham_2", "hard_ham", "hard_ham_2", "spam", "spam_2")
_WITH_NATIVE = (classifier, lsh, mime, normalize, textprints, urls)


@pytest.fixture(scope="module")
def corpus_paths() -> list[str]:
    return [str(p) for folder in FOLDERS for p in sorted(corpus_dir(folder).iterdir())
            if p.is_file() and not p.name.startswith("cmds")]


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, bool, bytes]]:
    """(name, is spam, raw) of every mail of the corpus."""
    out = []
    for folder in FOLDERS:
        for path in sorted(corpus_dir(folder).iterdir()):
            if path.is_file() and not path.name.startswith("cmds"):
                out.append((f"{folder}/{path.name}", folder.startswith("spam"), path.read_bytes()))
    return out


@contextlib.contextmanager
def python_only() -> Iterator[None]:
    """The spam modules as where the extension is not built."""
    saved = [m._native for m in _WITH_NATIVE]
    for module in _WITH_NATIVE:
        module._native = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for module, native in zip(_WITH_NATIVE, saved):
            module._native = native  # type: ignore[assignment]


def test_extract_is_the_same_with_and_without_the_extension(corpus: list[tuple[str, bool, bytes]]) -> None:
    """MIME header fields, HTML to text and the URL split, end to end: every field of every mail."""
    for name, _, raw in corpus:
        native = normalize.extract(raw)
        with python_only():
            reference = normalize.extract(raw)
        assert native == reference, name


def test_text_prints_are_the_python_ones(corpus: list[tuple[str, bool, bytes]]) -> None:
    """Words, tokens, hashes and signatures of every mail (as the patterns store and compare them)."""
    for name, _, raw in corpus:
        ex = normalize.extract(raw)
        extra = extra_tokens(ex, "sender@example.com", ("rcpt@example.com",))
        native = textprints.text_prints(ex.subject, ex.text, extra, ex.urls, 12)
        reference = textprints.text_prints_py(ex.subject, ex.text, extra, ex.urls, 12)
        assert list(native.tokens) == list(reference.tokens), name
        assert native.hashes == reference.hashes, name
        assert native.signature == reference.signature, name
        assert [native.tokens[i] for i in (0, -1)] == [reference.tokens[i] for i in (0, -1)]


def test_odd_words_are_counted_as_python_counts_them(corpus: list[tuple[str, bool, bytes]]) -> None:
    """The obfuscation rules' word counts (amounts, percentages, m0rtgage, v1agra) on every mail, and edge cases."""
    texts = [ex.subject + " " + ex.text[:rules.RULES_TEXT_CHARS] for ex in (normalize.extract(raw) for _, _, raw in corpus)]
    texts += ["", "$5 $5, $5. 50% 50%! v1agra m0rtgage1 (v!agra) me.ds -c|al1s- 12345 ab1 a\x1cv1agra\x1f$9",
              "x" * 30 + "v1agra", "rx_ ma1l _rx_ l0an$ $ % $% 5%5"]
    ascii_texts = 0
    for text in texts:
        native = rules._ODD_WORDS.scan(text) if rules._ODD_WORDS is not None else None
        if native is None:
            assert not text.isascii()
            continue
        ascii_texts += 1
        assert rules.OddWords(*native) == rules._odd_words_py(text), text[:80]
    assert ascii_texts > 5000


def test_html_parts_strip_as_the_regexes_do(corpus: list[tuple[str, bool, bytes]]) -> None:
    docs = 0
    for name, _, raw in corpus:
        msg, _ = mime.parse(raw)
        _, markup = normalize._texts(msg, normalize.Extracted(), 64, 60_000)
        for doc in filter(str.isascii, markup):
            docs += 1
            assert _native.html_to_text(doc) == normalize._strip_markup(doc), name
    assert docs > 1000


@pytest.mark.parametrize("markup", [
    "", "<", ">", "<<>>", "a<b", "<!-- x", "a<!--x-->b<!---->c", "<script>x", "<SCRIPT a=1>x</script >y</Script>z",
    "<style>a</style\t>b<head></head>", "<scripts>x</scripts>", "<title/>t</title>", "< / BR >x<br/>y<hr", "<p2>",
    "<h7>", "<h1 >x", "<Table><thead>", 'href="a', "xhref=a href = 'b c' SRC=\"\" action=d> background=",
    "a_href=x bhref=y 1src=z", "href=\x1cx\x1fy", "<a href=x\x0bz>",
])
def test_markup_edge_cases(markup: str) -> None:
    assert _native.html_to_text(markup) == normalize._strip_markup(markup)


@pytest.mark.parametrize("text", [
    "", " ", "www.", "www.a", "http://", "http:// x", "https://a b", "xhttp://a", "wwww.b", "see http://a.b/c?d=e&f)g",
    "a\u2003b\x1c\x1dc\x85\u3000d", "caf\u00e9 http://\u00e9.x \u4e2d\u6587", "hhttps://x", "www.x<y", "w\nww.z",
])
def test_url_split_edge_cases(text: str) -> None:
    assert _native.split_urls(text) == normalize.split_urls_py(text)


@pytest.mark.parametrize("head", [
    "", "\n", "\r", "a: b\r\n c\r\nd: e\r", " x: y\nFrom x\nz", "From me\nA:b", "A : b\nB:\t\tc\n\n",
    "Content-Type: x\ncontent-id: y\nContent: z", "X: " + "v" * 3000, ":x\nA:\n\tb",
])
def test_header_field_edge_cases(head: str) -> None:
    for fields in ([], None):
        native, reference = Message(policy=mime.POLICY), Message(policy=mime.POLICY)
        native_fields, reference_fields = (None, None) if fields is None else ([], [])
        mime._set_headers(native, head, native_fields)
        mime._set_headers_py(reference, head, reference_fields)
        assert native._headers == reference._headers and native_fields == reference_fields  # type: ignore[attr-defined]
        assert list(map(str, native.defects)) == list(map(str, reference.defects))


@pytest.mark.parametrize("value", [
    "", " a ", "a\nb", "a\r\n\t b", "\r\n", "a\r\r\n  b\n\nc", "x\n", "\u3000a\u2003\n\u00a0", "a\rb\n\t\tc\r",
])
def test_unfold_as_the_regex(value: str) -> None:
    assert _native.unfold_all([value, value + " z"]) == [normalize.unfold(value), normalize.unfold(value + " z")]


def test_urls_normalise_as_python_does(corpus: list[tuple[str, bool, bytes]]) -> None:
    found = ["www.A.com", "HTTP://a.b//c//?x=1&utm_source=y&b=", "http://1234/", "http://xn--e1a.b/", "http://a.b/?",
            "http://a.b/?a&&b", "http://a.b?k=v=w", "<https://a.b/c/>.", " http://\u00e9.b/ ", "http://a.b:80/x",
            "http://.../", "http://a.b/p#f", "http://a.b/%41", "\thttps://x.y/a\\b?EMAIL=1&Ref=2&z=3", "ftp://a.b/",
            "http://a.b:8080/x", "http://a.b:0080/", "http://a.b:443", "http://a.b:/x", "http://a.b:99999/", "http://a.b:65536",
            "http://a.b:123456/", "http://a:b@c.d/", "http://a.b/?x=1#f?y", "http://a.b#", "#x", "top", "mailto:a@b",
            "http:a.b", "http:/a.b", "ht\ttp://a.b/", "\x01http://a.b/", "http://a.b/c d", "HTTPS://A.B:443/X?Y=1#Z",
            "javascript:x()", "http://1.2.3.4:81/", "http://[::1]:80/", "www.a.b:8000/p?q=1#r", "http://a.b/#?x=1"]
    for _, _, raw in corpus:
        msg, _ = mime.parse(raw)
        plain, markup = normalize._texts(msg, normalize.Extracted(), 64, 60_000)
        for doc in markup:
            plain.append(normalize.html_to_text(doc)[0])
            found += normalize.html_to_text(doc)[1]
        found += normalize.split_urls(normalize._fold_letters(" ".join(plain)))[1]
    forms = _native.UrlForms(sorted(urls.TRACKING_PARAMS), list(urls.TRACKING_PREFIXES))
    simple = 0
    for url in found:
        form = forms.simple(url)
        simple += form is not None
        assert form is None or (form or None) == urls.normalize_url_py(url), url
    assert simple > len(found) // 2
    forms_of_all = [f for f in map(urls.normalize_url_py, found) if f]
    forms_of_all += ["a.b/x1234567890abc/Y0000000000000z/abcdefghijklmn0/-_0aaaaaaaaaa?B=1&a&b=2&&A=", "a.b/?x=%41&y+z",
                     "a.b/0aaaaaaaaaaa/aaaaaaaaaaa0/aaaaaaaaaaaaaa", "\u00e9.b/1", "a.b/" + "a0" * 40, "a.b?", "a.b"]
    for form in forms_of_all:
        skeleton = _native.UrlForms.skeleton(form)
        assert skeleton is None or skeleton == urls.url_skeleton_py(form), form


def test_fields_group_by_lower_case_name() -> None:
    fields = [("Received", "a"), ("X-Y", "\udcff"), ("received", "b"), ("SUBJECT", "s"), ("x-y", "c")]
    with python_only():
        reference = normalize.raw_headers(fields)
    assert _native.group_fields(fields) == reference and list(_native.group_fields(fields)) == list(reference)


def test_words_cut_every_character_as_python_does() -> None:
    """White space, edge punctuation and CJK as Python's str methods and regexes see them, for every code point."""
    text = "".join(f"a{chr(c)}b{chr(c)} {chr(c)}7x " for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)
    assert _native.words(text) == words(text)


def test_a_lone_surrogate_falls_back_to_python() -> None:
    prints = textprints.text_prints("sub\udce9ject", "body \udcff text", ["x:\ud800"], [], 1)
    reference = textprints.text_prints_py("sub\udce9ject", "body \udcff text", ["x:\ud800"], [], 1)
    assert list(prints.tokens) == list(reference.tokens) and prints.hashes == reference.hashes
    assert normalize.split_urls("a \udcff http://x") == normalize.split_urls_py("a \udcff http://x")


def _token_sets(corpus: list[tuple[str, bool, bytes]], n: int) -> list[tuple[bool, array]]:
    out = []
    for _, spam, raw in random.Random(5).sample(corpus, n):
        ex = normalize.extract(raw)
        prints = textprints.text_prints_py(ex.subject, ex.text, extra_tokens(ex), ex.urls, 12)
        out.append((spam, array("Q", sorted(prints.hashes))))
    return out


def test_the_native_classifier_gives_the_python_verdicts(corpus: list[tuple[str, bool, bytes]]) -> None:
    mails = _token_sets(corpus, 900)
    python, native = TokenClassifier(max_tokens=60), NativeTokenClassifier(max_tokens=60)
    for spam, tokens in mails[:600]:
        for c in (python, native):
            c.learn(tokens, spam, 2)
    for spam, tokens in mails[:100]:  # unlearning is exact too
        for c in (python, native):
            c.learn(tokens, spam, -1)
    for spam, tokens in mails[100:300]:  # down to no count: the native table removes them
        for c in (python, native):
            c.learn(tokens, spam, -2)
    for spam, tokens in mails[150:200]:  # and back
        for c in (python, native):
            c.learn(tokens, spam, 1)
    assert (python.nspam, python.nham) == (native.nspam, native.nham)
    for _, tokens in mails[500:] + [(False, array("Q")), (True, array("Q", [1, 2, 3]))]:
        tokens = array("Q", random.Random(len(tokens)).sample(list(tokens), len(tokens)))  # not sorted
        a, b = python.classify(tokens), native.classify(tokens)
        assert a.prob == b.prob
        assert a.best == b.best and a.clues(5) == b.clues(5) and a.clues() == b.clues()
        assert a.clue_positions(5) == b.clue_positions(5) and a.clue_positions() == b.clue_positions()


def test_the_native_index_finds_the_python_candidates(corpus: list[tuple[str, bool, bytes]]) -> None:
    sigs = []
    for _, _, raw in random.Random(8).sample(corpus, 1500):
        ex = normalize.extract(raw)
        sig = textprints.text_prints_py(ex.subject, ex.text, [], ex.urls, 12).signature
        if sig is not None:
            sigs.append(sig)
    python, native = lsh.SignatureIndex(), _native.SignatureIndex()
    for n, sig in enumerate(sigs):
        for index in (python, native):
            index.add(f"p{n % 1100}", sig)  # the last ones replace earlier keys
    for n in range(0, 1100, 7):
        for index in (python, native):
            index.discard(f"p{n}")
    assert len(python) == len(native)
    for sig in sigs[::3]:
        assert dict(native.candidates(sig, 10_000)) == dict(python.candidates(sig, 10_000))
        few = native.candidates(sig, 2)
        assert len(few) == min(2, len(python.candidates(sig, 10_000)))


def test_scores_are_the_same_with_and_without_the_extension(corpus: list[tuple[str, bool, bytes]]) -> None:
    mails = random.Random(3).sample(corpus, 1000)
    results = []
    for kind in ("native", "python"):
        with python_only() if kind == "python" else contextlib.nullcontext():
            clear_caches()
            spam_filter = SpamFilter(SpamSettings(), node="t")
            for n, (name, spam, raw) in enumerate(mails[:600]):
                spam_filter.learn(Report(name, "spam" if spam else "ham", "t", 1_700_000_000_000 + n, raw))
            scores = [spam_filter.score(raw, now_ms=1_700_000_001_000) for _, _, raw in mails[600:]]
        results.append([(s.score, s.verdict, sorted(s.matched), s.reasons[-1:]) for s in scores])
    assert results[0] == results[1]
    assert isinstance(SpamFilter().classifier, NativeTokenClassifier)


def test_the_extension_is_built_from_this_tree() -> None:
    assert Path(_native.__file__).parent == Path(textprints.__file__).parent


def test_random_urls_normalise_as_python_does() -> None:
    rng = random.Random(11)
    parts = ["http://", "https://", "HTTP://", "www.", "a", "B", "0", "9", ".", "-", "_", "/", "//", ":", ":80", ":443",
             ":8080", ":0", ":65536", "?", "&", "=", "#", "%41", "+", "~", "!", "@", "utm_x", "ref", "EMAIL", "xn--", "é",
             " ", "\t", "\\", "<", ">", "'", '"', ";", ",", "[", "]", "mailto:", "1.2.3.4", "::", "(", ")", "*", "$"]
    decided = 0
    for _ in range(30_000):
        url = rng.choice(["http://", "https://", "www.", ""]) + "".join(rng.choice(parts) for _ in range(rng.randint(1, 10)))
        form = urls._URL_FORMS.simple(url)  # type: ignore[union-attr]
        if form is not None:
            decided += 1
            assert (form or None) == urls.normalize_url_py(url), url
    assert decided > 5_000


_FALLBACK_RUN = """
import json, sys
sys.modules["streams.spam._native"] = None  # the extension cannot be imported: the facade must choose Python
from streams.spam.native import NATIVE
from streams.spam.scoring import SpamFilter
from streams.spam.classifier import TokenClassifier
assert NATIVE is None and isinstance(SpamFilter().classifier, TokenClassifier)
paths = json.load(sys.stdin)
spam_filter = SpamFilter()
print(json.dumps([spam_filter.score(open(p, "rb").read(), now_ms=1).score for p in paths]))
"""


def test_a_run_with_the_fallback_forced_scores_as_the_extension_does(corpus_paths: list[str]) -> None:
    """A fresh interpreter in which the extension cannot be imported: ``streams.spam.native`` chooses the
    Python code once, for every module, and the scores (base model, rules, classifier) are the same."""
    import json
    import subprocess
    import sys

    paths = random.Random(5).sample(corpus_paths, 300)
    run = subprocess.run([sys.executable, "-c", _FALLBACK_RUN], input=json.dumps(paths), capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).resolve().parents[3])
    assert run.returncode == 0, run.stderr
    spam_filter = SpamFilter()
    assert json.loads(run.stdout) == [spam_filter.score(Path(p).read_bytes(), now_ms=1).score for p in paths]
