"""spam-filter: thresholds and limits, with defaults (a section of the service settings)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SpamSettings(BaseModel):
    """What the spam filter decides with; every value has a working default."""

    spam_threshold: float = Field(
        default=0.65, ge=0, le=1,
        description="Score at or above: verdict spam (mail.spam). 0.65 keeps ham false positives <= 0.1% across "
                    "corpora: with the base model built from one release of the SpamAssassin corpus and no "
                    "report, the other release's ham scored 0.63 and above in 0 of 1,432 (sa1 -> sa2) and 1 of "
                    "2,551 (sa2 -> sa1) mails (bench/spam_accuracy.py, README's spam section).",
    )
    ham_threshold: float = Field(
        default=0.25, ge=0, le=1,
        description="Score below: verdict ham; between it and spam_threshold: unsure, delivered marked "
                    "(X-Spam-Flag / X-Spam-Status, validation.decision.mark_unsure).")
    pattern_similarity: float = Field(
        default=0.60, gt=0, le=1, description="Estimated Jaccard similarity at or above which a pattern matches."
    )
    pattern_merge_similarity: float = Field(
        default=0.90, gt=0, le=1, description="A report this similar to a pattern of its label only confirms it."
    )
    pattern_min_shingles: int = Field(
        default=12, ge=1, description="Mails with fewer text shingles get no text signature (too short to match)."
    )
    attachment_max_distance: int = Field(
        default=40, ge=0, description="TLSH distance at or below which an attachment matches a pattern's."
    )
    spam_ttl_days: float = Field(default=30, gt=0, description="A spam pattern unused (no report, no hit) expires.")
    ham_ttl_days: float = Field(default=180, gt=0, description="A ham pattern unused expires.")
    classifier_min_patterns: int = Field(
        default=20, ge=0, description="Spam and ham patterns each needed before the classifier votes."
    )
    classifier_max_tokens: int = Field(default=150, ge=1, description="Most decisive tokens combined per mail.")
    classifier_min_strength: float = Field(default=0.1, ge=0, le=0.5, description="|p-0.5| below: token ignored.")
    unknown_word_strength: float = Field(default=0.45, gt=0)
    unknown_word_prob: float = Field(default=0.5, gt=0, lt=1)
    reputation_min_reports: int = Field(
        default=3, ge=1, description="Spam patterns a domain needs (and no ham) before it counts as a spam domain."
    )
    reputation_weight: float = Field(default=0.0, ge=0, le=1, description="Score added by a spam domain (0: off).")
    patterns_wait_s: float = Field(
        default=60, ge=0, description="After a start, scoring waits at most this long for spam.patterns to be read.",
    )
    base_model: str = Field(
        default="builtin",
        description='What a node knows before any report: "builtin" (the base model shipped with the package, '
                    'built from public corpora by python -m streams.spam.base_build), "none" (nothing: every mail '
                    'scores 0.5 until reports arrive), or the path of a base model file.',
    )
    use_rules: bool = Field(default=True, description="Structural rules (streams/spam/rules.py) count, with the "
                            "weights of the base model.")
    disabled_rules: list[str] = Field(
        default_factory=list,
        description='Structural rules that do not count here, by name ("html_hidden_text") or group '
                    '("structure", "obfuscation", "urls", "headers"): for a rule that misfires on your mail. '
                    "Names are those of streams/spam/rules.py (the reasons of a verdict show them).",
    )
    use_patterns: bool = True
    use_classifier: bool = True
    use_header_tokens: bool = Field(default=True, description="Header and anomaly tokens feed the classifier.")
    max_text_chars: int = Field(default=60_000, ge=1000, description="Text per mail looked at (the rest is cut).")
    max_parts: int = Field(default=64, ge=1, description="MIME parts per mail looked at.")
    max_attachment_bytes: int = Field(default=4 << 20, ge=1024, description="Attachment bytes fuzzy-hashed.")
