"""smtp-server settings from the environment: nested groups, comma lists, user=secret pairs."""

from __future__ import annotations


import pytest
from pydantic import ValidationError

from control.settings import Settings


pytestmark = pytest.mark.usefixtures("clean_env")  # tests/unit/conftest.py


def test_groups_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"RELAY__TRUSTED_NETWORKS": "10.0.0.0/8, 192.0.2.0/24", "AUTH__USERS": "alice=s1,bob=pbkdf2_sha256$1$aa$bb",
           "CHECKS__DNSBL_ZONES": "bl.test", "CHECKS__SPF": "enforce", "DNS__NAMESERVERS": "127.0.0.1",
           "DNS__PORT": "5353", "GREYLIST__ENABLED": "true", "LIMITS__MAX_ERRORS": "5", "TLS__PORT": "465",
           "LISTS__SENDER_DENY": "spam.test,bad@x.test", "LISTENERS": "2"}
    for key, value in env.items():
        monkeypatch.setenv(f"MAILGATE_SMTP_SERVER__{key}", value)
    s = Settings().smtp_server
    assert s.relay.trusted_networks == ["10.0.0.0/8", "192.0.2.0/24"]
    assert {u: p.get_secret_value() for u, p in s.auth.users.items()} == {"alice": "s1",
                                                                        "bob": "pbkdf2_sha256$1$aa$bb"}
    assert s.checks.dnsbl_zones == ["bl.test"] and s.checks.spf == "enforce"
    assert s.dns.nameservers == ["127.0.0.1"] and s.dns.port == 5353
    assert s.greylist.enabled and s.limits.max_errors == 5 and s.tls.port == 465 and s.listeners == 2
    assert s.lists.sender_deny == ["spam.test", "bad@x.test"]
    assert "**" in repr(s.auth.users)  # secrets stay out of logs


def test_bad_values_name_their_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILGATE_SMTP_SERVER__CHECKS__SPF", "sometimes")
    with pytest.raises(ValidationError, match="spf"):
        Settings()
