"""smtp-server: the ESMTP protocol engine, one ``asyncio.Protocol`` per connection.

Commands are parsed straight from the receive buffer; replies of a pipelined group
leave in one write; only the steps that wait (MAIL, RCPT, end of DATA: the filters
and Kafka) run as tasks. Every byte passes ``lines.LineGuard`` first (CRLF only, no
NUL: no SMTP smuggling); a line over max_line_length is not kept and gets 500 5.5.2
(a message line: after the end of the data), the session goes on; input buffered
behind STARTTLS is thrown away (no command injection); a message sent before the 354
ends the session (554 5.5.0, RFC 2920 3.1). The engine knows no policy: the handler's hooks
(``handler.GatewayHandler``) answer MAIL, RCPT and DATA. Written for speed after
aiosmtpd's engine cost ~0.5 ms of CPU per short session (see bench/smtp_vs_postfix.py).
"""

from __future__ import annotations

import asyncio
import ssl
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, cast

from core.logging import get_logger
from core.settings import SmtpLimitSettings
from ingress.smtp import secure
from ingress.smtp.data import DataCollector
from ingress.smtp.lines import LineGuard
from ingress.smtp.protocol import ConnectionTracker, GatewayEnvelope, GatewaySession, with_status
from ingress.smtp.syntax import SyntaxProblem, address_problem, mail_params, parse_params, split_path

log = get_logger("smtp-server")
MAX_COMMAND = 1000  # octets of a command line without CRLF (RFC 5321 says 512; extensions add)
MAX_PENDING = 1 << 20  # buffered input while a step waits: more pauses reading
_EHLO: dict[tuple[str, int | None, bool, bool, bool], str] = {}  # EHLO replies, made once


class SmtpEngine(asyncio.Protocol):
    """One SMTP session: parses, limits and answers; asks ``handler`` at MAIL, RCPT, DATA."""

    def __init__(self, handler: Any, *, limits: SmtpLimitSettings, tracker: ConnectionTracker,
                 loop: asyncio.AbstractEventLoop, hostname: str, ident: str, data_size_limit: int | None,
                 tls_context: ssl.SSLContext | None = None, authenticator: Callable[[str, str], bool] | None = None,
                 implicit_tls: bool = False) -> None:
        self.handler, self.limits, self.tracker, self.loop = handler, limits, tracker, loop
        self.hostname, self.ident, self.data_size_limit = hostname, ident, data_size_limit
        self.tls_context, self.authenticator, self.implicit_tls = tls_context, authenticator, implicit_tls
        self.guard = LineGuard(limits.max_line_length)
        self.transport: asyncio.Transport | None = None
        self.session: GatewaySession | None = None
        self.envelope = GatewayEnvelope()
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.task: asyncio.Task[None] | None = None
        self.collector: DataCollector | None = None
        self.auth_step: tuple[str, str | None] | None = None  # (mechanism, login so far)
        self.is_tls = implicit_tls
        self.tls_pending = False  # between STARTTLS and the handshake: input in the clear is dropped
        self.commands = self.errors = 0
        self.closing = self.refused = self.paused = self.reading_paused = False
        self.skipping = False  # inside a command line over max_line_length: dropped up to its CRLF
        self.last_input = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.ip = ""

    # -- the connection --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        refused = self.tracker.acquire(self.ip)
        if refused is not None:
            self.refused = self.closing = True
            transport.write(f"421 4.7.0 {self.hostname} {refused}\r\n".encode())
            transport.close()
            self.handler.connection_refused(self.ip, refused)
            return
        self.tracker.open.add(self)
        self.session = session = GatewaySession(self.loop)
        session.peer = peer
        session.client.ip, session.client.port = self.ip, int(peer[1]) if isinstance(peer, tuple) else 0
        if self.implicit_tls:
            secure.tls_info(self, transport)
        self.handler.connection_opened(self, session)
        self.last_input = self.loop.time()
        self.timer = self.loop.call_at(self.last_input + self.limits.idle_timeout_s, self._idle)
        transport.write(f"220 {self.hostname} {self.ident}\r\n".encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        self.closing = True
        self.tracker.release(self.ip)
        self.tracker.open.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None:
            self.task.cancel()  # a client that vanishes mid-step: nothing is published after this
        self.end_transaction()
        self.transport = None

    def eof_received(self) -> bool:
        return False  # a half-closed client can send no more commands: the session is over

    def pause_writing(self) -> None:
        self.paused = True  # the client does not read its replies: stop reading its commands

    def resume_writing(self) -> None:
        self.paused = False
        if self.task is None and not self.closing:
            self._process()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.tls_pending:
            if self.transport is not None and self.transport.get_protocol() is self:
                return  # sent in the clear after STARTTLS: thrown away (RFC 3207 4.2, CVE-2011-0411)
            self.tls_pending = False  # the first bytes through the TLS layer
            self.guard.reset()
        problem = self.guard.feed(data)
        if problem is not None:
            self.abort(f"521 5.5.2 {self.hostname} Error: {problem}; closing connection")
            return
        if self.guard.overlong:  # a command line is answered in _process; a message line here
            self.guard.overlong = False
            if self.collector is not None:
                self.collector.overlong = True
        self.last_input = self.loop.time()
        if self.collector is not None:
            self._collect(data)
            if self.collector is None and self.task is None:
                self._process()
            return
        self.buf += data
        if self.task is None and not self.paused:
            self._process()
        elif len(self.buf) > MAX_PENDING and self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def abort(self, reply: str) -> None:
        """Say why and close at once: nothing more is read or run."""
        if self.closing:
            return
        self.closing = True
        if self.session is not None:
            self.handler.session_aborted(self, self.session, reply)
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.out) + reply.encode() + b"\r\n")
            self.transport.close()
        self.out.clear()

    def _idle(self) -> None:
        due = self.last_input + self.limits.idle_timeout_s
        if self.loop.time() < due:
            self.timer = self.loop.call_at(due, self._idle)
        else:
            self.abort(f"421 4.4.2 {self.hostname} Error: timeout exceeded; closing connection")

    # -- commands ----------------------------------------------------------------------

    def _process(self) -> None:
        """Run the complete command lines in the buffer, until one has to wait."""
        buf = self.buf
        while not self.closing and self.task is None and self.collector is None and not self.paused:
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > self.limits.max_line_length:  # not kept: read on to its end, then 500
                    self.skipping = True
                    del buf[:-1]  # a CR that may begin the line's CRLF
                break
            line = bytes(buf[:end])
            del buf[:end + 2]
            if self.skipping:
                self.skipping = False
                self.reply(f"500 5.5.2 Error: line longer than {self.limits.max_line_length} octets")
                continue
            self._command(line)
        if self.out and self.transport is not None and not self.closing:
            self.transport.write(b"".join(self.out))
            self.out.clear()
        if self.reading_paused and self.task is None and not self.paused and self.transport is not None \
                and not self.closing:
            self.reading_paused = False
            self.transport.resume_reading()

    def reply(self, text: str, raw: bool = False) -> None:
        if not raw:
            text = with_status(text)
        self.out.append(text.encode("utf-8", "surrogateescape") + b"\r\n")
        if text[:1] in ("4", "5"):
            self.errors += 1
            if self.errors >= self.limits.max_errors:
                self.abort(f"421 4.7.0 {self.hostname} Error: too many errors; closing connection")

    def _command(self, line: bytes) -> None:
        if self.auth_step is not None:
            secure.auth_continue(self, line)
            return
        self.commands += 1
        if self.commands > self.limits.max_commands:
            self.abort(f"421 4.7.0 {self.hostname} Error: too many commands in one session; closing connection")
            return
        if len(line) > MAX_COMMAND:
            self.reply("500 5.5.2 Error: command line too long")
            return
        verb_bytes, _, arg_bytes = line.partition(b" ")
        try:
            verb = verb_bytes.decode("ascii").upper()
        except UnicodeDecodeError:
            verb = ""
        method = COMMANDS.get(verb)
        if method is None:
            self.reply(f"500 5.5.2 Error: command \"{verb[:20]}\" not recognized" if verb else
                       "500 5.5.2 Error: bad syntax")
            return
        step = method(self, arg_bytes.decode("utf-8", "surrogateescape").strip())
        if step is not None:
            self._start(step)

    def _start(self, step: Coroutine[Any, Any, None]) -> None:
        """Run a step at once; only when it has to wait (DNS, Kafka) does it become a task.
        (Most MAIL and RCPT checks never wait: a task each would be a tenth of the CPU.)"""
        try:
            waiting_for = step.send(None)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - the client gets a 451, the log gets the error
            self._failed(exc)
            return
        self.task = self.loop.create_task(self._run(cast(Awaitable[None], _resume(step, waiting_for))))

    async def _run(self, step: Awaitable[None]) -> None:
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - as above
            self._failed(exc)
        self.task = None
        if not self.closing:
            self._process()

    def _failed(self, exc: Exception) -> None:
        log.error("smtp step failed", error=repr(exc), exc_info=exc)
        self.reply("451 4.3.0 Internal error; try again later")

    def need_helo(self) -> bool:
        if self.session is not None and self.session.host_name:
            return False
        self.reply("503 5.5.1 Error: send HELO/EHLO first")
        return True

    def end_transaction(self) -> None:
        env = self.envelope
        if env.mail_from is None and not env.tx.started and not env.tx.verdicts:
            return  # nothing began: the same (empty) envelope serves on
        if self.session is not None:
            self.handler.transaction_ended(self, self.session, env)
        self.envelope = GatewayEnvelope()

    def smtp_EHLO(self, arg: str) -> None:
        self._hello(arg, extended=True)

    def smtp_HELO(self, arg: str) -> None:
        self._hello(arg, extended=False)

    def _hello(self, name: str, extended: bool) -> None:
        verb = "EHLO" if extended else "HELO"
        if not name:
            self.reply(f"501 5.5.4 Syntax: {verb} hostname")
            return
        assert self.session is not None
        self.end_transaction()
        self.session.host_name = self.session.client.helo = name
        self.session.extended_smtp = extended
        if not extended:
            self.reply(f"250 {self.hostname}", raw=True)
            return
        self.reply(self._ehlo_reply(self.is_tls), raw=True)

    def _ehlo_reply(self, tls: bool) -> str:
        cached = _EHLO.get((self.hostname, self.data_size_limit, self.tls_context is not None,
                            self.authenticator is not None, tls))
        if cached is not None:
            return cached
        lines = [self.hostname, "PIPELINING", "SIZE" + (f" {self.data_size_limit}" if self.data_size_limit else ""),
                 "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]
        if self.tls_context is not None and not tls:
            lines.append("STARTTLS")
        if self.authenticator is not None and tls:
            lines.append("AUTH PLAIN LOGIN")
        text = "\r\n".join(f"250-{x}" for x in lines[:-1]) + f"\r\n250 {lines[-1]}"
        _EHLO[(self.hostname, self.data_size_limit, self.tls_context is not None, self.authenticator is not None,
               tls)] = text
        return text

    def smtp_MAIL(self, arg: str) -> Coroutine[Any, Any, None] | None:
        if self.need_helo():
            return None
        if self.envelope.mail_from is not None:
            self.reply("503 5.5.1 Error: nested MAIL command")
            return None
        try:
            address, rest = split_path(arg, "FROM:")
            if rest and not (self.session is not None and self.session.extended_smtp):
                # no extension is in effect after HELO (RFC 5321 4.1.1.11); aiosmtpd refuses them too
                self.reply("555 5.5.4 Error: MAIL FROM parameters need EHLO, not HELO")
                return None
            smtputf8 = mail_params(parse_params(rest), self.data_size_limit)
            problem = address_problem(address, smtputf8, "sender")
        except SyntaxProblem as exc:
            problem = exc
        if problem is not None:
            self.reply(problem.reply)
            return None
        self.envelope.smtp_utf8 = smtputf8
        return self._hook(self.handler.handle_MAIL(self, self.session, self.envelope, address or "<>",
                                                   rest.upper().split()))

    def smtp_RCPT(self, arg: str) -> Coroutine[Any, Any, None] | None:
        if self.need_helo():
            return None
        if self.envelope.mail_from is None:
            self.reply("503 5.5.1 Error: need MAIL command")
            return None
        try:
            address, rest = split_path(arg, "TO:")
        except SyntaxProblem as exc:
            self.reply(exc.reply)
            return None
        if rest:
            self.reply("555 5.5.4 Error: RCPT TO parameters not recognized")
            return None
        problem = address_problem(address, self.envelope.smtp_utf8, "recipient")
        if problem is not None:
            self.reply(problem.reply)
            return None
        return self._hook(self.handler.handle_RCPT(self, self.session, self.envelope, address, []))

    async def _hook(self, answer: Awaitable[str]) -> None:
        self.reply(await answer)

    def smtp_DATA(self, arg: str) -> None:
        if self.need_helo():
            return
        if not self.envelope.rcpt_tos:
            self.reply("503 5.5.1 Error: need RCPT command")
        elif arg:
            self.reply("501 5.5.4 Syntax: DATA")
        elif self.buf:
            # The message came before the 354 (RFC 2920 3.1: DATA ends a pipelined group):
            # like Postfix's smtpd_forbid_unauth_pipelining, the client is let go.
            self.abort(f"554 5.5.0 {self.hostname} Error: SMTP protocol synchronization; closing connection")
        else:
            self.reply("354 End data with <CR><LF>.<CR><LF>")
            self.collector = DataCollector(self.data_size_limit)
            pending, self.buf = bytes(self.buf), bytearray()
            if pending:
                self._collect(pending)

    def _collect(self, data: bytes) -> None:
        assert self.collector is not None
        rest = self.collector.feed(data)
        if rest is None:
            return
        collector, self.collector = self.collector, None
        self.buf += rest
        if collector.too_big:
            self.end_transaction()
            self.reply("552 5.3.4 Error: message too big for this server")
            return
        if collector.overlong:  # RFC 5321 4.5.3.1.6: the transaction fails, the session goes on
            self.end_transaction()
            self.reply(f"500 5.5.2 Error: message line longer than {self.limits.max_line_length} octets; "
                       "message not accepted")
            return
        self.envelope.content = self.envelope.original_content = collector.content
        self._start(self._data_done())

    async def _data_done(self) -> None:
        status = await self.handler.handle_DATA(self, self.session, self.envelope)
        self.end_transaction()
        self.reply(status)

    def smtp_RSET(self, arg: str) -> None:
        if arg:
            self.reply("501 5.5.4 Syntax: RSET")
            return
        self.end_transaction()
        self.reply("250 2.0.0 OK")

    def smtp_NOOP(self, arg: str) -> None:
        self.reply("250 2.0.0 OK")

    def smtp_VRFY(self, arg: str) -> None:
        self.reply("252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery" if arg else
                   "501 5.5.4 Syntax: VRFY <address>")

    def smtp_EXPN(self, arg: str) -> None:
        self.reply("502 5.5.1 EXPN not implemented")

    def smtp_HELP(self, arg: str) -> None:
        self.reply("214 2.0.0 Commands: " + " ".join(sorted(COMMANDS)))

    def smtp_QUIT(self, arg: str) -> None:
        self.reply("221 2.0.0 Bye")
        self.closing = True
        if self.transport is not None:
            self.transport.write(b"".join(self.out))
            self.transport.close()
        self.out.clear()

    def smtp_STARTTLS(self, arg: str) -> Coroutine[Any, Any, None] | None:
        return secure.starttls(self, arg)

    def smtp_AUTH(self, arg: str) -> None:
        secure.auth(self, arg)


@types.coroutine
def _resume(step: Coroutine[Any, Any, None], waiting_for: Any) -> Generator[Any, Any, None]:
    """The rest of a coroutine whose first part already ran: hands what it waits for
    to the task that runs this, and its answers (or exceptions) back to it."""
    while True:
        try:
            answer = yield waiting_for
        except BaseException as exc:  # noqa: BLE001 - cancellation included: it goes to the step
            try:
                waiting_for = step.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting_for = step.send(answer)
            except StopIteration:
                return


COMMANDS: dict[str, Callable[[SmtpEngine, str], Coroutine[Any, Any, None] | None]] = {
    name[5:]: getattr(SmtpEngine, name) for name in dir(SmtpEngine) if name.startswith("smtp_")
}
