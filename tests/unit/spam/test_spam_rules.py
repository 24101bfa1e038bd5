"""spam-filter: the structural rules, the rule weights, and the base model a fresh install scores with."""

from __future__ import annotations

import random
import re

import pytest
from spam_helpers import CORPUS, corpus_dir, html_mail

from streams.spam import base, base_build, combine, rules
from streams.spam.classifier import STORE_HEADERS, header_tokens
from streams.spam.normalize import extract
from streams.spam.rules import rule_hits
from streams.spam.scoring import SpamFilter
from streams.spam.settings import SpamSettings

SALAD = ("the river basin lies north of the old capital and its climate is temperate with rainfall spread "
         "over the year the region was settled in the early medieval period and the cathedral was completed "
         "in the fourteenth century its population grew after the railway reached the valley ") * 4


def hits_of(raw: bytes) -> set[str]:
    return {h.removeprefix("rule:") for h in rule_hits(extract(raw), "offers@shop.test", ("alice@example.com",))}


def poisoned_pharmacy(salad: str = SALAD) -> bytes:
    """HTML pharmacy spam padded with encyclopaedia-style salad in hidden text: the family of Bayes
    poisoning that beat the classifier alone (issue 16)."""
    html = ("<html><body><table bgcolor='#ffffff'><tr><td><a href='http://203.0.113.9/rx/'>"
            "<font size=4 color=red>Buy V1AGRA and C!ALIS online - lowest price, no prescription!</font></a>"
            "</td></tr></table><img src='http://203.0.113.9/p.gif'>"
            f"<p style='display:none'>{salad}</p><font color='#ffffff'>{salad}</font></body></html>")
    return html_mail(html, subject="Re: your order")


def test_a_poisoned_pharmacy_mail_hits_the_structure_and_spelling_rules() -> None:
    hits = hits_of(poisoned_pharmacy())
    assert {"html", "html_only", "html_hidden_text", "html_white_text", "bait_word", "bait_word_obfuscated",
            "url_ip_host", "html_coloured_table"} <= hits


def test_the_shipped_base_never_calls_the_poisoned_pharmacy_mail_ham() -> None:
    """With no report: the same pharmacy mail without its salad is spam; the salad's ham words pull the
    poisoned one down, but not below the unsure band, so it is at least delivered marked."""
    clean = SpamFilter().score(poisoned_pharmacy(salad=""), "offers@shop.test", ["alice@example.com"])
    assert clean.verdict == "spam", clean
    poisoned = SpamFilter().score(poisoned_pharmacy(), "offers@shop.test", ["alice@example.com"])
    assert poisoned.verdict in ("spam", "unsure") and poisoned.score > 0.5, poisoned
    assert any(r.startswith("rules:") and "html" in r for r in poisoned.reasons), poisoned.reasons


@pytest.mark.parametrize("spelling", ["v1agra", "V.I.A.G.R.A", "c!alis", "ci@lis", "m0rtgage", "vi-agra", "x4nax"])
def test_look_alike_spellings_of_bait_words_are_seen(spelling: str) -> None:
    hits = hits_of(html_mail(f"<p>get {spelling} today</p>", plain=f"get {spelling} today"))
    assert {"bait_word", "bait_word_obfuscated"} <= hits


def test_a_plain_bait_word_is_not_called_obfuscated_and_parts_of_words_are_no_bait() -> None:
    assert {"bait_word"} <= hits_of(html_mail("<p>our pharmacy</p>", plain="our pharmacy"))
    assert "bait_word_obfuscated" not in hits_of(html_mail("<p>our pharmacy</p>", plain="our pharmacy"))
    assert "bait_word" not in hits_of(html_mail("<p>pharmacyst and loaned</p>", plain="pharmacyst and loaned"))


def test_an_anchor_showing_one_domain_and_linking_to_another_is_seen() -> None:
    html = ("<p>Your account is limited. Sign in at "
            "<a href='http://paypal.security-check.test/login'>https://www.paypal.com/signin</a></p>")
    assert "anchor_domain_mismatch" in hits_of(html_mail(html, plain="Your account is limited."))
    honest = "<p>Sign in at <a href='https://www.paypal.com/signin'>www.paypal.com</a></p>"
    assert "anchor_domain_mismatch" not in hits_of(html_mail(honest, plain="sign in"))


def test_a_brand_named_in_the_text_with_every_link_elsewhere_is_seen() -> None:
    lure = "<p>Your PayPal account is limited. <a href='http://secure-check.test/login'>Sign in</a></p>"
    assert "brand_links_elsewhere" in hits_of(html_mail(lure, plain="Your PayPal account is limited."))
    honest = "<p>Your PayPal receipt. <a href='https://www.paypal.com/activity'>See it</a></p>"
    assert "brand_links_elsewhere" not in hits_of(html_mail(honest, plain="Your PayPal receipt."))


def test_an_encoded_word_hiding_plain_ascii_is_seen() -> None:
    raw = (b"From: a@shop.test\nTo: alice@example.com\nSubject: =?utf-8?B?RlJFRSBtb25leSBub3c=?=\n"
           b"Date: Thu, 04 Dec 2026 10:00:00 +0000\nMessage-ID: <2@shop.test>\n\nhello\n")
    assert "encoded_word_needless" in hits_of(raw)
    accented = raw.replace(b"=?utf-8?B?RlJFRSBtb25leSBub3c=?=", b"=?utf-8?Q?caf=C3=A9?=")
    assert "encoded_word_needless" not in hits_of(accented)
    japanese = raw.replace(b"=?utf-8?B?RlJFRSBtb25leSBub3c=?=", b"=?iso-2022-jp?B?GyRCJDckOCRfJEgkYiRiJE4lMyVpJWAbKEI=?=")
    assert "encoded_word_needless" not in hits_of(japanese)  # 7-bit bytes, Japanese text


def test_a_reply_in_a_thread_hits_the_reply_rule_and_no_spam_rule() -> None:
    raw = (b"From: Bob <bob@partner.test>\nTo: alice@example.com\nSubject: Re: build failed\n"
           b"Date: Thu, 04 Dec 2026 10:00:00 +0000\nMessage-ID: <3@partner.test>\nIn-Reply-To: <1@example.com>\n\n"
           b"I looked at the log; the arm runner ran out of disk. I will clean it up tomorrow.\n")
    hits = hits_of(raw)
    assert "reply_headers" in hits
    assert not hits & {"bait_word", "spammy_phrases_2", "html", "url_ip_host", "subject_shouting"}


def test_headers_mailbox_software_adds_make_no_classifier_tokens() -> None:
    raw = (b"From: a@b.test\nTo: alice@example.com\nSubject: x\nX-UIDL: 123\nX-Mozilla-Status2: 00000000\n"
           b"X-Keywords: junk\nDelivered-To: alice@example.com\nX-Spam-Status: No\nX-Mailer: mutt\n\nhi\n")
    tokens = header_tokens(extract(raw), "a@b.test")
    names = {t.removeprefix("hdr:") for t in tokens if t.startswith("hdr:")}
    assert "x-mailer" in names and not names & STORE_HEADERS


def test_rule_weights_are_learned_from_what_each_class_hits() -> None:
    rng = random.Random(1)
    hits = [["rule:spammy"] * (i % 2 == 0) + ["rule:both"] for i in range(400)]
    labels = [i % 2 == 0 for i in range(400)]
    probs = [rng.uniform(0.4, 0.9) if spam else rng.uniform(0.1, 0.6) for spam in labels]
    hits += [["rule:hammy"]] * 100
    labels += [False] * 100
    probs += [0.5] * 100
    w = combine.fit(probs, hits, labels)
    assert w.rules["rule:spammy"] > 1 and w.rules["rule:hammy"] < -0.5 and abs(w.rules["rule:both"]) < 1
    assert w.probability(0.5, ["rule:spammy"]) > w.probability(0.5, []) > w.probability(0.5, ["rule:hammy"])
    assert w.probability(0.999, []) > w.probability(0.5, []) > w.probability(0.001, [])


def test_a_base_model_survives_its_file_and_a_damaged_file_is_named() -> None:
    model = base.load("builtin")
    assert model is not None and model.nspam > 1000 and model.nham > 3000 and len(model.weights.rules) > 30
    again = base.BaseModel.from_bytes(model.to_bytes())
    assert again.hashes == model.hashes and again.spam == model.spam and again.weights == model.weights
    with pytest.raises(ValueError, match="not a spam base model"):
        base.BaseModel.from_bytes(b"not zstd at all")
    with pytest.raises(ValueError, match="spam_filter.base_model: cannot read /nonexistent"):
        base.load("/nonexistent/base.bin")
    assert base.load("none") is None


def test_a_fresh_filter_without_the_base_knows_nothing_and_with_it_is_ready() -> None:
    raw = poisoned_pharmacy()
    assert SpamFilter(SpamSettings(base_model="none")).score(raw).score == 0.5
    assert SpamFilter().classifier_ready


def test_unlearning_every_report_returns_a_node_to_the_base_exactly() -> None:
    raw = poisoned_pharmacy()
    node = SpamFilter()
    before = node.score(raw, now_ms=1_000).score
    from streams.spam.scoring import Report

    ids = [p.pattern_id for p in node.learn(Report("m1", "ham", "u@example.com", 1_000, raw))]
    assert node.score(raw, now_ms=2_000).score != before
    for pattern_id in ids:
        node.apply_record(pattern_id, None)
    assert node.score(raw, now_ms=3_000).score == before


def test_the_shipped_base_is_what_the_build_makes_from_the_corpus() -> None:
    """Reproducible: ``python -m streams.spam.base_build --corpus ../shared/corpora/spamassassin`` gives
    the very bytes shipped in the package."""
    corpus_dir("spam")
    samples = base_build.read_folders(CORPUS, base_build.HAM_FOLDERS, base_build.SPAM_FOLDERS)
    built = base_build.build(samples, meta={"corpus": "spamassassin", "ham": list(base_build.HAM_FOLDERS),
                                           "spam": list(base_build.SPAM_FOLDERS)})
    assert built.to_bytes() == base.BUILTIN.read_bytes(), "rebuild it: python -m streams.spam.base_build --corpus ..."


def test_an_administrator_can_switch_off_a_rule_or_a_group_of_rules() -> None:
    ex = extract(poisoned_pharmacy())
    every = {h.removeprefix("rule:") for h in rule_hits(ex)}
    assert {"url_ip_host", "html_hidden_text"} <= every
    assert "url_ip_host" not in {h.removeprefix("rule:") for h in rule_hits(ex, disabled=frozenset({"url_ip_host"}))}
    no_markup = {h.removeprefix("rule:") for h in rule_hits(ex, disabled=frozenset({"structure"}))}
    assert not no_markup & {"html", "html_hidden_text", "html_only"} and "url_ip_host" in no_markup
    off = SpamFilter(SpamSettings(disabled_rules=["structure", "url_ip_host"])).score(poisoned_pharmacy())
    assert off.score < SpamFilter().score(poisoned_pharmacy()).score


@pytest.mark.parametrize("low", [
    "vi<!-- x -->agra", "vi<!---->agra", "vi<!-->agra", "vi<!--->agra", "vi<!-- x -->", "<!-- x -->agra", " <!-- x --> a",
    "a<!--" + "x" * 40 + "-->b", "a<!--" + "x" * 41 + "-->b", "a<!-- > -->b", "x <!--a<!--b-->c", "a<!--b", "é<!--x-->ü",
    "_<!--x-->_", "a<!--x--->b", "a<!--x-- >b", "a<!--x-->",
])
def test_a_comment_inside_a_word_is_found_as_the_regex_finds_it(low: str) -> None:
    assert rules._comment_in_word(low) == bool(re.search(r"\w<!--[^>]{0,40}-->\w", low))


def test_comments_in_words_on_the_corpus_as_the_regex_finds_them() -> None:
    regex = re.compile(r"\w<!--[^>]{0,40}-->\w")
    found = 0
    for folder in ("spam", "spam_2", "hard_ham"):
        for path in sorted(corpus_dir(folder).iterdir()):
            low = " ".join(extract(path.read_bytes()).markup).lower()
            assert rules._comment_in_word(low) == bool(regex.search(low)), path.name
            found += rules._comment_in_word(low)
    assert found > 10
