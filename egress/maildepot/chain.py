"""maildepot-archiver: the hash chain that makes the archive tamper-evident.

Every change of the store (a mail stored, removed by retention, put on hold,
released) is an audit entry; each entry's hash covers the previous entry's hash
and the entry itself, and a stored mail's entry names the SHA-256 of the mail.
So a changed or removed mail file, an edited index row, or an edited, removed
or inserted audit entry breaks the chain or no longer matches it. The last
hash is also written to ``chain.head`` outside the database, so a cut-off
tail of the audit table shows too. (Whoever can rewrite the whole directory can
rewrite the chain: copy ``chain.head`` elsewhere to anchor it.)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

GENESIS = "0" * 64


@dataclass(frozen=True)
class Entry:
    seq: int
    time_ms: int
    action: str  # stored | expired | hold | release
    mail_id: str
    sha256: str
    detail: str

    def digest(self, prev: str) -> str:
        body = json.dumps([self.seq, self.time_ms, self.action, self.mail_id, self.sha256, self.detail],
                          separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(f"{prev}\n{body}".encode()).hexdigest()


def write_head(path: Path, seq: int, digest: str) -> None:
    """Atomically: a reader sees the old head or the new one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{seq} {digest}\n")
    os.replace(tmp, path)


def read_head(path: Path) -> tuple[int, str] | None:
    try:
        seq, digest = path.read_text().split()
        return int(seq), digest
    except (FileNotFoundError, ValueError):
        return None


def check_chain(rows: list[tuple[Entry, str, str]], head: tuple[int, str] | None) -> list[str]:
    """Problems in (entry, prev, hash) rows ordered by seq, and against the head file."""
    problems: list[str] = []
    prev, last = GENESIS, 0
    for entry, stored_prev, stored_hash in rows:
        if entry.seq != last + 1:
            problems.append(f"audit entries {last + 1}..{entry.seq - 1} are missing")
        if stored_prev != prev:
            problems.append(f"audit entry {entry.seq} does not follow entry {last} (chain broken)")
        if entry.digest(stored_prev) != stored_hash:
            problems.append(f"audit entry {entry.seq} ({entry.action} {entry.mail_id}) was changed")
        prev, last = stored_hash, entry.seq
    if head is None:
        if rows:
            problems.append("chain.head is missing")
    elif head[0] > last:
        problems.append(f"audit entries {last + 1}..{head[0]} were removed (chain.head names {head[0]})")
    elif head[0] > 0 and not any(e.seq == head[0] and h == head[1] for e, _, h in rows):
        problems.append(f"chain.head ({head[0]}) does not match the audit entry of that number")
    return problems
