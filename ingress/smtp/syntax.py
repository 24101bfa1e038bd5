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


BODY_TYPES = ("7BIT", "8BITMIME")  # RFC 6152; BINARYMIME (RFC 3030) needs CHUNKING, not offered


def mail_params(params: dict[str, str | bool], size_limit: int | None) -> bool:
    """Checks the parameters of MAIL FROM (SIZE, BODY, SMTPUTF8); True when SMTPUTF8 was given.
    Raises SyntaxProblem with the reply for a bad value or an unknown parameter."""
    params = dict(params)
    size, body, utf8 = params.pop("SIZE", None), params.pop("BODY", "7BIT"), params.pop("SMTPUTF8", False)
    if not isinstance(body, str) or body.upper() not in BODY_TYPES:  # values are case-insensitive (RFC 5321 2.4)
        raise SyntaxProblem(501, "5.5.4", "Error: BODY can only be one of 7BIT, 8BITMIME")
    if utf8 is not True and utf8 is not False:
        raise SyntaxProblem(501, "5.5.4", "Error: SMTPUTF8 takes no value")
    if size is not None and (not isinstance(size, str) or not size.isdigit()):
        raise SyntaxProblem(501, "5.5.4", "Error: SIZE needs a number")
    if size is not None and size_limit and int(str(size)) > size_limit:
        raise SyntaxProblem(552, "5.3.4", "Error: message size exceeds fixed maximum message size")
    if params:
        raise SyntaxProblem(555, "5.5.4", f"Error: MAIL FROM parameters not recognized: {' '.join(params)[:60]}")
    return utf8


def address_problem(address: str, smtputf8: bool, what: str) -> SyntaxProblem | None:
    """A non-ASCII address is allowed only in a transaction that declared SMTPUTF8 (RFC 6531 3.5:
    553 with X.6.7), and only as valid UTF-8 (the engine decodes with surrogateescape)."""
    if address.isascii():
        return None
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return SyntaxProblem(553, "5.1.3" if what == "recipient" else "5.1.7",
                             f"Error: malformed {what} address: not valid UTF-8")
    if not smtputf8:
        return SyntaxProblem(553, "5.6.7", f"Error: non-ASCII {what} address not permitted without SMTPUTF8 "
                                           "(send MAIL FROM:<...> SMTPUTF8, RFC 6531)")
    return None
