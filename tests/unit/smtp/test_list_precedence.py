"""smtp-server filter ``lists``: which sender list decides for a recipient — the user's
own, then its domain's, then the global one; on one level deny wins (no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from control.settings import Settings
from ingress.smtp.filters import Action, Check, Client, Stage, Transaction, build_chain
from ingress.smtp.filters.lists import Listed, Lists, SenderPolicy
from ingress.smtp.settings import ListFilterSettings
from ingress.smtp.settings import Settings as SmtpView

CFG = ListFilterSettings(
    sender_deny=["global-bad.test"], sender_allow=["everyones-friend.test"],
    domains={"example.com": {"sender_deny": ["spammer.test", "both.test"], "sender_allow": ["both.test"]},
             "other.org": {"sender_allow": ["spammer.test", "global-bad.test"]}},
    users={"Alice@Example.com": {"sender_allow": ["partner.test", "spammer.test"]},
           "bob@example.com": {"sender_deny": ["everyones-friend.test"]}},
)
POLICY = SenderPolicy(CFG)


@pytest.mark.parametrize(("sender", "rcpt", "expected"), [
    # the domain's deny list, for every user of it without an own list that names the sender
    ("x@spammer.test", "carol@example.com", Listed("deny", "domain example.com", "spammer.test")),
    # the user's allow list beats the domain's deny list
    ("x@spammer.test", "alice@example.com", Listed("allow", "user alice@example.com", "spammer.test")),
    ("x@partner.test", "ALICE@example.com", Listed("allow", "user alice@example.com", "partner.test")),
    # another domain is not touched by example.com's list (and allows it itself)
    ("x@spammer.test", "dave@other.org", Listed("allow", "domain other.org", "spammer.test")),
    # a domain's allow list beats the global deny list
    ("x@global-bad.test", "dave@other.org", Listed("allow", "domain other.org", "global-bad.test")),
    ("x@global-bad.test", "carol@example.com", Listed("deny", "global", "global-bad.test")),
    # a user's deny list beats the global allow list
    ("x@everyones-friend.test", "bob@example.com", Listed("deny", "user bob@example.com", "everyones-friend.test")),
    ("x@everyones-friend.test", "carol@example.com", Listed("allow", "global", "everyones-friend.test")),
    # on one level deny wins
    ("x@both.test", "carol@example.com", Listed("deny", "domain example.com", "both.test")),
    # nobody names it; the null sender is never listed
    ("x@unknown.test", "alice@example.com", None),
    ("", "carol@example.com", None),
])
def test_the_most_specific_list_decides(sender: str, rcpt: str, expected: Listed | None) -> None:
    assert POLICY.for_recipient(sender, rcpt) == expected


def check(stage: Stage, sender: str, rcpt: str | None = None) -> Check:
    return Check(stage, Client(ip="192.0.2.1"), Transaction(mail_from=sender), rcpt)


async def test_mail_and_rcpt_verdicts() -> None:
    lists = Lists(CFG)
    # globally denied, and no owner allows it: refused at MAIL, as without owner lists
    mail = await lists.check(check(Stage.MAIL, "x@nobody-allows.test"))
    assert mail.action is Action.CONTINUE
    only_global = Lists(ListFilterSettings(sender_deny=["global-bad.test"]))
    mail = await only_global.check(check(Stage.MAIL, "x@global-bad.test"))
    assert (mail.action, mail.code, mail.status) == (Action.REJECT, 550, "5.7.1")
    assert mail.reason == "<x@global-bad.test>: Sender address rejected by policy: on the global sender deny list " \
                          "(global-bad.test)"
    # globally denied, but other.org allows it: put off to RCPT (recorded), decided per recipient
    mail = await lists.check(check(Stage.MAIL, "x@global-bad.test"))
    assert mail.action is Action.CONTINUE and "decided per recipient" in mail.reason
    refused = await lists.check(check(Stage.RCPT, "x@global-bad.test", "carol@example.com"))
    assert (refused.action, refused.code, refused.status) == (Action.REJECT, 550, "5.7.1")
    allowed = await lists.check(check(Stage.RCPT, "x@global-bad.test", "dave@other.org"))
    assert allowed.action is Action.ACCEPT and allowed.reason == "sender on the sender allow list of domain other.org " \
                                                                 "(global-bad.test)"
    # the reply names the list that refused
    refused = await lists.check(check(Stage.RCPT, "x@spammer.test", "carol@example.com"))
    assert refused.reply == "550 5.7.1 <x@spammer.test>: Sender address rejected by policy: on the sender deny " \
                            "list of domain example.com (spammer.test)"
    # a global allow is decided at MAIL (ACCEPT there); at RCPT it adds nothing
    assert (await lists.check(check(Stage.MAIL, "x@everyones-friend.test"))).action is Action.ACCEPT
    assert (await lists.check(check(Stage.RCPT, "x@everyones-friend.test", "carol@example.com"))).action \
        is Action.CONTINUE
    denied = await lists.check(check(Stage.RCPT, "x@everyones-friend.test", "bob@example.com"))
    assert denied.action is Action.REJECT and "user bob@example.com" in denied.reason


def test_owner_lists_alone_put_the_filter_in_the_chain() -> None:
    cfg = SmtpView(domains=["example.com"],
                   smtp_server={"lists": {"users": {"a@example.com": {"sender_deny": "x.test"}}}})
    assert [f.name for f in build_chain(cfg).filters] == ["relay", "lists", "helo"]
    assert [f.name for f in build_chain(SmtpView(domains=["example.com"])).filters] == ["relay", "helo"]


def test_owners_must_be_ours_and_the_key_is_named() -> None:
    with pytest.raises(ValidationError, match=r"smtp_server.lists.domains.elsewhere.test: not one of the gateway's"):
        SmtpView(domains=["example.com"],
                 smtp_server={"lists": {"domains": {"elsewhere.test": {"sender_deny": ["x"]}}}})
    with pytest.raises(ValidationError, match=r"smtp_server.lists.users.example.com: not an address"):
        SmtpView(domains=["example.com"], smtp_server={"lists": {"users": {"example.com": {"sender_deny": ["x"]}}}})
    with pytest.raises(ValidationError, match=r"smtp_server.lists.domains.elsewhere.test"):  # the tree checks too
        Settings(domains=["example.com"], smtp_server={"lists": {"domains": {"elsewhere.test": {"sender_deny": ["x"]}}}})


def test_owner_lists_from_the_environment_and_toml(clean_env: None, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("MAILGATE_SMTP_SERVER__DOMAINS", "example.com,other.org")
    monkeypatch.setenv("MAILGATE_SMTP_SERVER__LISTS__DOMAINS", '{"Example.com": {"sender_deny": "spammer.test,x.test"}}')
    lists = Settings().smtp_server.lists
    assert lists.domains["example.com"].sender_deny == ["spammer.test", "x.test"]
    monkeypatch.delenv("MAILGATE_SMTP_SERVER__LISTS__DOMAINS")
    toml = tmp_path / "mailgate.toml"
    toml.write_text('[smtp_server.lists]\nsender_deny = ["global.test"]\n'
                    '[smtp_server.lists.domains."other.org"]\nsender_allow = ["spammer.test"]\n'
                    '[smtp_server.lists.users."alice@example.com"]\nsender_allow = ["partner.test"]\n')
    monkeypatch.setenv("MAILGATE_CONFIG", str(toml))
    lists = Settings().smtp_server.lists
    assert lists.sender_deny == ["global.test"] and lists.domains["other.org"].sender_allow == ["spammer.test"]
    assert lists.users["alice@example.com"].sender_allow == ["partner.test"]
