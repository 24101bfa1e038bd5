"""Benchmark (not a test): mails/s the maildepot archive store takes, against Dovecot storing
the same mails in the same run.

    python bench/archive_store.py [--mails 2000] [--batch 200]

Takes N real mails (the SpamAssassin ham corpus of shared/corpora, read in place; made-up
mails when it is absent) held in memory as ArchiveSpooled records, as the archiver gets
them from archive.spool (zstd-packed), and times ``ArchiveStore.store_batch`` in batches
of ``--batch`` (one SQLite transaction each, as the archiver commits): unpack, SHA-256,
zstd file (fsynced), FTS5 index of sender/recipients/subject/body, hash-chain entry.

The peer is Dovecot's ``doveadm import`` of the same mails from an mbox into a fresh
Maildir with Dovecot's own index (mail_fsync=optimized, as shipped), in one process.
Dovecot does less per mail (no full-text index, no compression, no hash chain).
Runs as root (Dovecot then writes as ``nobody``). Prints the load (uptime) with the figures.
"""

from __future__ import annotations

import argparse
import mailbox
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from egress.maildepot.store import ArchiveStore  # noqa: E402
from schemas import new_mail_id, pack_message  # noqa: E402
from tests.support.dovecot import corpus_messages  # noqa: E402

DOVECOT_CONF = """base_dir = {d}/run
log_path = {d}/dovecot.log
mail_location = maildir:{d}/nb/box
first_valid_uid = 0
first_valid_gid = 0
passdb {{
  driver = static
  args = password=x
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={d}/nb
}}
"""


def records(raws: list[bytes]) -> list[dict]:
    now = int(time.time() * 1000)
    return [{"mail_id": new_mail_id(now), "event_time": now, "node": "bench", "source": "import", "rule": "bench",
             "retention_days": None, "direction": None, "verdict": None, "mail_from": "sender@example.net",
             "rcpt_to": ["user@example.com"], "received_time": now, "size": len(raw), "origin": None,
             "message": pack_message(raw)} for raw in raws]


def ours(raws: list[bytes], batch: int, work: Path) -> float:
    recs = records(raws)
    store = ArchiveStore(work / "archive")
    start = time.perf_counter()
    for i in range(0, len(recs), batch):
        store.store_batch(recs[i:i + batch], 3650)
    elapsed = time.perf_counter() - start
    assert store.count() == len(raws)
    store.close()
    return elapsed


def dovecot(raws: list[bytes], work: Path) -> float:
    d = work / "dovecot"
    (d / "src").mkdir(parents=True)
    (d / "nb").mkdir()
    shutil.chown(d / "nb", "nobody", "nogroup")
    box = mailbox.mbox(d / "src" / "in.mbox")
    for raw in raws:
        box.add(raw)
    box.close()
    for p in (work, d):
        p.chmod(0o755)
    (d / "src").chmod(0o777)  # doveadm keeps its index of the source mbox beside it
    (d / "src" / "in.mbox").chmod(0o644)
    (d / "dovecot.conf").write_text(DOVECOT_CONF.format(d=d))
    env = {**os.environ, "HOME": str(d / "nb"), "USER": "nobody"}
    cmd = ["doveadm", "-c", str(d / "dovecot.conf"), "-o", "mail_uid=65534", "-o", "mail_gid=65534", "import",
           f"mbox:{d}/src:INBOX={d}/src/in.mbox", "", "ALL"]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    elapsed = time.perf_counter() - start
    stored = len(list((d / "nb" / "box" / "new").iterdir())) + len(list((d / "nb" / "box" / "cur").iterdir()))
    assert stored == len(raws), f"dovecot stored {stored} of {len(raws)}"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    raws = list(corpus_messages(args.mails))
    size = sum(map(len, raws)) / len(raws)
    with tempfile.TemporaryDirectory(prefix="archive-bench-") as tmp:
        work = Path(tmp)
        t_ours = ours(raws, args.batch, work)
        t_peer = dovecot(raws, work)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{args.mails} mails, {size / 1024:.1f} KiB average; load: {load}")
    print(f"maildepot store (index+zstd+chain, batches of {args.batch}): {args.mails / t_ours:8.0f} mails/s")
    print(f"dovecot doveadm import (Maildir + index):           {args.mails / t_peer:8.0f} mails/s")
    print(f"ratio ours/dovecot: {t_peer / t_ours:.2f}")


if __name__ == "__main__":
    main()
