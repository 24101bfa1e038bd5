"""message-validation: the file names a MIME part declares, as a reader would show them.

    declared_names(msg)      # ("invoice.pdf.exe", "invoice.pdf"): filename= and name=, decoded
    decode_words(text)       # RFC 2047 encoded words, also where RFC 2231 forbids them
"""

from __future__ import annotations

import email.header
import email.utils
import re
from email.message import Message

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def declared_names(msg: Message) -> tuple[str, ...]:
    """Every file name the part declares (they may disagree, and readers differ in
    which one they show): Content-Disposition filename, Content-Type name."""
    names: list[str] = []
    for param, header in (("filename", "content-disposition"), ("name", "content-type")):
        try:
            value = msg.get_param(param, header=header)
        except Exception:  # noqa: BLE001 - a header too broken to read names nothing
            continue
        if value is None:
            continue
        try:
            text = email.utils.collapse_rfc2231_value(value, errors="replace")
        except Exception:  # noqa: BLE001
            text = str(value)
        name = clean_name(decode_words(str(text)))
        if name and name not in names:
            names.append(name)
    return tuple(names)


def decode_words(text: str) -> str:
    """RFC 2047 encoded words (which RFC 2231 forbids in parameters; mailers use them anyway)."""
    if "=?" not in text:
        return text
    try:
        chunks = email.header.decode_header(text)
    except Exception:  # noqa: BLE001
        return text
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        try:
            out.append(chunk.decode(charset or "ascii", "replace"))
        except LookupError:  # a charset Python does not know
            out.append(chunk.decode("latin-1"))
    return "".join(out)


def clean_name(name: str) -> str:
    # Undecodable 8-bit header bytes arrive as surrogate escapes: show them as U+FFFD.
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _CONTROL.sub("", name).strip().strip('"').strip()
