"""control/cli — the `mailgate` command (typer), one module per command group.

The console script is ``mailgate = control.cli:main``; ``python -m control.cli`` is the same
(the engine runs each service so). The app is built in ``control.cli.app``, imported only
when the command runs.
"""

from __future__ import annotations


def main() -> None:
    from control.cli.app import main as run

    run()
