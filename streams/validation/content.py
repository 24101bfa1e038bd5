"""message-validation, content rules: keywords and regular expressions with scores, on
the subject and on the decoded text parts of the body (from the MIME walk).

Charsets are not trusted: text is read as UTF-8 and, where that fails, as cp1252 (what
a mail reader falls back to as well); HTML tags are dropped so that rules see words.
Rules see at most ``max_text_chars`` characters, which bounds what a costly regex takes.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from streams.validation.mime import MimeWalk
from streams.validation.names import decode_words
from streams.validation.policy_settings import ContentRule, ContentSettings

_TAG = re.compile(r"<[^<>]*>")  # [^<>]: linear even on a flood of unclosed "<"
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class RuleHit:
    rule: str
    score: float
    where: str  # subject | body
    match: str  # what matched, shortened

    @property
    def reason(self) -> str:
        return f"content rule {self.rule} ({self.score:+g}): {self.match!r} in the {self.where}"


def decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def body_text(walk: MimeWalk, limit: int) -> str:
    """The text of the text/* parts that are not attachments, joined, at most ``limit`` chars."""
    chunks: list[str] = []
    size = 0
    for part in walk.parts:
        if part.origin != "mime" or not part.content_type.startswith("text/") or part.filename:
            continue
        text = decode_text(part.data[:limit * 4])
        if part.content_type == "text/html":
            text = html.unescape(_TAG.sub(" ", text))
        chunks.append(_SPACE.sub(" ", text))
        size += len(chunks[-1])
        if size >= limit:
            break
    return " ".join(chunks)[:limit]


def subject_of(raw: bytes) -> str:
    match = re.search(rb"(?im)^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)", raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0])
    if match is None:
        return ""
    return decode_words(_SPACE.sub(" ", decode_text(match.group(1))).strip())


class ContentRules:
    def __init__(self, cfg: ContentSettings) -> None:
        self.cfg = cfg
        self.compiled = [(rule, self._compile(rule)) for rule in cfg.rules]

    @staticmethod
    def _compile(rule: ContentRule) -> re.Pattern[str]:
        pattern = re.escape(rule.pattern) if rule.kind == "keyword" else rule.pattern
        return re.compile(pattern, re.IGNORECASE)

    def check(self, raw: bytes, walk: MimeWalk) -> list[RuleHit]:
        """Every rule that matched, once each (its first match), in the order configured."""
        if not self.compiled:
            return []
        texts = {"subject": subject_of(raw), "body": body_text(walk, self.cfg.max_text_chars)}
        hits = []
        for rule, regex in self.compiled:
            for where in (("subject", "body") if rule.where == "any" else (rule.where,)):
                found = regex.search(texts[where])
                if found:
                    hits.append(RuleHit(rule.name, rule.score, where, found.group(0)[:60]))
                    break
        return hits
