"""engine: the services' output, relayed to the engine's own as whole lines.

Children that share the engine's stdout/stderr write when their buffers say so, and
two writes cut at arbitrary bytes join two services' records into one line (about 200
in a 30-minute `mailgate up`), which breaks any line-based log reader. So every child
writes into a pipe of its own; one thread per pipe reads whole lines and writes each
with one ``os.write`` under a lock shared by every relay of the process. A line longer
than ``MAX_LINE`` is cut there (each piece a line of its own), and a last line without
its newline gets one, so the output is always a sequence of whole lines.
"""

from __future__ import annotations

import os
import threading
from typing import IO

MAX_LINE = 1 << 20

_lock = threading.Lock()


def write_line(fd: int, line: bytes) -> None:
    """One whole line to ``fd``, never interleaved with another relay's."""
    if not line.endswith(b"\n"):
        line += b"\n"
    view = memoryview(line)
    with _lock:
        while view:
            view = view[os.write(fd, view):]


def _pump(pipe: IO[bytes], fd: int) -> None:
    try:
        while line := pipe.readline(MAX_LINE):
            write_line(fd, line)
    except (OSError, ValueError):
        pass  # the engine is exiting, or its own output went away: nothing left to relay to
    finally:
        pipe.close()


def relay(pipe: IO[bytes] | None, fd: int, name: str) -> threading.Thread | None:
    """Starts relaying ``pipe`` (a child's stdout or stderr) to ``fd`` until the child closes it."""
    if pipe is None:
        return None
    thread = threading.Thread(target=_pump, args=(pipe, fd), name=f"relay-{name}", daemon=True)
    thread.start()
    return thread
