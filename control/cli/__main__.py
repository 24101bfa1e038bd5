"""control/cli — ``python -m control.cli ...`` runs the `mailgate` command."""

from control.cli import main

main()
