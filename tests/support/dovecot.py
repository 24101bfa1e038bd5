"""A real Dovecot POP3/POP3S server on loopback, for the pop3-proxy tests and bench.

    with Dovecot() as dc:                       # own dovecot.conf in a temp dir, free ports
        box = dc.mailbox(corpus_messages(10))   # a user with 10 Maildir mails, known password
        ... POP3 on dc.host:dc.plain_port (STLS offered), POP3S on dc.host:dc.pop3s_port
        dc.ca_file                              # the trustme CA that signed the server certificate

Written for Dovecot 2.3 (Debian 12's dovecot-pop3d); 2.4 changed the config
syntax throughout and is refused with a clear message. Runs as root (the usual
case here: the mail processes then run as ``nobody``, logins as ``dovenull``)
or, with fewer guarantees, as an ordinary user.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("MAILGATE_CORPORA", ROOT.parent / "shared" / "corpora")) / "spamassassin" / "easy_ham"
PASSWORD = "pop3-test-secret"


def corpus_messages(n: int, corpus: Path = CORPUS) -> Iterator[bytes]:
    """``n`` real mails from the SpamAssassin ham corpus (cycling when n is larger),
    without the mbox ``From `` line. Read in place, never copied into the repo."""
    files = sorted(p for p in corpus.iterdir() if p.is_file() and not p.name.startswith("cmds")) \
        if corpus.is_dir() else []
    if not files:  # a checkout without shared/ beside it: mails of the same shape, made here
        yield from (generated_mail(i) for i in range(n))
        return
    for path in itertools.islice(itertools.cycle(files), n):
        raw = path.read_bytes()
        if raw.startswith(b"From "):
            raw = raw.split(b"\n", 1)[1]
        yield raw


def generated_mail(i: int) -> bytes:
    """A plain mail with what POP3 must carry intact: a line starting with a dot, long lines, 8-bit text."""
    body = "\r\n".join([f"Hello, this is mail {i}.", ".a line that POP3 dot-stuffs", "x" * 900,
                         "Grüße aus dem Test", "", "-- ", "mailgate tests"])
    return (f"Return-Path: <sender{i}@example.net>\r\nFrom: sender{i}@example.net\r\nTo: user@example.com\r\n"
            f"Subject: generated mail {i}\r\n"
            f"Message-ID: <gen{i}@example.net>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
            ).encode()


def dovecot_binary() -> str:
    path = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/bin")
    if path is None:
        raise FileNotFoundError("dovecot not found: apt-get install dovecot-pop3d (`make setup` does)")
    return path


def dovecot_version(binary: str | None = None) -> str:
    return subprocess.run([binary or dovecot_binary(), "--version"], capture_output=True, text=True,
                          check=True).stdout.split()[0]


@dataclass(frozen=True)
class Mailbox:
    user: str
    password: str
    path: Path  # the Maildir

    def count(self) -> int:
        """Mails in the Maildir now (new/ and cur/)."""
        return sum(1 for d in ("new", "cur") for p in (self.path / d).iterdir() if p.is_file())


class Dovecot:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.binary = dovecot_binary()
        self.version = dovecot_version(self.binary)
        if not self.version.startswith("2.3."):
            raise RuntimeError(f"Dovecot {self.version}: this helper writes 2.3 configuration;"
                               " 2.4 needs the new syntax (mail_driver, passdb names, ssl_server_*)")
        self.host = host
        self.root = Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))
        self.root.chmod(0o755)  # the login and mail processes run as other users
        self.plain_port = free_port(host)
        self.pop3s_port = free_port(host)
        self.ca = trustme.CA()
        self.ca_file = self.root / "ca.pem"
        self.log_file = self.root / "dovecot.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._users = itertools.count(1)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
            self.login_user, self.internal_user = "dovenull", "dovecot"
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
            self.login_user = self.internal_user = pwd.getpwuid(self.uid).pw_name

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Dovecot:
        cert = self.ca.issue_cert(self.host, "localhost")
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert.cert_chain_pems[0].write_to_path(str(self.root / "cert.pem"))
        cert.private_key_pem.write_to_path(str(self.root / "key.pem"))
        (self.root / "key.pem").chmod(0o600)
        for d in ("run", "state", "mail", "users"):
            (self.root / d).mkdir()
        os.chown(self.root / "mail", self.uid, self.gid)
        (self.root / "dovecot.conf").write_text(self._config())
        self._proc = subprocess.Popen([self.binary, "-F", "-c", str(self.root / "dovecot.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      preexec_fn=_die_with_parent)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _config(self) -> str:
        r = self.root
        return f"""# written by tests/support/dovecot.py for Dovecot 2.3
base_dir = {r}/run
state_dir = {r}/state
instance_name = mailgate-test-{self.plain_port}
log_path = {self.log_file}
protocols = pop3
listen = {self.host}
ssl = yes
ssl_cert = <{r}/cert.pem
ssl_key = <{r}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain
auth_failure_delay = 0
default_login_user = {self.login_user}
default_internal_user = {self.internal_user}
first_valid_uid = 1
mail_location = maildir:{r}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/users/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {r}/users/%u
}}
# No growing delay per IP after failed logins: the tests fail logins on purpose.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {self.host}
    port = {self.plain_port}
  }}
  inet_listener pop3s {{
    address = {self.host}
    port = {self.pop3s_port}
    ssl = yes
  }}
}}
"""

    def _wait_ready(self, timeout: float = 30.0) -> None:
        """Until both listeners greet with +OK (POP3S through a verified TLS handshake)."""
        deadline = time.monotonic() + timeout
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"dovecot exited ({self._proc.returncode}): {err.strip()}\n{self.log_tail()}")
            try:
                _banner(self.host, self.plain_port, None)
                _banner(self.host, self.pop3s_port, ctx)
                return
            except (OSError, ValueError) as exc:
                last = exc
                time.sleep(0.1)
        raise TimeoutError(f"dovecot gave no +OK banner within {timeout:.0f}s ({last})\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # the master stops its children
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc is not None and proc.stderr:
            proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no dovecot log)"

    # -- mailboxes -----------------------------------------------------------

    def mailbox(self, messages: Iterable[bytes] = (), password: str = PASSWORD) -> Mailbox:
        """A new user with its own Maildir holding ``messages``."""
        user = f"user{next(self._users)}"
        path = self.root / "mail" / user
        for d in ("new", "cur", "tmp"):
            (path / d).mkdir(parents=True)
        # One passwd-file per user: Dovecot opens a new one at first use (an appended
        # line in a shared file is missed when it changes within the same second).
        (self.root / "users" / user).write_text(f"{user}:{{PLAIN}}{password}:{self.uid}:{self.gid}::{path}::\n")
        box = Mailbox(user, password, path)
        self.deliver(box, messages)
        return box

    def deliver(self, box: Mailbox, messages: Iterable[bytes]) -> int:
        """Drop mails into the Maildir as an MDA would (tmp/ then rename into new/)."""
        n = 0
        stamp = int(time.time())
        for raw in messages:
            n += 1
            name = f"{stamp}.M{time.monotonic_ns() % 10**9}Q{n}.mailgate-test"
            tmp = box.path / "tmp" / name
            tmp.write_bytes(raw.replace(b"\r\n", b"\n"))
            os.chown(tmp, self.uid, self.gid)
            tmp.rename(box.path / "new" / name)
        for d in ("", "new", "cur", "tmp"):
            os.chown(box.path / d, self.uid, self.gid)
        return n


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, even by SIGKILL,
    so that no Dovecot outlives its suite (Linux; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _banner(host: str, port: int, ctx: ssl.SSLContext | None) -> None:
    with socket.create_connection((host, port), timeout=2) as raw:
        sock = ctx.wrap_socket(raw, server_hostname=host) if ctx else raw
        with sock, sock.makefile("rb") as f:
            line = f.readline()
            if not line.startswith(b"+OK"):
                raise ValueError(f"{host}:{port} greeted with {line[:80]!r}")
            sock.sendall(b"QUIT\r\n")
