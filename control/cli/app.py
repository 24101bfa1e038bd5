"""control/cli — the `mailgate` command: run the gateway, its local broker, its topics, one service.

    mailgate up                      # broker (unless external) + topics + every service of this node
    mailgate kafka start|stop|status # the local single-node KRaft broker
    mailgate topics create|list      # the queues
    mailgate service smtp-server     # run one service in the foreground
    mailgate services list|start|stop|restart|pause|resume   # through control-server (gRPC)
    mailgate queue list|show|release|delete|report            # the quarantine queues
    mailgate spam-reset --yes                                 # forget every report: back to the base model
    mailgate config get|set|reset                             # configuration changes, as events
    mailgate pop3 status             # the POP3 accounts: last success, last error
    mailgate archive search|export|verify|hold|retention      # the mail archive (asked of its archiver)
    mailgate delivery show MAIL_ID   # what happened to a mail, per recipient (mail.delivery)
    mailgate sink                    # an SMTP sink to deliver to while trying things out
    mailgate report spam|ham FILE... # mails the spam filter learns from

This module only builds the app from the command groups (node, broker, tools, remote, delivery,
archive, pop3: one module each); what they share is in ``control.cli.common``.
"""

from __future__ import annotations

import sys

import typer

from control.cli import archive, broker, delivery, node, pop3, remote, tools

app = typer.Typer(help="mailgate: an email security gateway on Apache Kafka.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
for group in (node, broker, tools, remote, delivery, archive, pop3):
    group.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
