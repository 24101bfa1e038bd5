"""Benchmark (not a test): CPU per mail of message-validation's walk (walk_message +
check_attachments) now, against the walk of a git revision (default ``main``) in the same
run, on the SpamAssassin corpus (shared/corpora/spamassassin/*, read in place).

    python bench/mime_walk_cpu.py [--base main] [--rounds 3] [--limit N]

The base revision's ``streams/validation/mime.py`` is loaded from git beside the current
one; both walk the same mails in turns (``--rounds``, the best round of each counts), and
the parts each would send to clamd apart from the mail (virus.scan_targets) are counted.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams.validation import mime  # noqa: E402
from streams.validation.attachments import check_attachments  # noqa: E402
from streams.validation.settings import AttachmentPolicySettings  # noqa: E402
from streams.validation.virus import scan_targets  # noqa: E402
from tests.support.clamd import corpus_paths  # noqa: E402

FOLDERS = ("easy_ham", "easy_ham_2", "hard_ham", "hard_ham_2", "spam", "spam_2")


def base_walk(rev: str) -> Callable[[bytes], mime.MimeWalk]:
    source = subprocess.run(["git", "show", f"{rev}:streams/validation/mime.py"], cwd=ROOT, check=True,
                            capture_output=True).stdout
    path = Path(tempfile.mkdtemp()) / "base_mime.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("base_mime", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["base_mime"] = module
    spec.loader.exec_module(module)
    return module.walk_message  # type: ignore[no-any-return]


def run(walk: Callable[[bytes], object], mails: list[bytes]) -> tuple[float, int, int]:
    """(CPU seconds, parts sent to clamd apart from the mail, mails held: unparseable or incomplete)."""
    policy = AttachmentPolicySettings()
    targets = held = 0
    started = time.process_time()
    for raw in mails:
        result = walk(raw)
        check_attachments(result, policy)  # type: ignore[arg-type]
        targets += len(scan_targets(result))  # type: ignore[arg-type]
        held += not result.complete  # type: ignore[attr-defined]
    return time.process_time() - started, targets, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="mails per folder")
    args = parser.parse_args()
    mails = [p.read_bytes() for folder in FOLDERS for p in corpus_paths(folder, args.limit)]
    print(f"{len(mails)} mails, {sum(map(len, mails)) / 1e6:.1f} MB; best of {args.rounds} rounds")
    walks = {args.base: base_walk(args.base), "this tree": mime.walk_message}
    best: dict[str, tuple[float, int, int]] = {}
    for _ in range(args.rounds):
        for label, walk in walks.items():
            result = run(walk, mails)
            if label not in best or result[0] < best[label][0]:
                best[label] = result
    for label, (cpu, targets, held) in best.items():
        print(f"{label:>10}: {cpu * 1e6 / len(mails):8.1f} µs CPU/mail  {targets / len(mails):.3f} parts to clamd/mail"
              f"  {held} held (unparseable or incomplete)")
    base, now = best[args.base][0], best["this tree"][0]
    print(f"extra CPU per mail: {(now - base) * 1e6 / len(mails):+.1f} µs ({(now / base - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
