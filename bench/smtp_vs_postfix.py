"""Benchmark (not a test): mails/s accepted at the SMTP door, mailgate vs Postfix, one run.

    python bench/smtp_vs_postfix.py [--messages 20000] [--sessions 20] [--size 4096] [--listeners 1]
                                    [--warmup 20000] [--skip-postfix] [--env MAILGATE_X=Y ...]

In one go on this machine: a Kafka broker of its own (temp dir, free ports);
`mailgate service smtp-server` with LISTENERS processes sharing the port
(SO_REUSEPORT), each 250 only after Kafka acks=all; then a Postfix instance of its
own (own config and queue dir; no milter) that queues every mail to disk (fsync)
and delivers it with the discard transport. Against each: Postfix's
`smtp-source -s SESSIONS -m MESSAGES -l SIZE` (one connection per mail), after the
same warm-up run for both (the broker's JIT needs it; Postfix gets it too). Prints
both rates, the ratio, the load before the run, and checks that mail.in holds one
record per mail sent. The target of issue #4: mailgate >= 2x Postfix.

Also printed: CPU milliseconds per mail of each side's processes during the timed
run (from /proc: user + system time, children reaped included): mailgate's
smtp-server and the Kafka broker, Postfix's master and every daemon under it, and
smtp-source for both. On 2 shared cores the rate follows the sum.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scratch import start_scratch_broker
from control.topics import ensure_topics, topic_sizes
from core.settings import KafkaSettings, Settings
from tests.support.ports import free_port, wait_listening

MASTER_CF = """\
{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
config_directory = {conf}
queue_directory = {queue}
data_directory = {data}
meta_directory = /etc/postfix
myhostname = bench.localdomain
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.com
transport_maps = inline:{{ example.com=discard: }}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
maillog_file = {log}
maillog_file_prefixes = {logdir}, /var, /dev/stdout
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_connection_count_limit = 0
in_flow_delay = 0
default_process_limit = 100
smtpd_error_sleep_time = 0
message_size_limit = 52428800
qmgr_message_active_limit = 40000
"""


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        sys.exit(f"{name} not found: install Postfix (apt-get install postfix) — `make setup` does")
    return path


def cpu_s(pid: int) -> float:
    """User + system seconds of ``pid``, its reaped children, and its living descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_s(int(child))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_s(pid) for name, pid in pids.items()}


def smtp_source(port: int, args: argparse.Namespace) -> float:
    cmd = [tool("smtp-source"), "-s", str(args.sessions), "-m", str(args.messages), "-l", str(args.size),
           "-f", "bench@outside.test", "-t", "rcpt@example.com", f"127.0.0.1:{port}"]
    began = time.monotonic()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    args.source_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    if run.returncode != 0 or run.stderr.strip():
        print(f"  smtp-source said: {(run.stdout + run.stderr).strip()[:500]}")
    return elapsed


def mailgate_run(tmp: Path, args: argparse.Namespace) -> tuple[float, int]:
    broker = start_scratch_broker(tmp)
    proc: subprocess.Popen[bytes] | None = None
    try:
        prefix = "bench."
        settings = Settings(home=tmp, kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                                                          topic_prefix=prefix))
        ensure_topics(settings)
        port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")},
               "MAILGATE_HOME": str(tmp), "MAILGATE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
               "MAILGATE_KAFKA__TOPIC_PREFIX": prefix, "MAILGATE_SMTP_SERVER__PORT": str(port),
               "MAILGATE_SMTP_SERVER__LISTENERS": str(args.listeners), "MAILGATE_LOG_LEVEL": "warning",
               "MAILGATE_CONTROL__METRICS_PORT_BASE": str(free_port()), **dict(e.split("=", 1) for e in args.env)}
        proc = subprocess.Popen([sys.executable, "-m", "control.cli", "service", "smtp-server"], env=env, cwd=tmp)
        wait_listening("127.0.0.1", port)
        time.sleep(2.0 + args.listeners)  # every listener process up (they share the port)
        smtp_source(port, argparse.Namespace(**{**vars(args), "messages": args.warmup}))  # JIT, caches
        print(f"mailgate smtp-server x{args.listeners}: smtp-source -s {args.sessions} -m {args.messages} "
              f"-l {args.size} ...", flush=True)
        before = topic_sizes(settings)[prefix + "mail.in"][1]
        pids = {"smtp-server": proc.pid, "Kafka broker": broker.pid() or 0}
        cpu0 = cpu_of(pids)
        elapsed = smtp_source(port, args)
        args.cpu["mailgate"] = {k: v - cpu0[k] for k, v in cpu_of(pids).items()} | {"smtp-source": args.source_cpu}
        return elapsed, topic_sizes(settings)[prefix + "mail.in"][1] - before
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        broker.stop()


def postfix_run(tmp: Path, args: argparse.Namespace) -> float:
    conf, queue, data = tmp / "etc", tmp / "queue", tmp / "data"
    for d in (conf, queue, data):
        d.mkdir(parents=True)
    shutil.chown(data, "postfix")
    port = free_port()
    (conf / "main.cf").write_text(MAIN_CF.format(conf=conf, queue=queue, data=data, log=tmp / "postfix.log", logdir=tmp))
    (conf / "master.cf").write_text(MASTER_CF.format(port=f"127.0.0.1:{port}"))
    postfix = tool("postfix")
    started = subprocess.run([postfix, "-c", str(conf), "start"], capture_output=True, text=True, check=False,
                             stdin=subprocess.DEVNULL)
    if started.returncode != 0:
        log = (tmp / "postfix.log").read_text() if (tmp / "postfix.log").exists() else ""
        sys.exit(f"postfix did not start: {started.stdout}{started.stderr}{log[-2000:]}")
    try:
        wait_listening("127.0.0.1", port)
        smtp_source(port, argparse.Namespace(**{**vars(args), "messages": args.warmup}))  # the same warm-up
        print("Postfix (disk queue, discard transport): the same smtp-source run ...", flush=True)
        pids = {"Postfix master + daemons": int((queue / "pid" / "master.pid").read_text().split()[0])}
        cpu0 = cpu_of(pids)
        elapsed = smtp_source(port, args)
        time.sleep(2)  # the queue manager and discard finish what was accepted; their CPU counts too
        args.cpu["Postfix"] = {k: v - cpu0[k] for k, v in cpu_of(pids).items()} | {"smtp-source": args.source_cpu}
        return elapsed
    finally:
        subprocess.run([postfix, "-c", str(conf), "stop"], check=False, capture_output=True)
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--listeners", type=int, default=1,
                        help="smtp-server processes; on 2 cores shared with Kafka and smtp-source, 1 is fastest")
    parser.add_argument("--warmup", type=int, default=20000, help="mails sent to each peer before the clock starts")
    parser.add_argument("--skip-postfix", action="store_true")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra setting for mailgate, e.g. MAILGATE_KAFKA__LINGER_MS=1")
    args = parser.parse_args()
    args.cpu = {}
    load = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="mailgate-bench-"))
    tmp.chmod(0o755)  # Postfix's daemons run as postfix
    try:
        mg, in_queue = mailgate_run(tmp / "mailgate", args)
        pf = None if args.skip_postfix else postfix_run(tmp / "postfix", args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = args.messages
    print()
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)")
    print(f"{'peer':<52} {'seconds':>8} {'mails/s':>9}")
    print(f"{f'mailgate smtp-server x{args.listeners} (250 after acks=all)':<52} {mg:>8.2f} {n / mg:>9.0f}")
    if pf is not None:
        print(f"{'Postfix (queue on disk, discard transport)':<52} {pf:>8.2f} {n / pf:>9.0f}")
        print(f"ratio mailgate / Postfix: {pf / mg:.2f}")
    print(f"records in mail.in: {in_queue} (sent: {n})")
    for side, parts in args.cpu.items():
        print(f"CPU ms per mail, {side}: " + ", ".join(f"{k} {1000 * v / n:.2f}" for k, v in parts.items())
              + f"; total {1000 * sum(parts.values()) / n:.2f}")
    if in_queue != n:
        sys.exit("mail.in does not hold exactly one record per mail sent")


if __name__ == "__main__":
    main()
