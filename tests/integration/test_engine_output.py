"""The engine's output is whole lines: services that write at once, in pieces, on stdout
and stderr, never have their records joined (real child processes, no broker needed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

LINES = 400

# A service that writes each record in three pieces with a flush between them, as a
# block-buffered or chatty process does; the last record has no newline at all.
CHILD = r"""
import os, sys, time
name, stream = sys.argv[1], getattr(sys, sys.argv[2])
for i in range({lines}):
    body = f"{{name}}-{{i}}-" + "x" * (50 + (i * 37) % 3000)
    for piece in (body[:7], body[7:40], body[40:] + "\n"):
        stream.write(piece)
        stream.flush()
stream.write(f"{{name}}-last-no-newline")
stream.flush()
time.sleep(60)
""".format(lines=LINES)

ENGINE = r"""
import sys, time
from pathlib import Path
from control.engine.supervisor import Engine, ServiceSpec
from core.logging import setup_logging
setup_logging(service="engine")
child, out, err = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
specs = [ServiceSpec(n, "-", [sys.executable, "-c", child, n, s])
         for n, s in (("a", "stdout"), ("b", "stdout"), ("c", "stderr"), ("d", "stderr"))]
want = 2 * {lines}  # the last ones, without a newline, come when the engine stops them
def done() -> bool:
    return all(p.read_bytes().count(b"\n") >= want for p in (out, err))
began = time.monotonic()
Engine(specs).run(until=lambda: done() or time.monotonic() - began > 60)
""".format(lines=LINES)

RECORD = re.compile(rb"^([abcd])-(\d+)-x+$|^([abcd])-last-no-newline$")


def test_services_writing_together_give_whole_lines(tmp_path: Path) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as o, open(err, "wb") as e:
        subprocess.run([sys.executable, "-c", ENGINE, CHILD, str(out), str(err)], stdout=o, stderr=e, timeout=120,
                       check=True)
    for path, names in ((out, b"ab"), (err, b"cd")):
        seen: dict[bytes, list[int]] = {bytes([n]): [] for n in names}
        for line in path.read_bytes().splitlines():
            if b"service=engine" in line:
                continue  # the engine's own records
            match = RECORD.match(line)
            assert match, f"a joined or broken line in {path.name}: {line[:120]!r}"
            if match[1]:
                seen[match[1]].append(int(match[2]))
            else:
                seen[match[3]].append(-1)
        for name, numbers in seen.items():
            assert numbers == [*range(LINES), -1], f"{name!r}: records lost, cut or out of order"
