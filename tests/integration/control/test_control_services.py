"""The Services page through gRPC, on a node started by `mailgate up` on the real broker:
auth rules, health and reflection, stop/start of smtp-server, pause/resume of
message-validation with its lag, a killed service brought back, /metrics, the CLI."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from control.engine.services import SERVICES
from control.proto.rpc import pb
from core.kafka import make_producer
from schemas import default_codec, new_mail_id, pack_message
from tests.integration.control.conftest import ADMIN_TOKEN, NODE, USER_TOKEN, Node, mailgate, row, wait_until

STATE = pb.ServiceState


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def mail(i: int) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "s@outside.test", f"u{i}@example.com", f"paused {i}"
    msg.set_content(f"mail {i}")
    return msg.as_bytes()


async def send(port: int, count: int, first: int = 0) -> None:
    for i in range(first, first + count):
        await aiosmtplib.send(mail(i), sender="s@outside.test", recipients=[f"u{i}@example.com"],
                              hostname="127.0.0.1", port=port, timeout=30, start_tls=False)


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code(), info.value.details()


# -- security -------------------------------------------------------------------

def test_auth_rules(node: Node) -> None:
    stub = node.stub
    code, text = code_of(lambda: stub.ListServices(pb.ListServicesRequest(), timeout=10))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "token" in text
    code, _ = code_of(lambda: stub.WhoAmI(pb.WhoAmIRequest(), metadata=[("authorization", "Bearer wrong")],
                                          timeout=10))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    for method, request in (("ListServices", pb.ListServicesRequest()), ("StopService", pb.ServiceRequest(
            name="smtp-server")), ("PauseConsumers", pb.ConsumerGroupRequest(group="message-validation")),
            ("SetConfig", pb.SetConfigRequest(key="smtp_server.max_recipients", value="5")),
            ("Refresh", pb.ListServicesRequest())):
        code, text = code_of(lambda: node.user(method, request))
        assert code == grpc.StatusCode.PERMISSION_DENIED, method
        assert "administrators" in text
    assert node.user("WhoAmI", pb.WhoAmIRequest()).role == "user"
    assert node.admin("WhoAmI", pb.WhoAmIRequest()).name == "alice"


@pytest.mark.parametrize(("method", "request_", "says"), [
    ("StopService", pb.ServiceRequest(name="smtp-servr"), "unknown service 'smtp-servr'"),
    ("StopService", pb.ServiceRequest(name=""), "name a service"),
    ("StopService", pb.ServiceRequest(name="smtp-server", node="nowhere"), "no engine of node 'nowhere'"),
    ("StopService", pb.ServiceRequest(name="control-server"), "cannot be stopped through itself"),
    ("StartService", pb.ServiceRequest(name="remote-support"), "give a duration"),
    ("StartService", pb.ServiceRequest(name="remote-support", duration={"seconds": 10**6}), "longer than"),
    ("StartService", pb.ServiceRequest(name="smtp-server", duration={"seconds": 60}), "remote-support only"),
    ("PauseConsumers", pb.ConsumerGroupRequest(group="smtp-server"), "unknown consumer group"),
    ("ListQueue", pb.ListQueueRequest(queue="inbox"), "unknown queue 'inbox'"),
    ("ShowMail", pb.MailRequest(), "name the mail"),
    ("SetConfig", pb.SetConfigRequest(key="smtp_server.max_recipients", value="many"), "valid integer"),
    ("SetConfig", pb.SetConfigRequest(key="smtp_server.nope", value="1"), "unknown setting"),
    ("SetConfig", pb.SetConfigRequest(key="kafka.bootstrap_servers", value="x:1"), "not set through"),
    ("SetConfig", pb.SetConfigRequest(key="control.tokens", value="admin:x=y"), "is a secret"),
])
def test_bad_arguments_say_what_is_wrong(node: Node, method: str, request_: object, says: str) -> None:
    code, text = code_of(lambda: node.admin(method, request_))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert says in text


def test_health_and_reflection(node: Node) -> None:
    health = health_pb2_grpc.HealthStub(node.channel)
    for service in ("", "mailgate.control.v1.Control"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    db = ProtoReflectionDescriptorDatabase(node.channel)
    assert "mailgate.control.v1.Control" in set(db.get_services())
    pool = DescriptorPool(db)
    methods = {m.name for m in pool.FindServiceByName("mailgate.control.v1.Control").methods}
    assert {"ListServices", "StopService", "PauseConsumers", "ListQueue", "SetConfig"} <= methods


def grpcurl() -> str | None:
    return shutil.which("grpcurl") or next((str(p) for p in (Path.home() / "go" / "bin" / "grpcurl",)
                                            if p.is_file()), None)


def test_grpcurl_lists_and_calls(node: Node) -> None:
    tool = grpcurl()
    if tool is None:
        pytest.skip("grpcurl is not installed (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest)")
    listed = subprocess.run([tool, "-plaintext", node.address, "list", "mailgate.control.v1.Control"],
                            capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert "mailgate.control.v1.Control.ListServices" in listed.stdout
    called = subprocess.run([tool, "-plaintext", "-H", f"authorization: Bearer {ADMIN_TOKEN}", "-d", "{}",
                             node.address, "mailgate.control.v1.Control/ListServices"],
                            capture_output=True, text=True, timeout=30)
    assert called.returncode == 0, called.stderr
    assert '"name": "smtp-server"' in called.stdout and "SERVICE_STATE_RUNNING" in called.stdout
    denied = subprocess.run([tool, "-plaintext", "-d", "{}", node.address,
                             "mailgate.control.v1.Control/ListServices"], capture_output=True, text=True, timeout=30)
    assert denied.returncode != 0 and "Unauthenticated" in denied.stderr


# -- the services page ------------------------------------------------------------

def test_list_services_shows_state_since_pid_and_queue(node: Node) -> None:
    services = node.services()
    for name in ("smtp-server", "message-validation", "smtp-client", "control-server"):
        s = services[name]
        assert s.state == STATE.SERVICE_STATE_RUNNING and s.node == NODE, name
        assert s.pid > 0 and s.since.seconds > 0 and s.desired == "running", name
    validation = services["message-validation"].queue
    assert validation.topic == f"{node.gateway.prefix}{SERVICES['message-validation'].consumes}"
    assert validation.group == f"{node.gateway.prefix}mailgate.message-validation"
    assert services["smtp-client"].queue.topic == f"{node.gateway.prefix}mail.out"
    assert not services["smtp-server"].HasField("queue")
    assert services["remote-support"].state == STATE.SERVICE_STATE_STOPPED  # off by default


def test_stop_and_start_smtp_server(node: Node) -> None:
    port = node.gateway.smtp_port
    reply = node.admin("StopService", pb.ServiceRequest(name="smtp-server", reason="test"))
    assert reply.desired == "stopped" and reply.node == "*"
    wait_until("smtp-server reported stopped", lambda: node.service("smtp-server").state
               == STATE.SERVICE_STATE_STOPPED)
    assert refused(port)
    stopped = node.service("smtp-server")
    assert stopped.pid == 0 and stopped.desired == "stopped"
    node.admin("StartService", pb.ServiceRequest(name="smtp-server"))
    wait_until("smtp-server listening again", lambda: not refused(port))
    running = wait_until("smtp-server reported running", lambda: (s := node.service("smtp-server")).state
                         == STATE.SERVICE_STATE_RUNNING and s)
    assert running.since.seconds >= stopped.since.seconds
    asyncio.run(send(port, 1, first=900))
    node.sink.wait_for(1, timeout=60)


def test_pause_validation_lag_grows_then_drains(node: Node) -> None:
    before = len(node.sink.mails)
    node.admin("PauseConsumers", pb.ConsumerGroupRequest(group="message-validation", reason="test"))
    wait_until("validation reported paused", lambda: node.service("message-validation").queue.paused)
    asyncio.run(send(node.gateway.smtp_port, 12))
    queue = wait_until("lag of 12 in ListServices",
                       lambda: (q := node.service("message-validation").queue).depth == 12 and q, timeout=20)
    assert queue.lag_seconds >= 0
    refreshed = {s.name: s for s in node.admin("Refresh", pb.ListServicesRequest()).services}
    assert refreshed["message-validation"].queue.depth == 12
    assert len(node.sink.mails) == before  # nothing got through while paused
    node.admin("ResumeConsumers", pb.ConsumerGroupRequest(group=node.service("message-validation").queue.group))
    wait_until("lag drained to 0", lambda: node.service("message-validation").queue.depth == 0, timeout=60)
    mails = node.sink.wait_for(before + 12, timeout=60)
    subjects = {line for m in mails[before:] for line in m.data.decode().splitlines()
                if line.startswith("Subject: paused")}
    assert subjects == {f"Subject: paused {i}" for i in range(12)}
    assert not node.service("message-validation").queue.paused


def inject(node: Node, count: int) -> None:
    """MailReceived records straight onto mail.in, as smtp-server writes them."""
    codec, producer = default_codec(), make_producer(node.gateway.settings(), "test")
    for i in range(count):
        mail_id, raw = new_mail_id(), mail(100 + i)
        record = {"mail_id": mail_id, "event_time": int(time.time() * 1000), "node": NODE, "origin": "SMTP",
                  "mail_from": "s@outside.test", "rcpt_to": [f"u{100 + i}@example.com"], "size": len(raw),
                  "message": pack_message(raw)}
        for field in codec.schema("MailReceived").fields:
            record.setdefault(field.name, field.default if field.has_default else None)
        producer.produce(f"{node.gateway.prefix}mail.in", key=mail_id.encode(),
                         value=codec.encode("MailReceived", record), headers=codec.headers("MailReceived", mail_id))
    assert producer.flush(10) == 0


def test_pause_while_records_arrive_loses_none(node: Node) -> None:
    """Pausing a Faust app as records stream in: every record is still routed once resumed."""
    before = len(node.sink.mails)
    inject(node, 20)
    node.admin("PauseConsumers", pb.ConsumerGroupRequest(group="message-validation"))
    inject(node, 20)
    wait_until("validation reported paused", lambda: node.service("message-validation").queue.paused)
    node.admin("ResumeConsumers", pb.ConsumerGroupRequest(group="message-validation"))
    wait_until("lag drained to 0", lambda: node.service("message-validation").queue.depth == 0
               and not node.service("message-validation").queue.paused, timeout=60)
    node.sink.wait_for(before + 40, timeout=60)


def test_killed_service_is_brought_back(node: Node) -> None:
    old = node.service("message-validation")
    os.kill(old.pid, signal.SIGKILL)
    new = wait_until("message-validation running again with a new pid",
                     lambda: (s := node.service("message-validation")).state == STATE.SERVICE_STATE_RUNNING
                     and s.pid != old.pid and s, timeout=30)
    assert new.restarts == old.restarts + 1


def test_metrics_of_every_service(node: Node) -> None:
    names = ["smtp-server", "spam-filter", "message-validation", "smtp-client", "control-server"]
    port = {name: node.metrics_base + i for i, name in enumerate(SERVICES)}  # the engine's assignment
    pages = {}

    def page_of(name: str) -> str | None:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port[name]}/metrics", timeout=10).read().decode()
        except OSError:  # a service restarted by an earlier test may still be starting
            return None

    for name in names:
        pages[name] = wait_until(f"{name}'s /metrics answering", lambda: page_of(name), timeout=30)
        assert f'mailgate_service_up{{node="{NODE}",service="{name}"}} 1.0' in pages[name], name
        assert "process_cpu_seconds_total" in pages[name]
    asyncio.run(send(node.gateway.smtp_port, 1, first=950))
    smtp = page_of("smtp-server") or ""
    assert 'mailgate_mails_total{queue="mail.in",service="smtp-server"}' in smtp
    assert 'mailgate_latency_seconds_count{service="smtp-server",step="accept"}' in smtp
    def control_page() -> str | None:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port['control-server']}/metrics", timeout=10).read().decode()
        return page if 'mailgate_queue_records{queue="mail.in"}' in page and "mailgate_latency_seconds_count" in page \
            else None

    control = wait_until("queue sizes, lag and delivery latency on control-server's /metrics", control_page, timeout=30)
    assert f'mailgate_consumer_lag_records{{group="{node.gateway.prefix}mailgate.message-validation"' in control


# -- the CLI --------------------------------------------------------------------------

def test_cli_tables_and_exit_codes(node: Node) -> None:
    listed = mailgate(node, "services", "list")
    assert listed.returncode == 0, listed.stderr
    assert "smtp-server" in listed.stdout and "running" in listed.stdout and "mail.in" in listed.stdout
    bad = mailgate(node, "services", "stop", "smtp-servr")
    assert bad.returncode == 2 and "unknown service 'smtp-servr'" in bad.stderr
    unreachable = mailgate(node, "services", "list", port=1)
    assert unreachable.returncode == 4 and "cannot reach control-server at 127.0.0.1:1" in unreachable.stderr
    anonymous = mailgate(node, "services", "list", token=None)
    assert anonymous.returncode == 5 and "MAILGATE_CONTROL__TOKEN" in anonymous.stderr
    user = mailgate(node, "services", "stop", "smtp-server", token=USER_TOKEN)
    assert user.returncode == 5 and "administrators" in user.stderr
    assert mailgate(node, "queue", "list", token=USER_TOKEN).returncode == 0
    paused = mailgate(node, "services", "pause", "smtp-client")
    assert paused.returncode == 0 and "pause of" in paused.stdout
    resumed = mailgate(node, "services", "resume", "smtp-client")
    assert resumed.returncode == 0


def test_cli_services_stop_start_restart(node: Node) -> None:
    port = node.gateway.smtp_port
    stopped = mailgate(node, "services", "stop", "smtp-server", "--reason", "cli test")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == "stop of smtp-server on every node asked"
    wait_until("smtp-server stopped", lambda: refused(port) and node.service("smtp-server").state
               == STATE.SERVICE_STATE_STOPPED)
    cells = row(mailgate(node, "services", "list", "--node", NODE).stdout, "smtp-server")
    assert cells[1:3] == [NODE, "stopped"] and cells[4] == "-" and cells[-1] == "stopped"  # no pid while stopped

    started = mailgate(node, "services", "start", "smtp-server")
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "start of smtp-server on every node asked"
    wait_until("smtp-server listening again", lambda: not refused(port))
    old = wait_until("smtp-server reported running", lambda: (s := node.service("smtp-server")).state
                     == STATE.SERVICE_STATE_RUNNING and s)
    cells = row(mailgate(node, "services", "list").stdout, "smtp-server")
    assert cells[1:3] == [NODE, "running"] and cells[4] == str(old.pid) and cells[-1] == "running"

    restarted = mailgate(node, "services", "restart", "smtp-server", "--node", NODE)
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.strip() == f"restart of smtp-server on node {NODE} asked"
    new = wait_until("smtp-server restarted with a new pid", lambda: (s := node.service("smtp-server")).state
                     == STATE.SERVICE_STATE_RUNNING and s.pid not in (0, old.pid) and s)
    wait_until("smtp-server listening after the restart", lambda: not refused(port))
    assert new.desired == "running"


@pytest.mark.parametrize(("args", "code", "says"), [
    (("start", "smtp-servr"), 2, "unknown service 'smtp-servr'; the services are: smtp-server,"),
    (("restart", "smtp-servr"), 2, "unknown service 'smtp-servr'"),
    (("restart", "smtp-server", "--node", "nowhere"), 2,
     f"no engine of node 'nowhere' has reported; the nodes are: {NODE}"),
    (("start", "remote-support"), 2, "remote-support runs for a limited time only: give a duration"),
    (("start", "remote-support", "--duration", "soon"), 2, "'soon' is not a duration: use e.g. 90s, 30m, 2h"),
    (("start", "smtp-server", "--duration", "30m"), 2, "a duration applies to remote-support only"),
])
def test_cli_services_errors(node: Node, args: tuple[str, ...], code: int, says: str) -> None:
    done = mailgate(node, "services", *args)
    assert done.returncode == code, done.stderr
    assert says in " ".join(done.stderr.split())  # rich may wrap a long line
    assert done.stdout == ""
