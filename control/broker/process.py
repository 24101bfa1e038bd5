"""Local broker: is a pid really our broker, and alive?

A pid file outlives its process (``kill -9``, a reboot) and the pid may since
belong to someone else; a killed child stays a zombie until its parent reaps
it, and ``kill(pid, 0)`` still succeeds on a zombie. So a pid counts as our
broker only when /proc shows a process that is not a zombie and whose command
line names the broker's main class and our own properties file.

Read from /proc by hand (a dozen lines) rather than adding psutil for it: the
local broker is provisioned on Linux only (Debian packages, Maven, Java).
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def proc_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (R, S, D, Z, ...), None when there is no such process."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
    rest = stat.rpartition(")")[2].split()
    return rest[0] if rest else None


def cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_broker(pid: int, *markers: str) -> bool:
    """True when ``pid`` is a live (not zombie) process whose command line holds every marker."""
    state = proc_state(pid)
    if state is None or state in ("Z", "X", "x"):
        return False
    args = cmdline(pid)
    return all(any(marker in arg for arg in args) for marker in markers)


def reap(pid: int) -> bool:
    """Reap ``pid`` when it is a dead child of this process; True when it was."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return waited == pid
