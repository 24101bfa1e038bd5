"""Benchmark (not a test): accepted mails/s at the SMTP door, mailgate vs Postfix's smtp-sink.

    python bench/smtp_accept.py [--messages 5000] [--sessions 20] [--size 4096] [--listeners 1]

Runs, in one go on this machine: a local Kafka broker of its own (temp dir, free
ports), `mailgate service smtp-server` (each 250 only after Kafka acks=all), and
Postfix's `smtp-source -s SESSIONS -m MESSAGES -l SIZE` against it; then the same
`smtp-source` against Postfix's `smtp-sink` (which accepts and discards: the
protocol ceiling). Prints both rates and the ratio, and checks that mail.in holds
exactly one record per accepted mail.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scratch import start_scratch_broker  # noqa: E402
from control.broker.topics import ensure_topics, topic_sizes  # noqa: E402
from core.settings import KafkaSettings, Settings  # noqa: E402
from tests.support.ports import free_port, wait_listening  # noqa: E402


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        sys.exit(f"{name} not found: install Postfix (apt-get install postfix) — `make setup` does")
    return path


def smtp_source(port: int, args: argparse.Namespace) -> float:
    cmd = [tool("smtp-source"), "-s", str(args.sessions), "-m", str(args.messages), "-l", str(args.size),
           "-f", "bench@outside.test", "-t", "rcpt@example.com", f"127.0.0.1:{port}"]
    began = time.monotonic()
    run = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.monotonic() - began
    if run.returncode != 0 or run.stderr.strip():
        print(f"  smtp-source said: {(run.stdout + run.stderr).strip()[:500]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mailgate-bench-"))
    broker = start_scratch_broker(tmp)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        prefix = "bench."
        settings = Settings(home=tmp, kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                                                          topic_prefix=prefix))
        ensure_topics(settings)
        port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")},
               "MAILGATE_HOME": str(tmp), "MAILGATE_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
               "MAILGATE_KAFKA__TOPIC_PREFIX": prefix, "MAILGATE_SMTP_SERVER__PORT": str(port),
               "MAILGATE_LOG_LEVEL": "warning"}
        procs.append(subprocess.Popen([sys.executable, "-m", "control.cli", "service", "smtp-server"],
                                      env=env, cwd=tmp))
        wait_listening("127.0.0.1", port)
        print(f"mailgate smtp-server: smtp-source -s {args.sessions} -m {args.messages} -l {args.size} ...",
              flush=True)
        mg = smtp_source(port, args)
        in_queue = topic_sizes(settings)[prefix + "mail.in"][1]

        sink_port = free_port()
        as_root = ["-u", "nobody"] if os.geteuid() == 0 else []  # smtp-sink refuses to run as root
        procs.append(subprocess.Popen([tool("smtp-sink"), *as_root, f"127.0.0.1:{sink_port}", "256"],
                                      stdout=subprocess.DEVNULL))
        wait_listening("127.0.0.1", sink_port)
        print("Postfix smtp-sink: the same smtp-source run ...", flush=True)
        sink = smtp_source(sink_port, args)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    n = args.messages
    print()
    print(f"{'peer':<42} {'seconds':>8} {'mails/s':>9}")
    print(f"{'mailgate smtp-server (250 after acks=all)':<42} {mg:>8.2f} {n / mg:>9.0f}")
    print(f"{'Postfix smtp-sink (accept and discard)':<42} {sink:>8.2f} {n / sink:>9.0f}")
    print(f"ratio mailgate / smtp-sink: {sink / mg:.2f}")
    print(f"records in mail.in: {in_queue} (accepted: {n})")
    if in_queue != n:
        sys.exit("mail.in does not hold exactly one record per mail sent")


if __name__ == "__main__":
    main()
