"""One meaning of a list entry at both doors: smtp-server's lists during the dialogue and
message-validation's sender lists (core.address_lists); no I/O."""

from __future__ import annotations

import pytest

from core.address_lists import AddressList
from ingress.smtp.filters import Action, Check, Client, Stage, Transaction
from ingress.smtp.filters.lists import Lists
from ingress.smtp.settings import ListFilterSettings
from streams.validation.findings import Findings
from streams.validation.policy import recipient_verdict
from streams.validation.policy_settings import DecisionSettings

ENTRIES = ["spammer.test", "@exact.test", ".below.test", "Bob@Partner.test"]
#: sender → the entry that names it (None: no entry does)
CASES = {
    "x@spammer.test": "spammer.test", "x@mx1.SPAMMER.test": "spammer.test",  # a domain and its subdomains
    "x@exact.test": "exact.test", "x@sub.exact.test": None,  # "@domain": the domain only
    "x@a.below.test": ".below.test", "x@below.test": None,  # ".domain": its subdomains only
    "bob@partner.test": "bob@partner.test", "alice@partner.test": None,  # one address
    "x@notspammer.test": None,  # a suffix is not a subdomain
}


@pytest.mark.parametrize("sender, entry", CASES.items())
def test_the_matcher(sender: str, entry: str | None) -> None:
    assert AddressList(ENTRIES).match(sender) == entry


@pytest.mark.parametrize("sender, entry", CASES.items())
async def test_phase_1_refuses_whom_the_entries_name(sender: str, entry: str | None) -> None:
    lists = Lists(ListFilterSettings(sender_deny=ENTRIES))
    verdict = await lists.check(Check(Stage.MAIL, Client(ip="192.0.2.1"), Transaction(mail_from=sender), None))
    assert (verdict.action is Action.REJECT) == (entry is not None)
    if entry is not None:
        assert verdict.code == 550 and f"({entry})" in verdict.reason


@pytest.mark.parametrize("sender, entry", CASES.items())
def test_phase_2_denies_whom_the_entries_name(sender: str, entry: str | None) -> None:
    verdict = recipient_verdict("rcpt@example.com", "example.com", sender, Findings(),
                                DecisionSettings(sender_deny=ENTRIES, deny_action="quarantine"))
    assert (verdict.filter == "sender-deny") == (entry is not None)
    if entry is not None:
        assert verdict.queue == "quarantine" and f"({entry})" in verdict.reasons[0]
