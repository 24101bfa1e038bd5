"""Benchmark (not a test): spam-filter accuracy and speed, mailgate vs SpamAssassin.

    python bench/spam_accuracy.py [--train sa1 --test sa2] [--no-split] [--no-cross]
                                  [--ablation] [--seed 6] [--share 0.5] [--runs 3] [--sa-children 2] [--sa-sample 0] [--no-sa]

**Cross-corpus (the headline table).** A filter is trained on one set of mail and
scores another, from other senders, campaigns, mailbox software and years, as it
will in a real installation. Sets: ``sa1`` is the SpamAssassin corpus's first
release (easy_ham, hard_ham, spam), ``sa2`` its second (easy_ham_2, hard_ham_2,
spam_2); any other ``NAME`` is ``../shared/corpora/NAME`` with its ham and spam
folders. Without ``--train``/``--test`` both directions of sa1/sa2 run. Test mails
that duplicate a training mail (same Message-ID or body) are left out. Per
direction, in one run:

- mailgate as a fresh install with a base model built from the training set
  (``streams.spam.base_build``, as the shipped base is built; no reports): the
  out-of-the-box figure; the same with the structural rules off;
- mailgate without a base, taught the training set through the report path
  (``SpamFilter.learn``): what an install without the base learns;
- SpamAssassin 4 with its stock rules and Bayes trained by ``sa-learn`` on the
  training set, and its stock rules alone (no Bayes): the out-of-the-box peer.

**Random split (second table, ``--no-split`` skips it).** The whole SpamAssassin
corpus in ../shared/corpora/spamassassin (ham: easy_ham, easy_ham_2, hard_ham,
hard_ham_2; spam: spam, spam_2), duplicates grouped (same Message-ID or same
body) so that each group falls on one side, split with a fixed seed into a
training and a test part.

mailgate: every training mail goes through ``SpamFilter.learn(Report(...))``,
the path the product uses for spam.reports; then every test mail is scored
with ``SpamFilter.score`` in this one process (mails/s is test mails per CPU
second of that loop: one core; the full filter is run ``--runs`` times from
cold caches and the fastest run counts, since the machine is shared). The same
is done with parts switched off, to show what each part adds.

SpamAssassin (Debian's, local tests only: -L, no network): Bayes trained with
``sa-learn`` on the same training part into a private database in a temp dir,
then the test part scored through ``spamd`` (``--sa-children`` children) and
``spamc``; its mails/s is test mails per CPU second of the spamd children.

Spam is "caught" when the verdict is spam (mailgate: score >= spam_threshold;
SpamAssassin: score >= required_score 5.0). Printed per system: recall, ham
false-positive rate, precision, and mails/s; then, for both, the best recall
any threshold reaches with at most 0.1% false positives on this test part (an
oracle figure: the threshold is picked on the test part itself). Last, the
speed ratio mailgate/SpamAssassin, both in mails per CPU second of this run.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from hashlib import blake2b
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams.spam import base_build, classifier, rules
from streams.spam.base_build import envelope
from streams.spam.scoring import Report, SpamFilter, clear_caches
from streams.spam.settings import SpamSettings

CORPORA = ROOT.parent / "shared" / "corpora"
CORPUS = CORPORA / "spamassassin"
HAM_DIRS = ("easy_ham", "easy_ham_2", "hard_ham", "hard_ham_2")
SPAM_DIRS = ("spam", "spam_2")
# named sets for the cross-corpus table: (folder, ham folders, spam folders)
SETS = {"sa1": (CORPUS, ("easy_ham", "hard_ham"), ("spam",)),
        "sa2": (CORPUS, ("easy_ham_2", "hard_ham_2"), ("spam_2",))}
MAX_FP_RATE = 0.001


@dataclass(frozen=True, slots=True)
class Mail:
    path: Path
    spam: bool
    raw: bytes

    @property
    def mail_id(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


# -- corpus and split


def load(corpus: Path, ham: Iterable[str] = HAM_DIRS, spam_dirs: Iterable[str] = SPAM_DIRS) -> list[Mail]:
    mails = []
    for folder, spam in [(d, False) for d in ham] + [(d, True) for d in spam_dirs]:
        for path in sorted((corpus / folder).iterdir()):
            if path.is_file() and not path.name.startswith("cmds"):
                mails.append(Mail(path, spam, path.read_bytes()))
    return mails


def _keys(mail: Mail) -> list[str]:
    head, _, body = mail.raw.partition(b"\n\n")
    keys = ["body:" + blake2b(b" ".join(body.split()), digest_size=12).hexdigest()]
    found = re.search(rb"^message-id:\s*(\S+)", head, re.IGNORECASE | re.MULTILINE)
    if found:
        keys.append("mid:" + found.group(1).decode("latin-1").lower())
    return keys


def groups(mails: list[Mail]) -> list[list[Mail]]:
    """Mails that share a Message-ID or a body, joined (union-find)."""
    parent = list(range(len(mails)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, mail in enumerate(mails):
        for key in _keys(mail):
            parent[root(i)] = root(first.setdefault(key, i))
    out: dict[int, list[Mail]] = {}
    for i, mail in enumerate(mails):
        out.setdefault(root(i), []).append(mail)
    return list(out.values())


def split(mails: list[Mail], seed: int, train_share: float) -> tuple[list[Mail], list[Mail]]:
    """Per class, whole duplicate groups to one side; both sides shuffled by the seed."""
    rng = random.Random(seed)
    train: list[Mail] = []
    test: list[Mail] = []
    for spam in (False, True):
        class_groups = [g for g in groups(mails) if g[0].spam == spam]
        rng.shuffle(class_groups)
        total, taken = sum(map(len, class_groups)), 0
        for group in class_groups:
            side = train if taken < total * train_share else test
            side.extend(group)
            taken += len(group) if side is train else 0
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def load_set(name: str) -> list[Mail]:
    """A named set: sa1, sa2, or a folder of ../shared/corpora with ham and spam sub-folders."""
    if name in SETS:
        folder, ham, spam = SETS[name]
        return load(folder, ham, spam)
    folder = CORPORA / name
    subs = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    ham = [d for d in subs if "ham" in d]
    spam = [d for d in subs if "spam" in d]
    if not ham or not spam:
        raise SystemExit(f"--train/--test {name}: not sa1, sa2, nor a folder of {CORPORA} with ham and spam "
                         "sub-folders")
    return load(folder, ham, spam)


def without_duplicates_of(test: list[Mail], train: list[Mail]) -> list[Mail]:
    """The test mails that share no Message-ID or body with a training mail."""
    known = {key for mail in train for key in _keys(mail)}
    return [m for m in test if not any(key in known for key in _keys(m))]


# -- measuring


@dataclass(slots=True)
class Result:
    name: str
    scores: list[tuple[float, bool]]  # (score, is spam)
    threshold: float
    rate: float  # mails per CPU second
    note: str = ""

    def counts(self, threshold: float | None = None) -> tuple[int, int, int, int]:
        t = self.threshold if threshold is None else threshold
        tp = sum(1 for s, spam in self.scores if spam and s >= t)
        fp = sum(1 for s, spam in self.scores if not spam and s >= t)
        spam_n = sum(1 for _, spam in self.scores if spam)
        return tp, fp, spam_n, len(self.scores) - spam_n

    def row(self) -> str:
        tp, fp, spam_n, ham_n = self.counts()
        precision = tp / (tp + fp) if tp + fp else 0.0
        best_recall, best_t = self.best_recall()
        return (f"{self.name:<34} {tp / spam_n:7.2%} {fp / ham_n:8.3%} ({fp:>2}) {precision:9.2%} "
                f"{self.rate:9.0f}   {best_recall:7.2%} @ {best_t:<8.4g} {self.note}")

    def best_recall(self) -> tuple[float, float]:
        """Best recall with FP rate <= 0.1%, over all thresholds (oracle, on this test part)."""
        ham = sorted((s for s, spam in self.scores if not spam), reverse=True)
        spam = [s for s, is_spam in self.scores if is_spam]
        allowed = int(len(ham) * MAX_FP_RATE)  # this many ham may score at or above the threshold
        cut = ham[allowed] if allowed < len(ham) else float("-inf")
        threshold = min((s for s in spam if s > cut), default=float("inf"))
        return sum(1 for s in spam if s > cut) / max(len(spam), 1), threshold


def run_mailgate(name: str, settings: SpamSettings, train: list[Mail], test: list[Mail], runs: int = 1) -> Result:
    """Train (through reports, unless ``train`` is empty) and score ``runs`` times from a cold start;
    the fastest run's rate (the machine is shared)."""
    results = [_run_mailgate_once(name, settings, train, test) for _ in range(runs)]
    best = max(results, key=lambda r: r.rate)
    if runs > 1:
        best.note += f"; best of {runs} runs ({', '.join(f'{r.rate:.0f}' for r in results)})"
    return best


def _run_mailgate_once(name: str, settings: SpamSettings, train: list[Mail], test: list[Mail]) -> Result:
    clear_caches()
    spam_filter = SpamFilter(settings, node="bench")
    began = 1_600_000_000_000
    for n, mail in enumerate(train):
        sender, rcpts = envelope(mail.raw)
        spam_filter.learn(Report(mail.mail_id, "spam" if mail.spam else "ham", "bench", began + n,
                                 mail.raw, "user", sender, rcpts))
    envelopes = [envelope(m.raw) for m in test]
    now = began + len(train) + 1000
    cpu = time.process_time()
    scores = [spam_filter.score(m.raw, env[0], env[1], now).score for m, env in zip(test, envelopes)]
    cpu = time.process_time() - cpu
    note = f"{len(spam_filter.store)} patterns" if train else "no reports"
    return Result(name, list(zip(scores, (m.spam for m in test))), settings.spam_threshold, len(test) / cpu, note)


def build_base(train: list[Mail], folder: Path, settings: SpamSettings | None = None, tag: str = "") -> Path:
    """A base model built from ``train`` as the shipped one is built from the corpus; its path."""
    model = base_build.build([base_build.Sample(m.raw, m.spam) for m in train], settings=settings)
    path = folder / f"base-{len(train)}{tag}.bin"
    path.write_bytes(model.to_bytes())
    return path


def variants(base: Path) -> list[tuple[str, SpamSettings, bool]]:
    """(name, settings, taught the training part through reports)."""
    b = str(base)
    return [
        ("mailgate (base from train, no reports)", SpamSettings(base_model=b), False),
        ("  base, rules off (classifier alone)", SpamSettings(base_model=b, use_rules=False), False),
        ("  base + train through reports", SpamSettings(base_model=b), True),
        ("  no base, train through reports", SpamSettings(base_model="none"), True),
        ("  no base, fuzzy patterns alone", SpamSettings(base_model="none", use_classifier=False), True),
    ]


def run_variants(args: argparse.Namespace, train: list[Mail], test: list[Mail], folder: Path) -> Result | None:
    """Every mailgate variant's row; returns the headline one (the first)."""
    base = build_base(train, folder)
    first: Result | None = None
    for n, (name, settings, taught) in enumerate(variants(base)):
        if args.only in name:
            result = run_mailgate(name, settings, train if taught else [], test, args.runs if n == 0 else 1)
            first = result if n == 0 else first
            print(result.row(), flush=True)
    return first


# -- SpamAssassin


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write(mails: Iterable[Mail], folder: Path) -> None:
    folder.mkdir(parents=True)
    for n, mail in enumerate(mails):
        (folder / f"{n:05d}").write_bytes(mail.raw)


def _cpu_seconds(pids: Iterable[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def run_spamassassin(train: list[Mail], test: list[Mail], children: int, bayes: bool = True) -> list[Result]:
    """SpamAssassin's stock rules with Bayes trained on ``train`` (two rows: all, its Bayes alone),
    or without Bayes (one row: the stock rules alone, as a fresh install runs them offline)."""
    tmp = Path(tempfile.mkdtemp(prefix="mailgate-sa-"))
    try:
        return _spamassassin_in(tmp, train if bayes else [], test, children)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _spamassassin_in(tmp: Path, train: list[Mail], test: list[Mail], children: int) -> list[Result]:
    site = tmp / "site"
    site.mkdir()
    for pre in Path("/etc/spamassassin").glob("*.pre"):
        shutil.copy(pre, site)
    bayes = bool(train)
    (site / "local.cf").write_text(
        f"bayes_path {tmp}/bayes/bayes\nbayes_file_mode 0777\nuse_bayes {int(bayes)}\nbayes_auto_learn 0\n"
        "bayes_auto_expire 0\nskip_rbl_checks 1\nuse_razor2 0\nuse_pyzor 0\ndns_available no\n"
    )
    _write((m for m in train if m.spam), tmp / "train-spam")
    _write((m for m in train if not m.spam), tmp / "train-ham")
    (tmp / "bayes").mkdir()
    os.chmod(tmp, 0o777)
    os.chmod(tmp / "bayes", 0o777)
    common = ["-L", f"--siteconfigpath={site}"]
    began = time.monotonic()
    for kind in ("spam", "ham") if bayes else ():
        subprocess.run(["sa-learn", *common, f"--{kind}", str(tmp / f"train-{kind}")], check=True,
                       capture_output=True, text=True)
    learned = time.monotonic() - began
    for path in (tmp / "bayes").iterdir():
        os.chmod(path, 0o666)
    port = _free_port()
    spamd = subprocess.Popen(
        ["spamd", *common, "-x", "-i", "127.0.0.1", "-p", str(port), "--max-children", str(children),
         "--min-children", str(children), "--min-spare", "1", "--max-spare", str(children),
         "--max-conn-per-child", "1000000", "-u", "nobody", "-s", "stderr"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        results = _score_with_spamd(spamd, port, test, children, learned)
        if not bayes:
            results = [Result("SpamAssassin 4 stock rules, no Bayes", results[0].scores, 5.0, results[0].rate,
                              results[0].note.split("; sa-learn")[0])]
        return results
    finally:
        os.killpg(spamd.pid, signal.SIGTERM)
        spamd.wait(timeout=30)


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"spamd exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("spamd did not listen within two minutes")


def _spamc(port: int, raw: bytes) -> tuple[float, float]:
    """(total score, Bayes probability) of one mail through spamc -R (0.5 when no BAYES_ rule hit)."""
    out = subprocess.run(["spamc", "-d", "127.0.0.1", "-p", str(port), "-R", "-s", "30000000"],
                         input=raw, capture_output=True, check=False).stdout.decode("latin-1")
    first = out.split("\n", 1)[0]
    score = float(first.split("/")[0]) if "/" in first else float("nan")
    bayes = re.search(r"^\s*-?\d+\.?\d*\s+BAYES_\d+.*\n\s*\[score:\s*([\d.]+)\]", out, re.MULTILINE)
    return score, float(bayes.group(1)) if bayes else 0.5


def _score_with_spamd(spamd: subprocess.Popen, port: int, test: list[Mail], children: int,
                      learned: float) -> list[Result]:
    _wait_port(port, spamd)
    kids = _children(spamd.pid)
    cpu0 = _cpu_seconds(kids)
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=children + 1) as pool:
        results = list(pool.map(lambda m: _spamc(port, m.raw), test))
    wall = time.monotonic() - began
    cpu = _cpu_seconds(_children(spamd.pid)) - cpu0
    labels = [m.spam for m in test]
    failed = sum(1 for s, _ in results if math.isnan(s))
    note = (f"spamd {children} children, {wall:.0f}s wall, {len(test) / wall:.1f}/s wall; "
            f"sa-learn {learned:.0f}s" + (f"; {failed} spamc failures" if failed else ""))
    total = Result("SpamAssassin 4 (-L, Bayes by sa-learn)", [(s, lab) for (s, _), lab in zip(results, labels)],
                   5.0, len(test) / max(cpu, 1e-9), note)
    bayes = Result("  SpamAssassin Bayes alone", [(b, lab) for (_, b), lab in zip(results, labels)],
                   0.95, float("nan"), "its Bayes probability; 'caught' at >= 0.95 (BAYES_95 and up)")
    return [total, bayes]


def print_spamassassin(args: argparse.Namespace, train: list[Mail], test: list[Mail], ours: Result | None,
                       stock_rules: bool = False) -> None:
    """SpamAssassin's rows (with ``stock_rules``, also its rules without Bayes), then the speed ratio
    to the headline mailgate row of this run (if it ran)."""
    sa_test = test
    if args.sa_sample and args.sa_sample < len(test):
        sa_test = random.Random(args.seed).sample(test, args.sa_sample)
        print(f"SpamAssassin scores a sample of {len(sa_test)} test mails")
    results = run_spamassassin(train, sa_test, args.sa_children)
    if stock_rules:
        results += run_spamassassin(train, sa_test, args.sa_children, bayes=False)
    for result in results:
        print(result.row(), flush=True)
    if ours is not None:
        print(speed_ratio(ours, results[0]))


def speed_ratio(ours: Result, peer: Result) -> str:
    """Both rates are mails per CPU second (one core), measured in this run."""
    return (f"speed, mails per CPU second: {ours.name.strip()} {ours.rate:.0f}, {peer.name.strip()} {peer.rate:.1f}; "
            f"ratio mailgate/SpamAssassin {ours.rate / peer.rate:.1f}x")


# -- main


def header() -> str:
    return (f"{'system':<34} {'recall':>7} {'ham FP':>8} {'(n)':>4} {'precision':>9} {'mails/s':>9}   "
            f"best recall @ FP<=0.1% (oracle)")


def ablation(train: list[Mail], test: list[Mail], folder: Path) -> None:
    """What each group of signals adds cross-corpus: the base model built and scored without it."""
    print(f"{'  without':<34} {'recall':>7} {'ham FP':>8} {'(n)':>4}   best recall @ FP<=0.1%   (change of each)")
    full: Result | None = None
    cases: list[tuple[str, list[str], bool]] = [("(nothing: all signals)", [], True)]
    cases += [(f"rules: {group}", [group], True) for group in rules.GROUPS]
    cases += [("store headers dropped (kept)", [], False)]
    for name, disabled, drop_store in cases:
        saved = classifier.STORE_HEADERS
        classifier.STORE_HEADERS = saved if drop_store else frozenset()
        try:
            settings = SpamSettings(disabled_rules=disabled)
            base = build_base(train, folder, settings, f"-{len(disabled)}-{drop_store}")
            result = run_mailgate(name, SpamSettings(base_model=str(base), disabled_rules=disabled), [], test)
        finally:
            classifier.STORE_HEADERS = saved
        tp, fp, spam_n, ham_n = result.counts()
        best, _ = result.best_recall()
        full = full or result
        f_tp, _, _, _ = full.counts()
        f_best, _ = full.best_recall()
        print(f"  {name:<32} {tp / spam_n:7.2%} {fp / ham_n:8.3%} ({fp:>2})   {best:7.2%}   "
              f"({(tp - f_tp) / spam_n:+.2%} at the default, {best - f_best:+.2%} best)", flush=True)


def describe(name: str, mails: list[Mail]) -> str:
    spam = sum(1 for m in mails if m.spam)
    return f"{name} {len(mails)} ({spam} spam, {len(mails) - spam} ham)"


def cross(args: argparse.Namespace, train_name: str, test_name: str, folder: Path) -> None:
    train = load_set(train_name)
    test = without_duplicates_of(load_set(test_name), train)
    print(f"\n## cross-corpus: train {describe(train_name, train)} -> test {describe(test_name, test)} "
          "(test mails duplicating a training mail left out)")
    print(header(), flush=True)
    ours = run_variants(args, train, test, folder)
    if args.ablation:
        ablation(train, test, folder)
    if not args.no_sa:
        print_spamassassin(args, train, test, ours, stock_rules=True)


def random_split(args: argparse.Namespace, folder: Path) -> None:
    mails = load(CORPUS)
    train, test = split(mails, args.seed, args.share)
    print(f"\n## random split of {CORPUS}: {len(mails)} mails in {len(groups(mails))} duplicate groups; "
          f"seed {args.seed}: train {describe('', train)}, test {describe('', test)}")
    print(header(), flush=True)
    ours = run_variants(args, train, test, folder)
    if not args.no_sa:
        print_spamassassin(args, train, test, ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default="", help="cross-corpus: the training set (sa1, sa2, or a corpus folder)")
    parser.add_argument("--test", default="", help="cross-corpus: the test set")
    parser.add_argument("--no-cross", action="store_true", help="skip the cross-corpus table")
    parser.add_argument("--no-split", action="store_true", help="skip the random-split table")
    parser.add_argument("--ablation", action="store_true",
                        help="cross-corpus: also what each group of signals adds (a base built without it)")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--share", type=float, default=0.5, help="random split: share of each class for training")
    parser.add_argument("--sa-children", type=int, default=2)
    parser.add_argument("--sa-sample", type=int, default=0, help="score only this many test mails with SA (0: all)")
    parser.add_argument("--no-sa", action="store_true", help="skip SpamAssassin")
    parser.add_argument("--runs", type=int, default=3, help="cold-start runs of the headline mailgate row; the fastest counts")
    parser.add_argument("--only", default="", help="run only the mailgate variants whose name contains this")
    args = parser.parse_args()
    if bool(args.train) != bool(args.test):
        parser.error("--train and --test go together (without both, both directions of sa1/sa2 run)")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs; mails/s is per CPU second of the scoring process, so load inflates it less)")
    print(f"thresholds: spam >= {SpamSettings().spam_threshold}, unsure >= {SpamSettings().ham_threshold} "
          "(mailgate's defaults); SpamAssassin required_score 5.0")
    with tempfile.TemporaryDirectory(prefix="mailgate-bench-") as tmp:
        if not args.no_cross:
            pairs = [(args.train, args.test)] if args.train else [("sa1", "sa2"), ("sa2", "sa1")]
            for train_name, test_name in pairs:
                cross(args, train_name, test_name, Path(tmp))
        if not args.no_split:
            random_split(args, Path(tmp))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
