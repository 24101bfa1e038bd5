"""The routing decision of message-validation, as a pure function.

Each mail goes to exactly one queue. The order of the verdicts is written here and
only here:

1. the mail cannot be taken apart            → mail.quarantine
2. the virus scan gave no answer (clamd down) → mail.quarantine, held ("never passed as clean"); a release
   sends it through validation again (control.server.queues), with what the first look found (``held_facts``)
3. a virus                                    → mail.virus
4. not fully scannable (limits, encryption)  → mail.quarantine
5. the attachment policy blocks it            → mail.quarantine
6. then each recipient by ``policy.recipient_verdict`` (deny list, DMARC, allow list,
   spam points, CISS; its settings per recipient domain and user) → mail.spam,
   mail.quarantine, mail.ciss or mail.out; recipients with the same verdict share a
   record, and mail.out has one record per recipient domain (keyed by that domain, so
   that one smtp-client consumer owns a destination). Mail for mail.out and mail.ciss
   carries the Authentication-Results header.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streams.validation.policy import Verdict, recipient_verdict
from streams.validation.policy_settings import DecisionSettings

if TYPE_CHECKING:
    from streams.validation.auth import AuthResults
    from streams.validation.content import RuleHit


@dataclass(frozen=True)
class Route:
    queue: str  # out | spam | virus | ciss | archive | quarantine
    key: bytes
    record: dict[str, Any]  # a MailRouted record
    filter: str = ""  # which check sent it there (a bounded name, the label of the metrics)


@dataclass(frozen=True)
class Findings:
    """What the phase-2 checks found; every field a plain value, so decide() stays pure."""

    unparseable: str | None = None
    virus_scan: str = "off"  # off | clean | infected | unscannable | failed
    virus_detail: str = ""  # signature names, or why not scannable / why it failed
    blocked_by_policy: str | None = None
    spam_verdict: str | None = None  # spam | unsure | ham; None: not scored
    spam_score: float = 0.0
    spam_reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    auth: AuthResults | None = None  # DKIM/SPF/DMARC; None: not checked
    content_hits: tuple[RuleHit, ...] = ()
    sender_confirmed: bool | None = None  # in ciss.senders; None: not looked up
    delivered_message: dict[str, Any] | None = None  # the packed mail with Authentication-Results
    marked_messages: dict[str, dict[str, Any]] | None = None  # unsure mail, marked: subject tag -> packed mail
    decision: DecisionSettings | None = None  # the settings decide() applies; None: defaults


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


def split_by_domain(recipients: list[str]) -> OrderedDict[str, list[str]]:
    groups: OrderedDict[str, list[str]] = OrderedDict()
    for rcpt in recipients:
        groups.setdefault(domain_of(rcpt), []).append(rcpt)
    return groups


def routed(mail: dict[str, Any], queue: str, reasons: list[str], node: str,
           destination: str | None, recipients: list[str], now_ms: int) -> dict[str, Any]:
    return {
        "mail_id": mail["mail_id"],
        "event_time": now_ms,
        "node": node,
        "queue": queue,
        "reasons": reasons,
        "destination": destination,
        "mail_from": mail["mail_from"],
        "rcpt_to": recipients,
        "received_time": mail["event_time"],
        "client_address": mail.get("client_address"),
        "size": mail["size"],
        "message": mail["message"],
    }


def _held(mail: dict[str, Any], queue: str, filter: str, node: str, now_ms: int, *reasons: str) -> list[Route]:
    return [Route(queue, mail["mail_id"].encode(),
                  routed(mail, queue, list(reasons), node, None, list(mail["rcpt_to"]), now_ms), filter)]


#: The lines of a held mail's record after its reason that keep what the first look found
#: and a rescan cannot find again (control.server.queues reads them back when it is released).
SPAM_FACT, SPF_FACT = "spam filter: ", "spf at the door: "


def held_facts(mail: dict[str, Any], f: Findings) -> list[str]:
    """``spam filter: ham (0.1200)``, ``spf at the door: pass``: the spam filter's verdict and the
    SPF result of the SMTP session, which a mail sent through validation again would lack."""
    facts = [f"{SPAM_FACT}{f.spam_verdict} ({f.spam_score:.4f})"] if f.spam_verdict is not None else []
    return facts + ([f"{SPF_FACT}{mail['spf']}"] if mail.get("spf") else [])


def decide(mail: dict[str, Any], node: str, findings: Findings | None = None,
           now_ms: int | None = None) -> list[Route]:
    """Routes for one MailReceived record and what the checks found about it."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    f = findings or Findings()
    if not mail["rcpt_to"]:
        return _held(mail, "quarantine", "no-recipients", node, now_ms, "no recipients")
    if f.unparseable:
        return _held(mail, "quarantine", "unparseable", node, now_ms, f"unparseable: {f.unparseable}")
    if f.virus_scan == "failed":
        return _held(mail, "quarantine", "virus-scan-failed", node, now_ms,
                     f"held: virus scan failed: {f.virus_detail}", *held_facts(mail, f))
    if f.virus_scan == "infected":
        return _held(mail, "virus", "virus", node, now_ms, f"virus: {f.virus_detail}")
    if f.virus_scan == "unscannable":
        return _held(mail, "quarantine", "unscannable", node, now_ms, f"not fully scannable: {f.virus_detail}")
    if f.blocked_by_policy:
        return _held(mail, "quarantine", "attachments", node, now_ms, f"attachment policy: {f.blocked_by_policy}")
    checked = [f"virus scan: {f.virus_scan}", "attachments: allowed", *f.notes]
    return _per_recipient(mail, node, f, checked, now_ms)


def _per_recipient(mail: dict[str, Any], node: str, f: Findings, checked: list[str], now_ms: int) -> list[Route]:
    decision = f.decision or DecisionSettings()
    auth = list(f.auth.reasons) if f.auth is not None else []
    groups: OrderedDict[tuple[str, str | None, Verdict], list[str]] = OrderedDict()
    for domain, rcpts in split_by_domain(mail["rcpt_to"]).items():
        for rcpt in rcpts:
            verdict = recipient_verdict(rcpt, domain, mail["mail_from"], f, decision)
            groups.setdefault((verdict.queue, domain if verdict.queue == "out" else None, verdict), []).append(rcpt)
    routes = []
    for (queue, domain, verdict), rcpts in groups.items():
        reasons = [*checked, *verdict.reasons, *auth] if queue == "out" else [*verdict.reasons, *checked, *auth]
        record = routed(mail, queue, reasons, node, domain, rcpts, now_ms)
        if queue in ("out", "ciss") and f.delivered_message is not None:
            record["message"] = f.delivered_message
        if queue == "out" and f.marked_messages:
            policy = decision.for_domain(domain or "")
            if policy.mark_unsure and (packed := f.marked_messages.get(policy.spam_subject_tag)) is not None:
                record["message"] = packed
        routes.append(Route(queue, (domain or mail["mail_id"]).encode(), record, verdict.filter))
    return routes


ARCHIVE_ORDER = ("out", "ciss", "quarantine", "spam", "virus")


def archive_copy(mail: dict[str, Any], routes: list[Route], node: str, now_ms: int | None = None) -> Route:
    """The copy for mail.archive when archiving is on (settings.archive.enabled): the whole mail,
    every recipient, and the queue chosen above as its first reason ("verdict: spam"), so that
    message-archive can apply its rules (exclusions such as spam or virus). When recipients got
    different queues, the one nearest to delivery names the mail (delivered mail is archived)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    first = min(routes, key=lambda r: ARCHIVE_ORDER.index(r.queue) if r.queue in ARCHIVE_ORDER else len(ARCHIVE_ORDER))
    reasons = [f"verdict: {first.queue}", *first.record["reasons"]]
    return Route("archive", mail["mail_id"].encode(),
                 routed(mail, "archive", reasons, node, None, list(mail["rcpt_to"]), now_ms), "archive")
