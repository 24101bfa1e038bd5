"""Settings from the environment and from a TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings


pytestmark = pytest.mark.usefixtures("clean_env")  # tests/unit/conftest.py


def test_defaults_use_the_local_broker() -> None:
    s = Settings()
    assert s.uses_local_broker and s.bootstrap_servers == "127.0.0.1:9092"
    assert s.smtp_server.port == 2525 and s.smtp_server.domains == ["example.com"]


def test_environment_sets_an_external_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILGATE_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("MAILGATE_SMTP_SERVER__DOMAINS", "Example.com, example.org")
    monkeypatch.setenv("MAILGATE_SMTP_CLIENT__SMARTHOST", "[::1]:2600")
    s = Settings()
    assert not s.uses_local_broker and s.bootstrap_servers == "k1:9092,k2:9092"
    assert s.smtp_server.domains == ["example.com", "example.org"]
    assert s.smtp_client.smarthost_addr == ("::1", 2600)


def test_toml_file_and_env_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "mailgate.toml").write_text('[kafka]\nbootstrap_servers = "file:9092"\npartitions = 12\n'
                                            '[smtp_server]\ndomains = ["a.test"]\n')
    monkeypatch.setenv("MAILGATE_KAFKA__PARTITIONS", "3")
    s = Settings()
    assert s.bootstrap_servers == "file:9092" and s.kafka.partitions == 3  # env wins over the file
    assert s.smtp_server.domains == ["a.test"]


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
