"""Unknown settings keys are errors: a misspelt key in mailgate.toml or the environment
refuses the start, naming the key, where it was found and the nearest valid name."""

from __future__ import annotations

from pathlib import Path

import pytest

from control.settings import Settings
from core.settings_keys import UnknownSettingError

pytestmark = pytest.mark.usefixtures("clean_env")  # tests/unit/conftest.py


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailgate.toml"
    path.write_text(text)
    return path


def test_a_misspelt_key_in_the_file_names_the_key_the_file_and_the_nearest_name(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[smtp_server]\nport = 25\ndomans = ["a.test"]\n')
    with pytest.raises(UnknownSettingError) as exc:
        Settings()
    # domains moved to the gateway's identity: the hint names its new place
    assert f"unknown setting smtp_server.domans in {path.name}: did you mean domains?" in str(exc.value)


def test_a_misspelt_variable_names_the_variable_and_the_nearest_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILGATE_SMTP_SERVR__PORT", "2600")
    with pytest.raises(UnknownSettingError, match="unknown setting MAILGATE_SMTP_SERVR__PORT in the environment: "
                                                  "did you mean MAILGATE_SMTP_SERVER__PORT?"):
        Settings()


def test_keys_deep_in_tables_lists_and_maps_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path, '[smtp_server.lists.domains."example.com"]\nsender_dny = ["x.test"]\n'
                         '[[pop3.accounts]]\nname = "a"\nhots = "pop.test"\n'
                         '[kafak]\npartitions = 3\n')
    monkeypatch.setenv("MAILGATE_SMTP_SERVER__PORT__X", "1")
    with pytest.raises(UnknownSettingError) as exc:
        Settings()
    text = str(exc.value)
    assert "smtp_server.lists.domains.example.com.sender_dny in mailgate.toml: did you mean " \
           "smtp_server.lists.domains.example.com.sender_deny?" in text
    assert "pop3.accounts.0.hots in mailgate.toml: did you mean pop3.accounts.0.host?" in text
    assert "kafak in mailgate.toml: did you mean kafka?" in text
    assert "MAILGATE_SMTP_SERVER__PORT__X in the environment: smtp_server.port takes no keys" in text


def test_a_key_nothing_is_near_gets_no_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILGATE_ZZZZZZZ", "1")
    with pytest.raises(UnknownSettingError, match=r"MAILGATE_ZZZZZZZ in the environment \(mailgate refuses"):
        Settings()


def test_valid_keys_aliases_moved_keys_and_test_variables_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path, '[smtp_server]\ndomains = ["a.test"]\n[smtp_server.greylist]\nexpiry_s = 600\n'
                         '[smtp_server.lists.users."bob@a.test"]\nsender_allow = ["p.test"]\n')
    monkeypatch.setenv("MAILGATE_SMTP_SERVER__HOSTNAME", "mx.a.test")  # moved: still read
    monkeypatch.setenv("MAILGATE_CONTROL__TOKENS", "admin:root=t")  # a map: its entries are free
    monkeypatch.setenv("MAILGATE_TEST_BROKER", "local")  # the test suite's own, not a setting
    monkeypatch.setenv("MAILGATE_CONFIG", str(tmp_path / "mailgate.toml"))
    s = Settings()
    assert (s.domains, s.hostname, s.smtp_server.greylist.max_age_s) == (["a.test"], "mx.a.test", 600)
