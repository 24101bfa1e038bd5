"""control-server with TLS (optional): certificates made by trustme; the CLI's client trusts the CA."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trustme

from control.broker.topics import ensure_topics
from control.cli.client import ControlClient, ControlError
from control.proto.rpc import pb
from control.server.service import ControlServer
from core.settings import ControlSettings, KafkaSettings, Settings
from tests.integration.control.conftest import ADMIN_TOKEN
from tests.support.kafka import Broker
from tests.support.ports import free_port


def test_tls_server_and_client(broker: Broker, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    control = ControlSettings(port=free_port(), tokens={"admin:alice": ADMIN_TOKEN}, metrics_port_base=0,
                              tls_cert_file=tmp_path / "cert.pem", tls_key_file=tmp_path / "key.pem",
                              tls_ca_file=tmp_path / "ca.pem", token=ADMIN_TOKEN, timeout_s=5)
    settings = Settings(node="node-t", kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                                                           topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=1),
                        control=control)
    ensure_topics(settings)
    server = ControlServer(settings).start()
    try:
        with ControlClient(settings) as client:
            assert client.call("WhoAmI", pb.WhoAmIRequest()).name == "alice"
        plain = settings.model_copy(update={"control": control.model_copy(update={"tls_ca_file": None})})
        with ControlClient(plain) as client, pytest.raises(ControlError) as refused:
            client.call("WhoAmI", pb.WhoAmIRequest())
        assert refused.value.exit_code == 4  # a plaintext client cannot talk to the TLS server
    finally:
        server.stop()
