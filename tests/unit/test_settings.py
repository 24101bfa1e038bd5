"""Settings from the environment and from a TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from control.settings import Settings


pytestmark = pytest.mark.usefixtures("clean_env")  # tests/unit/conftest.py


def test_defaults_use_the_local_broker() -> None:
    s = Settings()
    assert s.uses_local_broker and s.bootstrap_servers == "127.0.0.1:9092"
    assert s.smtp_server.port == 2525 and s.domains == ["example.com"]


def test_environment_sets_an_external_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILGATE_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("MAILGATE_DOMAINS", "Example.com, example.org")
    monkeypatch.setenv("MAILGATE_SMTP_CLIENT__SMARTHOST", "[::1]:2600")
    s = Settings()
    assert not s.uses_local_broker and s.bootstrap_servers == "k1:9092,k2:9092"
    assert s.domains == ["example.com", "example.org"]
    assert s.smtp_client.smarthost_addr == ("::1", 2600)


def test_toml_file_and_env_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "mailgate.toml").write_text('[kafka]\nbootstrap_servers = "file:9092"\npartitions = 12\n'
                                            '[smtp_server]\ndomains = ["a.test"]\n')
    monkeypatch.setenv("MAILGATE_KAFKA__PARTITIONS", "3")
    s = Settings()
    assert s.bootstrap_servers == "file:9092" and s.kafka.partitions == 3  # env wins over the file
    assert s.domains == ["a.test"]  # the old place of the identity's keys is still read


def test_the_identity_keys_moved_from_smtp_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILGATE_SMTP_SERVER__HOSTNAME", "mx.old.test")
    monkeypatch.setenv("MAILGATE_SMTP_SERVER__MAX_MESSAGE_SIZE", "2048")
    s = Settings()
    assert (s.hostname, s.max_message_size) == ("mx.old.test", 2048)
    monkeypatch.setenv("MAILGATE_HOSTNAME", "mx.new.test")  # the new place wins
    assert Settings().hostname == "mx.new.test"


def test_named_config_file_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAILGATE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(FileNotFoundError, match="MAILGATE_CONFIG"):
        Settings()


def test_bad_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILGATE_SMTP_SERVER__MAX_RECIPIENTS", "0")
    with pytest.raises(ValidationError, match="max_recipients"):
        Settings()


def test_every_producer_waits_for_all_replicas_and_is_idempotent() -> None:
    """The 250-after-ack promise rests on these two: acks=all and idempotence, whatever a stage tunes."""
    from core.kafka import producer_config

    config = producer_config(Settings(), "smtp-server", **{"linger.ms": 0})
    assert (config["acks"], config["enable.idempotence"]) == ("all", True)
    assert config["message.timeout.ms"] == int(Settings().kafka.produce_timeout_s * 1000)
    assert config["max.in.flight"] == 1  # the batch grows behind the request in flight (core.settings)


def test_each_service_is_given_its_section_and_the_identity_not_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import ServiceControl, view
    from egress.smtp_client import settings as smtp_client
    from streams.validation import settings as validation

    monkeypatch.setenv("MAILGATE_CONTROL__TOKENS", "admin:root=secret")
    monkeypatch.setenv("MAILGATE_ARCHIVE__ENABLED", "true")
    monkeypatch.setenv("MAILGATE_HOSTNAME", "mx.gw.test")
    tree = Settings()
    client = view(tree, smtp_client.Settings)
    assert client.hostname == "mx.gw.test" and client.smtp_client.smarthost == tree.smtp_client.smarthost
    assert not hasattr(client, "smtp_server") and not hasattr(client, "validation")
    assert type(client.control) is ServiceControl and not hasattr(client.control, "tokens")  # no secrets of control
    checker = view(tree, validation.Settings)
    assert checker.archive.enabled and not hasattr(checker.archive, "rules")  # only the switch it obeys


GIVEN: list[object] = []


def _record(settings: object) -> None:
    GIVEN.append(settings)


def test_the_registry_hands_a_service_its_view() -> None:
    from control.engine.services import _entry
    from egress.smtp_client import settings as smtp_client

    tree = Settings()
    _entry("x", f"{__name__}:_record", smtp_client.Settings)(tree)
    _entry("y", f"{__name__}:_record", None)(tree)  # the control plane's services: the whole tree
    assert type(GIVEN[-2]) is smtp_client.Settings and GIVEN[-1] is tree


def test_queue_retention_per_queue_and_the_ciss_hold_time() -> None:
    from control.broker.retention import CISS_HOLD_DAYS, QueueRetentionSettings

    r = QueueRetentionSettings(spam_days=45)
    assert r.days_for("mail.spam") == 45 and r.days_for("mail.virus") == 30 and r.days_for("mail.retry.1") == 30
    with pytest.raises(ValidationError, match="greater than 14"):
        QueueRetentionSettings(ciss_days=CISS_HOLD_DAYS)  # would drop held mail before CISS decides


def test_the_expiry_notice_must_come_before_removal() -> None:
    from control.broker.retention import QueueRetentionSettings

    with pytest.raises(ValidationError, match="MAILGATE_RETENTION__EXPIRY_NOTICE_S"):
        QueueRetentionSettings(spam_days=1, expiry_notice_s=86400)
