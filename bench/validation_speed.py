"""Benchmark (not a test): mails/s and latency of message-validation's content checks
with a real clamd, against clamdscan on the same files as the peer.

    python bench/validation_speed.py [--mails 2000] [--concurrency 1,4] [--transport unix|tcp]

Takes N mails of the SpamAssassin corpus (shared/corpora/spamassassin/*, all six
folders in turn, read in place and held in memory before timing), starts a real clamd
with the test signature database (tests/support/clamd.py), and times, per mail, what
the validation stage does: walk_message (MIME, archives), check_attachments (policy),
scan_message (INSTREAM of the raw mail plus each decoded part). At each concurrency
(mails in flight at once) it prints mails/s and p50/p99 latency.

The peer is clamdscan on the same files against a fresh clamd of the same
configuration (a fresh one, since clamd caches the hashes of clean files): once with
``--stream`` (one INSTREAM per file, one after the other) and, over the unix socket,
once with ``--multiscan --fdpass`` (clamd's own threads). clamdscan sends each file whole and
applies no policy, so it does less work per mail than the stage.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams.validation.attachments import check_attachments  # noqa: E402
from streams.validation.clamd import ClamdClient, ClamdError  # noqa: E402
from streams.validation.mime import walk_message  # noqa: E402
from streams.validation.settings import AttachmentPolicySettings, MimeLimits  # noqa: E402
from streams.validation.virus import NOT_SCANNED_PREFIXES, scan_message  # noqa: E402
from tests.support.clamd import Clamd, corpus_paths  # noqa: E402

FOLDERS = ("easy_ham", "easy_ham_2", "hard_ham", "hard_ham_2", "spam", "spam_2")


@dataclass
class Run:
    label: str
    seconds: float
    latencies: list[float]
    verdicts: Counter[str]
    blocked: int = 0
    streams: int = 0

    def line(self, n: int) -> str:
        lat = sorted(self.latencies)

        def pct(q: float) -> str:
            return f"{lat[min(len(lat) - 1, int(q * len(lat)))] * 1000:7.2f}" if lat else "      -"

        return (f"{self.label:<38} {n / self.seconds:8.1f} mails/s   p50 {pct(0.50)} ms   p99 {pct(0.99)} ms   "
                f"({self.seconds:.2f} s)")


def pick(n: int) -> list[Path]:
    """N corpus files, the folders interleaved (ham and spam alike), cycling when N is larger."""
    folders = [corpus_paths(f) for f in FOLDERS]
    mixed = [p for group in itertools.zip_longest(*folders) for p in group if p is not None]
    return list(itertools.islice(itertools.cycle(mixed), n))


async def validate_all(mails: list[bytes], client: ClamdClient, concurrency: int) -> Run:
    policy, limits = AttachmentPolicySettings(), MimeLimits()
    latencies: list[float] = []
    verdicts: Counter[str] = Counter()
    blocked = streams = 0
    queue = iter(mails)

    async def worker() -> None:
        nonlocal blocked, streams
        for raw in queue:
            started = time.perf_counter()
            walk = walk_message(raw, limits)
            if check_attachments(walk, policy).blocked:
                blocked += 1
            try:
                verdict = await scan_message(raw, client, walk=walk)
                verdicts[verdict.kind] += 1
                streams += verdict.streams
            except ClamdError as exc:
                verdicts[f"error:{type(exc).__name__}"] += 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(f"validation, {concurrency} in flight", time.perf_counter() - started, latencies, verdicts,
               blocked, streams)


def clamdscan(cd: Clamd, files: list[Path], transport: str, mode: list[str], label: str) -> Run:
    with tempfile.TemporaryDirectory(prefix="mailgate-bench-") as tmp:
        conf = Path(tmp) / "clamdscan.conf"
        conf.write_text(f"LocalSocket {cd.socket_path}\n" if transport == "unix"
                        else f"TCPSocket {cd.port}\nTCPAddr {cd.host}\n")
        file_list = Path(tmp) / "files"
        file_list.write_text("".join(f"{p}\n" for p in files))
        started = time.perf_counter()
        proc = subprocess.run(["clamdscan", f"--config-file={conf}", "--no-summary", "--infected",
                               f"--file-list={file_list}", *mode], capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
    found = [line for line in proc.stdout.splitlines() if line.endswith(" FOUND")]
    not_scanned = sum(1 for line in found if any(p in line for p in NOT_SCANNED_PREFIXES))
    infected = len(found) - not_scanned
    errors = sum(1 for line in proc.stdout.splitlines() + proc.stderr.splitlines() if "ERROR" in line)
    if proc.returncode not in (0, 1):
        print(f"  clamdscan exited {proc.returncode}: {proc.stderr.strip()[:300]}", file=sys.stderr)
    verdicts = Counter({"clean": len(files) - len(found) - errors, "infected": infected,
                        "unscannable (Heuristics.Limits/Encrypted)": not_scanned, "error": errors})
    return Run(label, seconds, [], verdicts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mails", type=int, default=2000)
    ap.add_argument("--concurrency", default="1,4", help="mails in flight, comma-separated runs")
    ap.add_argument("--transport", choices=["unix", "tcp"], default="unix")
    args = ap.parse_args()

    files = pick(args.mails)
    mails = [p.read_bytes() for p in files]
    size = sum(map(len, mails))
    print(f"{len(mails)} mails from {len(set(files))} corpus files, {size / 1e6:.1f} MB, "
          f"mean {size / len(mails) / 1024:.1f} KiB; clamd over {args.transport} socket")

    runs: list[Run] = []
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        with Clamd() as cd:  # fresh each time: clamd caches the hashes of clean files
            client = ClamdClient(cd.unix_address if args.transport == "unix" else cd.tcp_address,
                                 scan_timeout_s=120)
            print(f"clamd ready in {cd.startup_s:.3f} s (PING -> PONG, test signature database)")
            runs.append(asyncio.run(validate_all(mails, client, concurrency)))
    with Clamd() as cd:
        runs.append(clamdscan(cd, files, args.transport, ["--stream"], "peer: clamdscan --stream"))
    if args.transport == "unix":  # passing descriptors needs the unix socket
        with Clamd() as cd:
            runs.append(clamdscan(cd, files, args.transport, ["--multiscan", "--fdpass"],
                                  "peer: clamdscan --multiscan --fdpass"))
    peers = [r for r in runs if r.label.startswith("peer:")]

    print()
    for run in runs:
        print(run.line(len(mails)))
        extra = f", {run.streams / len(mails):.2f} INSTREAMs/mail, policy blocked {run.blocked}" \
            if run.latencies else ""
        print(f"{'':<38} verdicts {dict(run.verdicts)}{extra}")
    print()
    for ours in (r for r in runs if r not in peers):
        for peer in peers:
            print(f"ratio mails/s  {ours.label} : {peer.label.removeprefix('peer: ')} = "
                  f"{peer.seconds / ours.seconds:.2f}")
    walk_only = []
    for raw in mails[:500]:
        t = time.perf_counter()
        check_attachments(walk_message(raw), AttachmentPolicySettings())
        walk_only.append(time.perf_counter() - t)
    print(f"walk + policy alone (first 500, no clamd): mean {statistics.fmean(walk_only) * 1000:.2f} ms/mail")


if __name__ == "__main__":
    main()
