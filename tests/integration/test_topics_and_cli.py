"""`mailgate topics create` on the real broker, the Kafka backends, and CLI errors."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from confluent_kafka.admin import ConfigResource

from control.broker.topics import ensure_topics
from core.kafka import make_admin, max_record_bytes
from core.settings import KafkaSettings, Settings, SmtpServerSettings
from schemas.topics import TOPICS
from tests.support.kafka import Broker, container_broker, docker_engine_problem
from tests.support.ports import free_port


def mailgate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    outside = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    return subprocess.run([sys.executable, "-m", "control.cli", *args], env={**outside, **env},
                          capture_output=True, text=True, timeout=120)


def test_topics_create_is_idempotent_and_shapes_the_topics(broker: Broker) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    env = {"MAILGATE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers, "MAILGATE_KAFKA__TOPIC_PREFIX": prefix,
           "MAILGATE_SMTP_SERVER__MAX_MESSAGE_SIZE": str(40 * 1024 * 1024), "COLUMNS": "200"}
    first = mailgate("topics", "create", **env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created") == len(TOPICS)
    second = mailgate("topics", "create", **env)
    assert second.returncode == 0, second.stderr
    assert "created" not in second.stdout and second.stdout.count("exists") == len(TOPICS)

    settings = Settings(kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix),
                        smtp_server=SmtpServerSettings(max_message_size=40 * 1024 * 1024))
    admin = make_admin(settings)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, prefix + spec.name) for spec in TOPICS]
    configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
    for spec in TOPICS:
        config = configs[prefix + spec.name]
        assert (config["cleanup.policy"].value == "compact") == spec.compacted, spec.name
        if spec.carries_mail:
            assert int(config["max.message.bytes"].value) >= max_record_bytes(settings) > 40 * 1024 * 1024
    meta = admin.list_topics(timeout=10).topics
    assert len(meta[prefix + "mail.in"].partitions) == settings.kafka.partitions
    assert len(meta[prefix + "control.desired"].partitions) == 1


def test_ensure_topics_reports_existing_ones(broker: Broker) -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                                            topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=2))
    assert {r.status for r in ensure_topics(settings)} == {"created"}
    assert {r.status for r in ensure_topics(settings)} == {"exists"}


def test_unreachable_kafka_is_a_clear_cli_error() -> None:
    dead = f"127.0.0.1:{free_port()}"
    run = mailgate("topics", "create", MAILGATE_KAFKA__BOOTSTRAP_SERVERS=dead,
                   MAILGATE_KAFKA__EXTRA='{"socket.connection.setup.timeout.ms": "2000"}')
    assert run.returncode == 1
    assert f"cannot reach Kafka at {dead}" in run.stderr and "MAILGATE_KAFKA__BOOTSTRAP_SERVERS" in run.stderr
    assert "Traceback" not in run.stderr


def test_kafka_commands_refuse_when_an_external_cluster_is_set() -> None:
    run = mailgate("kafka", "start", MAILGATE_KAFKA__BOOTSTRAP_SERVERS="kafka1:9092")
    assert run.returncode == 1 and "external cluster is configured (kafka1:9092)" in run.stderr


def test_bad_setting_names_the_key_and_its_variable() -> None:
    run = mailgate("topics", "list", MAILGATE_KAFKA__PARTITIONS="many")
    assert run.returncode == 1
    assert "kafka.partitions (MAILGATE_KAFKA__PARTITIONS)" in run.stderr and "Traceback" not in run.stderr


def test_container_backend_produces_and_consumes() -> None:
    """The testcontainers backend is real where a Docker engine answers; skipped otherwise."""
    problem = docker_engine_problem()
    if problem:
        pytest.skip(problem)
    from confluent_kafka import Consumer, Producer

    with container_broker() as b:
        Producer({"bootstrap.servers": b.bootstrap_servers}).produce("probe", b"v")
        consumer = Consumer({"bootstrap.servers": b.bootstrap_servers, "group.id": "probe",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe(["probe"])
        msg = consumer.poll(30)
        assert msg is not None and msg.value() == b"v"
        consumer.close()


def test_a_newer_writer_schema_is_found_in_the_schemas_topic(broker: Broker) -> None:
    """An old reader resolves a record written with a schema it does not ship (schemas/README.md)."""
    import json

    import avro.schema
    from confluent_kafka import Producer

    from schemas import Codec
    from schemas.codec import SCHEMA_DIR, fingerprint
    from schemas.registry import codec_for

    settings = Settings(kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                                            topic_prefix=f"t{uuid.uuid4().hex[:8]}."))
    ensure_topics(settings)
    newer = json.loads((SCHEMA_DIR / "MailDelivered.avsc").read_text())
    newer["fields"].append({"name": "tls", "type": ["null", "string"], "default": None})
    schema = avro.schema.parse(json.dumps(newer))
    # what `mailgate topics create` of the newer release would publish
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    producer.produce(settings.kafka.topic_prefix + "schemas", key=fingerprint(schema).hex().encode(),
                     value=schema.canonical_form.encode())
    assert producer.flush(10) == 0
    record = {"mail_id": "01ID", "event_time": 1, "node": "new", "destination": "example.com",
              "rcpt_to": ["a@example.com"], "next_hop": "mx:25", "reply_code": 250, "reply_text": "ok",
              "attempt": 1, "tls": "TLSv1.3"}
    data = Codec([schema]).encode("MailDelivered", record)
    decoded = codec_for(settings).decode(data, expect="MailDelivered").record
    expected = {k: v for k, v in record.items() if k != "tls"}
    assert "tls" not in decoded and {k: decoded[k] for k in expected} == expected
