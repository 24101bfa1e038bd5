"""compose.yaml describes 3 KRaft brokers and 2 gateway nodes that agree with each other.

Only parsed here (pyyaml); `docker compose config` checks it for real where a
Docker engine with the compose plugin answers (tests/integration/test_compose_engine.py).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from core.kafka import max_record_bytes
from control.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def services() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]


def test_three_kraft_brokers_form_one_quorum() -> None:
    brokers = {n: s for n, s in services().items() if s.get("image", "").startswith("apache/kafka:")}
    assert sorted(brokers) == ["kafka1", "kafka2", "kafka3"]
    voters = {b["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for b in brokers.values()}
    assert voters == {"1@kafka1:9093,2@kafka2:9093,3@kafka3:9093"}
    ids = sorted(b["environment"]["KAFKA_NODE_ID"] for b in brokers.values())
    assert ids == ["1", "2", "3"]
    for name, b in brokers.items():
        env = b["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= max_record_bytes(Settings())
        assert b["volumes"]  # data survives a container restart


def test_two_gateway_nodes_use_the_cluster_replicated() -> None:
    svcs = services()
    gateways = {n: s for n, s in svcs.items() if s.get("command") == ["up"]}
    assert sorted(gateways) == ["gateway1", "gateway2"]
    for g in gateways.values():
        env = g["environment"]
        assert env["MAILGATE_KAFKA__BOOTSTRAP_SERVERS"] == "kafka1:9092,kafka2:9092,kafka3:9092"
        assert env["MAILGATE_KAFKA__REPLICATION_FACTOR"] == "3"
        assert env["MAILGATE_SMTP_SERVER__HOST"] == "0.0.0.0"
        assert g["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert {g["environment"]["MAILGATE_NODE"] for g in gateways.values()} == {"gateway1", "gateway2"}
    assert svcs["topics"]["command"] == ["topics", "create"]
    assert (ROOT / "Dockerfile").exists()
