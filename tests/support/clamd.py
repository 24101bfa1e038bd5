"""A real ClamAV clamd on loopback with a signature database of its own, for the
message-validation tests and bench; offline, up in well under a second.

    with Clamd() as cd:               # own clamd.conf + tiny DB in a temp dir, free TCP port
        cd.unix_address               # "unix:/tmp/mailgate-clamd-.../clamd.sock"
        cd.tcp_address                # "tcp:127.0.0.1:PORT"
        with cd.paused(): ...         # SIGSTOP/SIGCONT: connections are accepted, nothing answers

The database (written by write_signature_db) holds:

- ``Eicar-Test-Signature``: the EICAR test string anywhere in a file (.ndb body signature);
- ``ClamAV-Test-File``: the MD5 of ClamAV's own test program ``clam.exe`` (.hdb), the file
  that Debian's clamav-testfiles hides in archives, packers, mails and documents;
- ``Mailgate.Test.Marker``: an ASCII marker of our own (.ndb), to plant in any part.

clamd reports unsigned signatures with ``.UNOFFICIAL`` appended; the *_NAME constants
are the names as clamd reports them. Needs /usr/sbin/clamd (Debian: clamav-daemon);
/usr/share/clamav-testfiles (clamav-testfiles) is optional here, TESTFILES says where.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MARKER = b"MAILGATE-TEST-MARKER-4f1c9a0e-not-a-virus"
CLAM_EXE_MD5, CLAM_EXE_SIZE = "aa15bcf478d165efd2065190eb473bcb", 544
EICAR_NAME = "Eicar-Test-Signature.UNOFFICIAL"
TESTFILE_NAME = "ClamAV-Test-File.UNOFFICIAL"
MARKER_NAME = "Mailgate.Test.Marker.UNOFFICIAL"
TESTFILES = Path("/usr/share/clamav-testfiles")
ROOT = Path(__file__).resolve().parents[2]
CORPORA = Path(os.environ.get("MAILGATE_CORPORA", ROOT.parent / "shared" / "corpora"))
STREAM_MAX = 30 * 1024 * 1024


def corpus_paths(folder: str = "easy_ham", limit: int | None = None) -> list[Path]:
    """Mail files of the SpamAssassin corpus (shared/corpora beside the repo, or
    MAILGATE_CORPORA), read in place, never copied into the repo."""
    directory = CORPORA / "spamassassin" / folder
    if not directory.is_dir():  # the corpus is the workspace's, not the repo's: a bare checkout lacks it
        pytest.skip(f"no corpus at {directory}: the corpora live in shared/ beside the repo (or set MAILGATE_CORPORA)")
    paths = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("cmds"))
    return paths[:limit] if limit is not None else paths


def clamd_binary() -> str:
    path = shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin:/usr/bin")
    if path is None:
        raise FileNotFoundError("clamd not found: apt-get install clamav-daemon (`make setup` does)")
    return path


def write_signature_db(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "mailgate-test.ndb").write_text(
        f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n"
        f"Mailgate.Test.Marker:0:*:{MARKER.hex()}\n")
    (directory / "mailgate-test.hdb").write_text(f"{CLAM_EXE_MD5}:{CLAM_EXE_SIZE}:ClamAV-Test-File\n")


def clamd_reply(address: str, command: bytes, timeout: float = 2.0) -> bytes:
    """One z-command to clamd at ``unix:/path`` or ``tcp:host:port``; the reply without its NUL."""
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX)
        target: str | tuple[str, int] = address[5:]
    else:
        host, _, port = address.removeprefix("tcp:").rpartition(":")
        sock = socket.socket(socket.AF_INET)
        target = (host, int(port))
    with sock:
        sock.settimeout(timeout)
        sock.connect(target)
        sock.sendall(b"z" + command + b"\0")
        reply = b""
        while not reply.endswith(b"\0"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.rstrip(b"\0")


class Clamd:
    def __init__(self, host: str = "127.0.0.1", config: dict[str, str] | None = None) -> None:
        self.binary = clamd_binary()
        self.host = host
        # A short path of our own: unix socket paths are limited to 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="mailgate-clamd-"))
        self.port = free_port(host)
        self.socket_path = self.root / "clamd.sock"
        self.config_file = self.root / "clamd.conf"
        self.log_file = self.root / "clamd.log"
        self.extra = dict(config or {})
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def unix_address(self) -> str:
        return f"unix:{self.socket_path}"

    @property
    def tcp_address(self) -> str:
        return f"tcp:{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Clamd:
        write_signature_db(self.root / "db")
        (self.root / "tmp").mkdir(exist_ok=True)
        self.config_file.write_text(self._config())
        started = time.monotonic()
        self._proc = subprocess.Popen([self.binary, "--config-file", str(self.config_file)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        return self

    def _config(self) -> str:
        r = self.root
        settings = {
            "Foreground": "yes",
            "LogFile": str(self.log_file),
            "LogTime": "yes",
            "PidFile": str(r / "clamd.pid"),
            "DatabaseDirectory": str(r / "db"),
            "TemporaryDirectory": str(r / "tmp"),
            "LocalSocket": str(self.socket_path),
            "LocalSocketMode": "660",
            "FixStaleSocket": "yes",
            "TCPSocket": str(self.port),
            "TCPAddr": self.host,
            "MaxThreads": "4",
            "StreamMaxLength": f"{STREAM_MAX // (1024 * 1024)}M",
            "AlertExceedsMax": "yes",
            "Bytecode": "no",
            "SelfCheck": "0",
        }
        settings.update(self.extra)
        lines = [f"{key} {value}" for key, value in settings.items()]
        return "# written by tests/support/clamd.py\n" + "\n".join(lines) + "\n"

    def _wait_ready(self, started: float, timeout: float = 60.0) -> None:
        """Until clamd answers PING with PONG on both its unix socket and its TCP port."""
        last: Exception | None = None
        while time.monotonic() - started < timeout:
            assert self._proc is not None
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"clamd exited ({self._proc.returncode}): {err.strip()}\n{self.log_tail()}")
            try:
                if clamd_reply(self.unix_address, b"PING", 0.5) == b"PONG" and \
                        clamd_reply(self.tcp_address, b"PING", 0.5) == b"PONG":
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.02)
        raise TimeoutError(f"clamd gave no PONG within {timeout:.0f}s ({last})\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a paused clamd cannot act on SIGTERM
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc is not None and proc.stderr:
            proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """clamd frozen (SIGSTOP): the kernel still accepts connections, clamd answers nothing."""
        assert self._proc is not None, "clamd is not running"
        os.kill(self._proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self._proc.pid, signal.SIGCONT)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no clamd log)"

    def __enter__(self) -> Clamd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
