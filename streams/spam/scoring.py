"""spam-filter: one score per mail from the parts, and learning from reports.

``SpamFilter`` is what the Faust agent calls:

- ``score(raw, mail_from, rcpt_to)`` for each mail of the in-queue;
- ``learn(report)`` for each ``spam.reports`` event: it changes the local
  store at once and returns the patterns to publish on ``spam.patterns``;
- ``apply_record(pattern_id, record)`` for each ``spam.patterns`` record (a
  ``None`` record is a tombstone), so that every node learns what any node
  was told; ``expire(now)`` and ``take_dirty()`` give the tombstones and the
  hit-count updates to publish now and then.

The token classifier and the domain reputation are fed by the pattern store
(each pattern's tokens and domains, counted once while it lives), so all
three parts follow the same reports, and a node's state is a function of the
patterns it holds.

Combining: a matching ham pattern wins (score below the ham threshold), a
matching spam pattern gives at least the spam threshold, scaled by its
similarity; otherwise the classifier's probability is the score (0.5 while it
has too few reports). A domain seen only in spam patterns adds
``reputation_weight``. Verdict: spam / unsure / ham by the thresholds.
"""

from __future__ import annotations

import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.spam import base, classifier, mime, normalize
from streams.spam.classifier import Verdict, extra_tokens, new_classifier
from streams.spam.fingerprint import attachment_hashes
from streams.spam.normalize import Extracted, extract
from streams.spam.combine import RuleWeights
from streams.spam.rules import rule_hits
from streams.spam.patterns import (
    ADMIN,
    HAM,
    SPAM,
    USER,
    MailPrint,
    Match,
    Pattern,
    PatternStore,
)
from streams.spam.settings import SpamSettings
from streams.spam.textprints import text_prints
from streams.spam.urls import normalize_url, registrable_domain, url_host, url_skeleton

VERDICTS = ("spam", "unsure", "ham")


@dataclass(frozen=True, slots=True)
class Report:
    """A ``spam.reports`` event: someone says a mail is spam or is not."""

    mail_id: str
    label: str  # "spam" | "ham"
    reporter: str
    time_ms: int
    raw_message: bytes
    role: str = USER  # "admin" | "user": a user does not overrule an administrator
    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Score:
    score: float  # 0 (ham) .. 1 (spam)
    verdict: str  # "spam" | "unsure" | "ham"
    matched: list[str]  # ids of the patterns that matched
    reasons: list[str]  # for people: why
    parts: dict[str, float] = field(default_factory=dict)  # each part's own number, for metrics


@dataclass(frozen=True, slots=True)
class Features:
    extracted: Extracted
    tokens: Sequence[str]
    hashes: array  # typecode "Q": the tokens' hashes
    print: MailPrint
    hits: list[str] = field(default_factory=list)  # the structural rules hit (``rule:<name>``)


class DomainReputation:
    """How many live spam and ham patterns link to each registrable domain."""

    def __init__(self) -> None:
        self.spam: Counter[str] = Counter()
        self.ham: Counter[str] = Counter()

    def count(self, pattern: Pattern, weight: int) -> None:
        table = self.spam if pattern.label == SPAM else self.ham
        for domain in pattern.print.domains:
            table[domain] += weight
            if table[domain] <= 0:
                del table[domain]

    def bad(self, domains: Sequence[str], min_reports: int) -> list[str]:
        return [d for d in domains if self.spam.get(d, 0) >= min_reports and not self.ham.get(d)]


class SpamFilter:
    """Scores mails and learns from reports. Pure: the caller does all I/O."""

    def __init__(self, settings: SpamSettings | None = None, node: str = "local") -> None:
        self.settings = s = settings or SpamSettings()
        self.classifier = new_classifier(s.unknown_word_strength, s.unknown_word_prob,
                                          s.classifier_max_tokens, s.classifier_min_strength)
        self.reputation = DomainReputation()
        self._disabled_rules = frozenset(s.disabled_rules)
        self.base = base.load(s.base_model)
        self.weights: RuleWeights | None = None
        if self.base is not None:
            self.base.apply_to(self.classifier)
            self.weights = self.base.weights
        self.store = PatternStore(s, node, on_change=self._pattern_changed)

    # -- scoring

    def features(self, raw: bytes, mail_from: str = "", rcpt_to: Sequence[str] = (), *,
                 all_tokens: bool = True) -> Features:
        """What scoring and learning need of a mail; without ``all_tokens`` (scoring), the print
        holds the sorted token hashes only where its id needs them (no text signature)."""
        s = self.settings
        ex = extract(raw, s.max_parts, s.max_text_chars)
        extra = extra_tokens(ex, mail_from, rcpt_to, s.use_header_tokens)
        prints = text_prints(ex.subject, ex.text, extra, ex.urls, s.pattern_min_shingles)
        domains = tuple(dict.fromkeys(registrable_domain(url_host(u)) for u in ex.urls))
        sig = prints.signature
        sorted_tokens = array("Q", sorted(prints.hashes) if all_tokens or sig is None else ())  # hashes are unique
        mail_print = MailPrint(sig, tuple(attachment_hashes(ex.attachments, s.max_attachment_bytes)), domains,
                               sorted_tokens)
        hits = rule_hits(ex, mail_from, rcpt_to, self._disabled_rules) if s.use_rules else []
        return Features(ex, prints.tokens, prints.hashes, mail_print, hits)

    def score(self, raw_message: bytes, mail_from: str = "", rcpt_to: Sequence[str] = (),
              now_ms: int | None = None) -> Score:
        return self.score_features(self.features(raw_message, mail_from, rcpt_to, all_tokens=False), now_ms)

    def score_features(self, f: Features, now_ms: int | None = None) -> Score:
        s = self.settings
        now_ms = _now_ms() if now_ms is None else now_ms
        matches = self.store.match(f.print, now_ms) if s.use_patterns else []
        verdict = self.classifier.classify(f.hashes) if s.use_classifier and self.classifier_ready else None
        prob = None if verdict is None else verdict.prob
        combined = self.weights.probability(prob, f.hits) if self.weights is not None and s.use_rules else None
        score, reasons, ham_wins = _from_patterns(matches, (0.5 if prob is None else prob) if combined is None
                                                  else combined, s)
        parts = {"pattern": max((m.similarity for m in matches if m.label == SPAM), default=0.0)}
        if verdict is not None:
            parts["classifier"] = verdict.prob
            reasons.append(_classifier_reason(verdict, f))
        if combined is not None and self.weights is not None:
            parts["combined"] = combined
            reasons.append(_rules_reason(self.weights, f.hits))
        bad = self.reputation.bad(f.print.domains, s.reputation_min_reports)
        parts["reputation"] = 1.0 if bad else 0.0
        if bad and s.reputation_weight > 0 and not ham_wins:
            score = min(1.0, score + s.reputation_weight)
            reasons.append("links to domains seen only in reported spam: " + ", ".join(bad[:3]))
        return Score(round(score, 6), self.verdict(score), [m.pattern_id for m in matches], reasons, parts)

    def verdict(self, score: float) -> str:
        if score >= self.settings.spam_threshold:
            return "spam"
        return "ham" if score < self.settings.ham_threshold else "unsure"

    @property
    def classifier_ready(self) -> bool:
        need = self.settings.classifier_min_patterns
        return self.classifier.nspam >= need and self.classifier.nham >= need

    # -- learning

    def learn(self, report: Report) -> list[Pattern]:
        """Apply a report here at once; returns the patterns to publish on ``spam.patterns``."""
        if report.role not in (ADMIN, USER):
            raise ValueError(f"report on {report.mail_id}: role {report.role!r} is neither admin nor user")
        f = self.features(report.raw_message, report.mail_from, report.rcpt_to)
        return self.store.apply_report(f.print, report.label, report.role, report.reporter,
                                       report.mail_id, report.time_ms)

    def apply_record(self, pattern_id: str, record: dict[str, Any] | None) -> bool:
        """A ``spam.patterns`` record (None: a tombstone); True if it changed anything here."""
        if record is None:
            return self.store.remove(pattern_id) is not None
        return self.store.upsert(Pattern.from_record(record))

    def expire(self, now_ms: int | None = None) -> list[str]:
        """Ids of patterns whose time is up (removed here; publish tombstones for them)."""
        return self.store.expire(_now_ms() if now_ms is None else now_ms)

    def take_dirty(self) -> list[Pattern]:
        """Patterns with new local hits since the last call (publish them now and then)."""
        return self.store.take_dirty()

    def _pattern_changed(self, old: Pattern | None, new: Pattern | None) -> None:
        for pattern, weight in ((old, -1), (new, 1)):
            if pattern is not None:
                self.classifier.learn(pattern.print.tokens, pattern.label == SPAM, weight * pattern.reports)
                self.reputation.count(pattern, weight)


def _from_patterns(matches: list[Match], base: float, s: SpamSettings) -> tuple[float, list[str], bool]:
    """(score, reasons, whether a ham pattern decided) from the best spam and ham matches."""
    spam = next((m for m in matches if m.label == SPAM), None)
    ham = next((m for m in matches if m.label == HAM), None)
    if ham is not None and (spam is None or ham.similarity >= spam.similarity):
        score = min(base, s.ham_threshold * (1.0 - ham.similarity))
        return score, [_pattern_reason(ham, "reported as not spam")], True
    if spam is not None:
        floor = s.spam_threshold + (1.0 - s.spam_threshold) * spam.similarity
        return max(base, floor), [_pattern_reason(spam, "reported as spam")], False
    return base, [], False


def _pattern_reason(m: Match, what: str) -> str:
    return f"{m.via} like mail {what} by {m.role} (pattern {m.pattern_id}, similarity {m.similarity:.2f})"


def _classifier_reason(verdict: Verdict, f: Features) -> str:
    clues = [(p, f.tokens[at]) for p, at in verdict.clue_positions(5)]
    words = ", ".join(f"{name!r} {p:.2f}" for p, name in clues)
    return f"token classifier {verdict.prob:.3f} ({words})"


def _rules_reason(weights: RuleWeights, hits: list[str]) -> str:
    named = ", ".join(f"{name.removeprefix('rule:')} {w:+.2f}" for name, w in weights.contributions(hits)[:6])
    return f"rules: {named}" if named else "rules: none hit"


def clear_caches() -> None:
    """Empty the process-wide memo caches (URL forms, addresses, content types), as in a fresh process."""
    for cached in (normalize_url, url_skeleton, url_host, registrable_domain, normalize._parseaddr,
                   classifier._received_token, mime._content_type_of):
        cached.cache_clear()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
