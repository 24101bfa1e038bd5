"""smtp-server: parsing the arguments of MAIL and RCPT (RFC 5321 4.1.2, RFC 1869 params)."""

from __future__ import annotations

import re
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError

# The common case, without the email package's (slow, general) parser.
FAST_ADDR = re.compile(
    r"^<((?!\.)(?!.*\.\.)[A-Za-z0-9._+=-]+(?<!\.)@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?: (.*))?$")
PARAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


class SyntaxProblem(ValueError):
    """The reply to give: code, enhanced status and text."""

    def __init__(self, code: int, status: str, text: str) -> None:
        super().__init__(f"{code} {status} {text}")
        self.reply = f"{code} {status} {text}"


def split_path(arg: str, keyword: str) -> tuple[str, str]:
    """ "FROM:<a@b> SIZE=1" → ("a@b", "SIZE=1"); "<>" → ("", ...). Raises SyntaxProblem."""
    if arg[:len(keyword)].upper() != keyword:
        raise SyntaxProblem(501, "5.5.4", f"Syntax: {'MAIL FROM' if keyword == 'FROM:' else 'RCPT TO'}: <address>")
    rest = arg[len(keyword):].strip()
    m = FAST_ADDR.match(rest)
    if m is not None:
        return m.group(1), m.group(2) or ""
    if rest.startswith("<>"):
        return "", rest[2:].strip()
    try:
        token, params = get_angle_addr(rest) if rest.startswith("<") else get_addr_spec(rest)
        address = str(token.addr_spec)
    except (HeaderParseError, IndexError, AttributeError):
        raise SyntaxProblem(553, "5.1.3", "Error: malformed address") from None
    if not address or address == "<>":
        raise SyntaxProblem(553, "5.1.3", "Error: malformed address")
    return address, params.strip()


def parse_params(text: str) -> dict[str, str | bool]:
    """ "SIZE=123 BODY=8BITMIME SMTPUTF8" → {"SIZE": "123", "BODY": "8BITMIME", "SMTPUTF8": True}."""
    params: dict[str, str | bool] = {}
    for item in text.split():
        name, eq, value = item.partition("=")
        if not PARAM.match(name) or (eq and not value):
            raise SyntaxProblem(501, "5.5.4", f"Syntax error in parameter {item[:40]!r}")
        params[name.upper()] = value if eq else True
    return params
