"""Pop3Settings: passwords from the environment or a secrets file, ports, services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ingress.pop3.settings import Pop3Account, Pop3Settings


def account(**kw: Any) -> Pop3Account:
    fields: dict[str, Any] = dict(name="sales", host="pop.example.net", user="sales", recipient="sales@example.com")
    fields.update(kw)
    return Pop3Account(**fields)


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POP3_SALES_PASSWORD", "s3cret")
    a = account(password_env="POP3_SALES_PASSWORD")
    assert a.password is not None and a.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(a) and "s3cret" not in str(a.model_dump())


def test_password_from_a_secrets_file(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("from-file\nignored second line\n")
    assert account(password_file=f).password.get_secret_value() == "from-file"  # type: ignore[union-attr]


@pytest.mark.parametrize(("kw", "message"), [
    ({}, "set exactly one of password_env, password_file, password"),
    ({"password": "x", "password_env": "X"}, "set exactly one"),
    ({"password_env": "MAILGATE_TEST_SURELY_UNSET"}, "MAILGATE_TEST_SURELY_UNSET, which is not set"),
    ({"password_file": "/nonexistent/pw"}, "password_file /nonexistent/pw cannot be read"),
    ({"password": "a\r\nQUIT"}, "contains CR, LF or NUL"),
    ({"password": "x", "recipient": "nobody"}, "is not a mail address"),
    ({"password": "x", "name": "has space"}, "name"),
    ({"password": "x", "tls": "ssl"}, "tls"),
])
def test_bad_accounts_name_the_account_and_the_key(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        account(**kw)
    assert message in str(info.value)


def test_default_ports_follow_the_tls_mode() -> None:
    assert account(password="x", tls="implicit").effective_port == 995
    assert account(password="x", tls="starttls-opportunistic").effective_port == 110
    assert account(password="x", tls="none", port=1110).address == "pop.example.net:1110"


def test_each_service_takes_its_accounts() -> None:
    s = Pop3Settings(accounts=[account(name="a", password="x", tls="implicit"),
                               account(name="b", password="x", tls="starttls-required"),
                               account(name="c", password="x", tls="none", enabled=False)])
    assert [a.name for a in s.accounts_for("pop3s-proxy")] == ["a"]
    assert [a.name for a in s.accounts_for("pop3-proxy")] == ["b"]
    assert [a.name for a in s.accounts_for(None)] == ["a", "b"]
    with pytest.raises(ValueError, match="unknown POP3 service"):
        s.accounts_for("imap-proxy")


def test_account_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="named 'a'"):
        Pop3Settings(accounts=[account(name="a", password="x"), account(name="a", password="y")])


def test_an_account_may_not_take_mail_larger_than_the_topics_carry() -> None:
    from control.settings import Settings

    big = Pop3Settings(accounts=[account(name="sales", password="x", max_message_size=30 * 1024 * 1024)])
    with pytest.raises(ValidationError, match="pop3 account 'sales': max_message_size .* the gateway's max_message_size"):
        Settings(pop3=big)
    fits = Settings(pop3=big, max_message_size=30 * 1024 * 1024)
    assert fits.pop3.accounts[0].max_message_size == 30 * 1024 * 1024
