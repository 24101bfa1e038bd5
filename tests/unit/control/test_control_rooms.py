"""The rooms of control/ keep their walls (issue 17): control imports no other stage (ingress,
streams, egress: the service registry names their entry points as strings), and no CLI group
imports the module that builds the CLI (control.cli.app imports them: that was the circle)."""

from __future__ import annotations

import ast
from pathlib import Path

CONTROL = Path(__file__).resolve().parents[3] / "control"
STAGES = ("ingress", "streams", "egress")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def modules() -> list[Path]:
    return [p for p in CONTROL.rglob("*.py") if not p.name.endswith(("_pb2.py", "_pb2_grpc.py"))]


def test_control_imports_no_other_stage() -> None:
    found = {f"{p.relative_to(CONTROL)}: {name}" for p in modules() for name in imported(p)
             if name.split(".")[0] in STAGES}
    assert len(modules()) > 30 and not found


def test_no_cli_group_imports_the_app() -> None:
    cli = CONTROL / "cli"
    found = {p.name for p in cli.glob("*.py") if p.name not in ("__init__.py", "__main__.py", "app.py")
             and {"control.cli.app", "control.cli"} & imported(p)}
    assert (cli / "common.py").exists() and not found
