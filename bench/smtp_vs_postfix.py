"""Benchmark (not a test): mails/s accepted at the SMTP door, mailgate vs Postfix, one run.

    python bench/smtp_vs_postfix.py [--messages 20000] [--sessions 20] [--size 4096] [--listeners 1]
                                    [--warmup 20000] [--rounds 3] [--skip-postfix] [--env MAILGATE_X=Y ...]

In one go on this machine: a Kafka broker of its own (temp dir, free ports);
`mailgate service smtp-server` with LISTENERS processes sharing the port
(SO_REUSEPORT), each 250 only after Kafka acks=all; and a Postfix instance of its
own (own config and queue dir; no milter) that queues every mail to disk (fsync)
and delivers it with the discard transport. Against each: Postfix's
`smtp-source -s SESSIONS -m MESSAGES -l SIZE` (one connection per mail), after the
same warm-up run for both (the broker's JIT needs it; Postfix gets it too). Then
ROUNDS timed runs of each, taking turns (the order swapped every round), so that
a slow spell of this shared machine falls on both sides: prints every round's
rates and ratio and their medians, the load before the run, and checks that
mail.in holds one record per mail sent. The target of issue #4: mailgate >= 2x
Postfix. Both peers stay up for the whole run; the idle one costs next to nothing.

Also printed: CPU milliseconds per mail of each side's processes during its timed
runs (from /proc: user + system time, children reaped included): mailgate's
smtp-server and the Kafka broker, Postfix's master and every daemon under it, and
smtp-source for both. On 2 shared cores the rate follows the sum.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scratch import start_scratch_broker
from control.broker.topics import ensure_topics, topic_sizes
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


@dataclass
class Peer:
    """One side, started and warmed up: ``run()`` times one smtp-source run against it."""

    name: str
    port: int
    pids: dict[str, int]
    settle_s: float = 0.0  # after the run, for work left in queues (its CPU counts too)
    mail_in: Callable[[], int] | None = None  # records in mail.in (mailgate only)

    def run(self, args: argparse.Namespace) -> tuple[float, dict[str, float]]:
        cpu0 = cpu_of(self.pids)
        elapsed = smtp_source(self.port, args)
        time.sleep(self.settle_s)
        return elapsed, {k: v - cpu0[k] for k, v in cpu_of(self.pids).items()} | {"smtp-source": args.source_cpu}


@contextmanager
def mailgate(tmp: Path, args: argparse.Namespace) -> Iterator[Peer]:
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
        print(f"mailgate smtp-server x{args.listeners}: warm-up ({args.warmup} mails) ...", flush=True)
        smtp_source(port, argparse.Namespace(**{**vars(args), "messages": args.warmup}))  # JIT, caches
        yield Peer(f"mailgate smtp-server x{args.listeners} (250 after acks=all)", port,
                   {"smtp-server": proc.pid, "Kafka broker": broker.pid() or 0},
                   mail_in=lambda: topic_sizes(settings)[prefix + "mail.in"][1])
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        broker.stop()


@contextmanager
def postfix(tmp: Path, args: argparse.Namespace) -> Iterator[Peer]:
    conf, queue, data = tmp / "etc", tmp / "queue", tmp / "data"
    for d in (conf, queue, data):
        d.mkdir(parents=True)
    shutil.chown(data, "postfix")
    port = free_port()
    (conf / "main.cf").write_text(MAIN_CF.format(conf=conf, queue=queue, data=data, log=tmp / "postfix.log", logdir=tmp))
    (conf / "master.cf").write_text(MASTER_CF.format(port=f"127.0.0.1:{port}"))
    command = tool("postfix")
    started = subprocess.run([command, "-c", str(conf), "start"], capture_output=True, text=True, check=False,
                             stdin=subprocess.DEVNULL)
    if started.returncode != 0:
        log = (tmp / "postfix.log").read_text() if (tmp / "postfix.log").exists() else ""
        sys.exit(f"postfix did not start: {started.stdout}{started.stderr}{log[-2000:]}")
    try:
        wait_listening("127.0.0.1", port)
        print("Postfix (disk queue, discard transport): the same warm-up ...", flush=True)
        smtp_source(port, argparse.Namespace(**{**vars(args), "messages": args.warmup}))
        time.sleep(2)
        yield Peer("Postfix (queue on disk, discard transport)", port,
                   {"Postfix master + daemons": int((queue / "pid" / "master.pid").read_text().split()[0])},
                   settle_s=2.0)  # the queue manager and discard finish what was accepted
    finally:
        subprocess.run([command, "-c", str(conf), "stop"], check=False, capture_output=True)
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--listeners", type=int, default=1,
                        help="smtp-server processes; on 2 cores shared with Kafka and smtp-source, 1 is fastest")
    parser.add_argument("--warmup", type=int, default=20000, help="mails sent to each peer before the clock starts")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed runs of each peer, taking turns (mailgate first in odd rounds, Postfix in even)")
    parser.add_argument("--skip-postfix", action="store_true")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra setting for mailgate, e.g. MAILGATE_KAFKA__LINGER_MS=1")
    args = parser.parse_args()
    load = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="mailgate-bench-"))
    tmp.chmod(0o755)  # Postfix's daemons run as postfix
    n = args.messages
    runs: dict[str, list[tuple[float, dict[str, float]]]] = {}
    try:
        with ExitStack() as stack:
            peers = [stack.enter_context(mailgate(tmp / "mailgate", args))]
            if not args.skip_postfix:
                peers.append(stack.enter_context(postfix(tmp / "postfix", args)))
            before = peers[0].mail_in() if peers[0].mail_in else 0
            for r in range(args.rounds):
                for peer in peers if r % 2 == 0 else peers[::-1]:
                    print(f"round {r + 1}/{args.rounds}: smtp-source -s {args.sessions} -m {n} -l {args.size} "
                          f"into {peer.name} ...", flush=True)
                    runs.setdefault(peer.name, []).append(peer.run(args))
            in_queue = (peers[0].mail_in() if peers[0].mail_in else 0) - before
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(runs, args, load, in_queue)


def report(runs: dict[str, list[tuple[float, dict[str, float]]]], args: argparse.Namespace,
           load: tuple[float, float, float], in_queue: int) -> None:
    n, names = args.messages, list(runs)
    print()
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)")
    print(f"{'peer':<52} " + " ".join(f"{f'round {r + 1}':>8}" for r in range(args.rounds)) + f" {'median':>8}")
    for name in names:
        rates = [n / elapsed for elapsed, _ in runs[name]]
        print(f"{name:<52} " + " ".join(f"{x:>8.0f}" for x in rates) + f" {statistics.median(rates):>8.0f}  mails/s")
    if len(names) == 2:
        ratios = [pf / mg for (mg, _), (pf, _) in zip(runs[names[0]], runs[names[1]])]
        print(f"{'ratio mailgate / Postfix':<52} " + " ".join(f"{x:>8.2f}" for x in ratios)
              + f" {statistics.median(ratios):>8.2f}")
    print(f"records in mail.in: {in_queue} (sent: {n * args.rounds})")
    for name in names:
        parts: dict[str, float] = {}
        for _, cpu in runs[name]:
            for k, v in cpu.items():
                parts[k] = parts.get(k, 0.0) + v
        total = n * args.rounds
        print(f"CPU ms per mail, {name.split(' (')[0]}: " + ", ".join(f"{k} {1000 * v / total:.2f}" for k, v in parts.items())
              + f"; total {1000 * sum(parts.values()) / total:.2f}")
    if in_queue != n * args.rounds:
        sys.exit("mail.in does not hold exactly one record per mail sent")


if __name__ == "__main__":
    main()
