"""spam-filter: normalisation of raw mail (MIME, charsets, HTML, Unicode, URLs). No I/O but the corpus read."""

from __future__ import annotations

import base64
import time

import pytest
from spam_helpers import corpus_dir, mail

from streams.spam.normalize import decode_bytes, extract, fold, html_to_text
from streams.spam.urls import normalize_url, registrable_domain, url_skeleton


def test_fold_maps_confusables_zero_width_fullwidth_case_and_whitespace() -> None:
    # Cyrillic Р, а, у, l-lookalike Ӏ; zero-width space and soft hyphen; fullwidth letters; accents
    assert fold("\u0420\u0430\u0443\u0420\u0430l  LOG\u200bIN\u00ad\n\tnow") == "paypal login now"
    assert fold("ＦＲＥＥ ｍｏｎｅｙ") == "free money"
    assert fold("Crème BRÛLÉE") == "creme brulee"
    assert fold("plain ascii") == "plain ascii"


def test_declared_charset_is_not_trusted() -> None:
    utf8 = "Grüße".encode()
    assert decode_bytes(utf8, "us-ascii") == "Grüße"  # declared wrong: UTF-8 wins
    assert decode_bytes(utf8, "x-no-such-charset") == "Grüße"
    assert decode_bytes(b"caf\xe9", "utf-8") == "café"  # not UTF-8 at all: cp1252
    assert decode_bytes(b"\x81\x8d", "base64") == "\ufffd\ufffd"  # a bytes codec as charset, undefined bytes


def test_seven_bit_iso_2022_text_is_decoded_by_its_charset() -> None:
    # ISO-2022-JP is ASCII bytes with escape sequences: read as ASCII it was escape-code gibberish
    jis = "しじみともものコラム".encode("iso-2022-jp")
    assert jis.isascii()
    assert decode_bytes(jis, "iso-2022-jp") == "しじみともものコラム"
    assert decode_bytes(b"plain", "iso-2022-jp") == "plain"


def test_html_to_text_drops_scripts_styles_comments_and_keeps_links() -> None:
    text, links = html_to_text(
        '<html><head><title>t</title><style>p{color:red}</style></head><body>'
        'Buy<!-- padding to break hashes -->Now <script>alert(1)</script>'
        '<a href="http://shop.test/x?utm_source=a">here</a> &amp; <b>save</b>&nbsp;50%<br>bye</body></html>'
    )
    assert fold(text) == "buynow here & save 50% bye"
    assert links == ["http://shop.test/x?utm_source=a"]


def test_html_comment_without_end_is_linear() -> None:
    began = time.perf_counter()
    html_to_text("<!--" * 50_000 + "text")
    assert time.perf_counter() - began < 1.0


@pytest.mark.parametrize(("url", "expected"), [
    ("HTTP://WWW.Shop.Test:80/Buy/?utm_source=mail&utm_medium=x&id=7&fbclid=abc#top", "www.shop.test/Buy?id=7"),
    ("https://shop.test/a//b/?b=2&a=1&gclid=z&mc_eid=q", "shop.test/a/b?a=1&b=2"),
    ("www.shop.test/offer", "www.shop.test/offer"),
    ("http://user:pw@evil.test/login", "evil.test/login"),
    ("http://3232235777/x", "192.168.1.1/x"),
    ("http://xn--pypal-4ve.test/", "p\u0430ypal.test"),  # IDNA decoded, the Cyrillic a kept (not folded)
    ("http://shop.test:8080/", "shop.test:8080"),
    ("mailto:a@b.test", None),
    ("http://[::1/", None),
])
def test_normalize_url(url: str, expected: str | None) -> None:
    assert normalize_url(url) == expected


def test_url_skeleton_blanks_what_varies_per_recipient() -> None:
    a = url_skeleton("shop.test/r/8f3a9c0d1e2b4f5a6b7c/offer123?id=42&u=alice")
    b = url_skeleton("shop.test/r/0b1c2d3e4f5a6b7c8d9e/offer9?u=bob&id=7")
    assert a == b == "shop.test/r/*/offer0?id&u"


def test_registrable_domain() -> None:
    assert registrable_domain("mail.shop.example.co.uk") == "example.co.uk"
    assert registrable_domain("www.shop.test") == "shop.test"
    assert registrable_domain("192.168.1.1") == "192.168.1.1"


def test_extract_multipart_with_lying_charset_base64_html_and_attachment() -> None:
    html = '<p>Hello Ünïcode <a href="http://Shop.Test/p?utm_campaign=z&amp;item=5">deal</a></p>'.encode()
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen?= <j@shop.test>\nTo: a@b.test, c@d.test\n"
        b"Subject: =?iso-8859-1?q?Gr=FC=DFe?= =?utf-8?b?8J+Yig==?=\n"
        b"Message-ID: <1@shop.test>\nDate: Mon, 1 Jan 2024 10:00:00 +0000\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b1"\n\n'
        b'--b1\nContent-Type: text/html; charset="us-ascii"\nContent-Transfer-Encoding: base64\n\n'
        + base64.encodebytes(html)
        + b'--b1\nContent-Type: application/octet-stream; name="a.bin"\nContent-Transfer-Encoding: base64\n\n'
        + base64.encodebytes(bytes(range(256)))
        + b"--b1--\n"
    )
    ex = extract(raw)
    assert ex.subject == "gruße😊"  # encoded words decoded, each by its own charset, then folded
    assert ex.text == "hello unicode deal"
    assert ex.urls == ["shop.test/p?item=5"]
    assert [(a.filename, a.content_type, len(a.data)) for a in ex.attachments] == [
        ("a.bin", "application/octet-stream", 256)]
    assert ex.headers.from_addr == "j@shop.test" and ex.headers.from_name == "jurgen"
    assert ex.headers.to_count == 2 and ex.html_only


def test_extract_never_raises_on_garbage() -> None:
    for raw in (b"", b"\x00\xff" * 1000, b"Subject: x\n\n" + b"\xff" * 100,
                b"Content-Type: multipart/mixed; boundary=\n\n--\n--",
                b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n!!!not base64!!!",
                b"Subject: =?utf-8?b?####?=\nFrom: <<<@@@>>>\n\nbody"):
        ex = extract(raw)
        assert isinstance(ex.text, str)


def test_hostile_parameter_header_is_capped_not_quadratic() -> None:
    # after spam_2/00471: Content-Type with thousands of empty parameters
    raw = (b"From: a@b.test\nContent-Type: multipart/mixed; " + b"; " * 200_000 + b'boundary="x"\n\n'
           b"--x\nContent-Type: text/plain; " + b"; " * 200_000 + b"charset=utf-8\n\nhello world\n--x--\n")
    began = time.perf_counter()
    extract(raw)
    assert time.perf_counter() - began < 1.0


def test_plain_mail_helper_round_trip() -> None:
    ex = extract(mail("Hi", "Visit http://a.test/?utm_source=x now", html=False))
    assert ex.text == "visit now" and ex.urls == ["a.test"] and not ex.html_only


@pytest.mark.parametrize("folder", ["easy_ham", "hard_ham", "spam", "spam_2"])
def test_extract_reads_real_corpus_mail(folder: str) -> None:
    paths = sorted(corpus_dir(folder).iterdir())[::7]
    texts = [extract(p.read_bytes()) for p in paths]
    assert sum(1 for ex in texts if ex.text) >= 0.95 * len(texts)  # nearly every mail has readable text
    assert all(not any("\r" in u or " " in u for u in ex.urls) for ex in texts)
