"""message-validation: transfer encodings decoded as leniently as the most lenient mail reader.

    data, note = decode_transfer(body, "base64")    # never raises; note says what was damaged
    base64_readings(body)                            # every way a reader may take damaged base64
    decode_qp(body)                                  # "= " before a line end is still a soft break
    inline_blocks(text, limit)                       # uuencode / BinHex 4.0 / yEnc blocks in a text

A reader that decodes more than we do can open what we never scanned, so where readers
disagree (base64 padded in the middle: one stops, one skips the ``=``, one starts a new
encoding) every reading is returned and scanned. binascii does the work where it can
(base64, quoted-printable, uuencode lines); BinHex (binascii's hqx functions left Python
in 3.11) and yEnc are small enough to decode here. yEnc is not taken from PyPI: sabctools
(SABnzbd's) decodes NNTP articles and undoes their dot-stuffing, which SMTP has already
undone in a mail body; the other packages are unmaintained.
"""

from __future__ import annotations

import binascii
import re

IDENTITY_ENCODINGS = {"", "7bit", "8bit", "binary"}
UU_ENCODINGS = {"x-uuencode", "uuencode", "x-uue", "uue"}
_B64_ALPHABET = rb"A-Za-z0-9+/"
_B64_NOT_ALPHABET = re.compile(rb"[^A-Za-z0-9+/]+")
_B64_PADDED = re.compile(rb"=[=\s]*")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/=\s]")
_QP_SOFT_BREAK_WSP = re.compile(rb"=[ \t]+(?=\r?\n|$)")
_UU_BEGIN = re.compile(rb"^begin[ \t]+[0-7]{3,4}[ \t]+([^\r\n]+?)[ \t]*\r?$", re.MULTILINE)
_HQX_INTRO = re.compile(rb"\(This file must be converted with BinHex[^)\r\n]*\)[^:]*:")
_HQX_ALPHABET = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
_HQX_VALUE = {c: i for i, c in enumerate(_HQX_ALPHABET)}
_YENC_BEGIN = re.compile(rb"^=ybegin[ \t]([^\r\n]*)\r?\n", re.MULTILINE)
_YENC_END = re.compile(rb"^=yend\b", re.MULTILINE)
_YENC_META = re.compile(rb"^=y(?:part|begin|end)\b[^\r\n]*\r?\n?", re.MULTILINE)
_YENC_TABLE = bytes((b - 42) & 0xFF for b in range(256))

Block = tuple[str, bytes]  # (declared file name, decoded data)


def decode_transfer(body: bytes, cte: str) -> tuple[bytes, str | None]:
    """``body`` decoded from transfer encoding ``cte``, and a note when it was damaged."""
    if cte == "base64":
        return decode_base64(body)
    if cte == "quoted-printable":
        return decode_qp(body), None
    if cte in UU_ENCODINGS:
        blocks = uudecode_blocks(body, len(body))
        return (blocks[0][1], None) if blocks else (body, "uuencode without a begin line")
    if cte in IDENTITY_ENCODINGS:
        return body, None
    return body, f"unknown transfer encoding {cte[:40]!r} taken as 8bit"


def decode_base64(body: bytes) -> tuple[bytes, str | None]:
    """Lenient base64, the way most readers take it: characters outside the alphabet are
    skipped (line breaks of any length included), each padded stretch is decoded on its
    own (concatenated encodings), missing padding is supplied."""
    note = "base64 with characters outside its alphabet" if _B64_JUNK.search(body) else None
    return b"".join(_b64(seg) for seg in _B64_PADDED.split(body)), note


def base64_readings(body: bytes) -> list[bytes]:
    """Every decoding a reader may make of ``body``, the primary one (decode_base64) first:
    also the ``=`` taken as junk (one continuous encoding), and the decoding that ends at
    the first padding (what follows it taken as junk). Each distinct one once."""
    segments = [s for s in _B64_PADDED.split(body) if _B64_NOT_ALPHABET.sub(b"", s)]
    readings = [b"".join(_b64(s) for s in segments)]
    if len(segments) > 1:
        readings += [_b64(b"".join(segments)), _b64(segments[0])]
    return list(dict.fromkeys(readings))


def _b64(text: bytes) -> bytes:
    run = _B64_NOT_ALPHABET.sub(b"", text)
    run = run[: len(run) - (len(run) % 4 == 1)]  # a lone sixth of a byte decodes to nothing
    return binascii.a2b_base64(run + b"=" * (-len(run) % 4)) if run else b""


def decode_qp(body: bytes) -> bytes:
    """Quoted-printable as readers take it: ``=`` with blanks before the line end is still a
    soft line break (RFC 2045 6.7: blanks a gateway added), ``=`` not followed by two hex
    digits stays as it is, hex digits of either case."""
    return binascii.a2b_qp(_QP_SOFT_BREAK_WSP.sub(b"=", body))


def uudecode_blocks(text: bytes, limit: int) -> list[Block]:
    """Every ``begin NNN name`` ... ``end`` block of ``text``, each up to ``limit`` bytes."""
    blocks: list[Block] = []
    for match in _UU_BEGIN.finditer(text):
        out = bytearray()
        for line in text[match.end():].lstrip(b"\r\n").splitlines():
            line = line.rstrip()
            if line == b"end" or len(out) > limit:
                break
            if line in (b"", b"`"):
                continue
            # Some encoders pad lines or cut their trailing spaces: the length character
            # says how many bytes the line holds; keep just the characters that carry them.
            width = 1 + (((line[0] - 32) & 63) + 2) // 3 * 4
            try:
                out += binascii.a2b_uu(line[:width].ljust(width, b" "))
            except binascii.Error:
                break
        if out:
            blocks.append((_name(match.group(1)), bytes(out[:limit + 1])))
    return blocks


def binhex_blocks(text: bytes, limit: int) -> list[Block]:
    """The data fork of every BinHex 4.0 block (``(This file must be converted with
    BinHex 4.0)`` then ``:...:``); the resource fork holds no file a reader opens."""
    blocks: list[Block] = []
    for match in _HQX_INTRO.finditer(text):
        end = text.find(b":", match.end())
        body = text[match.end(): end if end >= 0 else len(text)]
        packed = _hqx_bits(body)
        unpacked = _hqx_rle(packed, limit + 64 * 1024)
        block = _hqx_fork(unpacked, limit)
        if block is not None:
            blocks.append(block)
    return blocks


def _hqx_bits(body: bytes) -> bytes:
    """Six bits per character of the BinHex alphabet (anything else, line breaks too, skipped)."""
    out = bytearray()
    acc = bits = 0
    for char in body:
        value = _HQX_VALUE.get(char)
        if value is None:
            continue
        acc, bits = (acc << 6) | value, bits + 6
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    return bytes(out)


def _hqx_rle(data: bytes, limit: int) -> bytes:
    """BinHex run-length decoding: ``c 0x90 n`` is c n times, ``0x90 0x00`` a literal 0x90."""
    out = bytearray()
    i = 0
    while i < len(data) and len(out) <= limit:
        byte = data[i]
        if byte == 0x90 and i + 1 < len(data):
            count = data[i + 1]
            if count == 0:
                out.append(0x90)
            elif out:
                out += bytes([out[-1]]) * (count - 1)
            i += 2
            continue
        out.append(byte)
        i += 1
    return bytes(out)


def _hqx_fork(data: bytes, limit: int) -> Block | None:
    """(name, data fork) from the BinHex header: name length, name, version, type,
    creator, flags, data length, resource length, header CRC."""
    if not data:
        return None
    name_len = data[0]
    header_end = 1 + name_len + 1 + 4 + 4 + 2
    if len(data) < header_end + 10:
        return None
    data_len = int.from_bytes(data[header_end:header_end + 4], "big")
    start = header_end + 8 + 2
    return _name(data[1:1 + name_len]), data[start:start + min(data_len, limit + 1)]


def yenc_blocks(text: bytes, limit: int) -> list[Block]:
    """Every ``=ybegin ... name=`` ... ``=yend`` block (its ``=ypart`` lines skipped)."""
    blocks: list[Block] = []
    for match in _YENC_BEGIN.finditer(text):
        end = _YENC_END.search(text, match.end())
        body = _YENC_META.sub(b"", text[match.end(): end.start() if end else len(text)])
        name = match.group(1).partition(b"name=")[2].strip()
        blocks.append((_name(name), decode_yenc(body)[:limit + 1]))
    return blocks


def decode_yenc(body: bytes) -> bytes:
    """yEnc: every byte minus 42; ``=`` escapes the next, which is minus 64 as well; line
    breaks are not data."""
    first, *escaped = body.replace(b"\r", b"").replace(b"\n", b"").split(b"=")
    pieces = [first] + [bytes([(p[0] - 64) & 0xFF]) + p[1:] for p in escaped if p]
    return b"".join(pieces).translate(_YENC_TABLE)


#: Old encodings found inside a text (a part's content or a mail's body): the marker that
#: begins a line of theirs (a plain substring test first: most mails have none), decoder.
INLINE_DECODERS = ((b"begin ", "uuencode", uudecode_blocks),
                   (b"(This file must be converted with BinHex", "binhex", binhex_blocks),
                   (b"=ybegin ", "yenc", yenc_blocks))


def inline_blocks(text: bytes, limit: int) -> list[tuple[str, str, bytes]]:
    """(origin, name, data) of every uuencoded, BinHex and yEnc block in ``text``."""
    found: list[tuple[str, str, bytes]] = []
    for marker, origin, decode in INLINE_DECODERS:
        if marker in text and (b"\n" + marker in text or text.startswith(marker)):
            found += [(origin, name, data) for name, data in decode(text, limit) if data]
    return found


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").strip().strip('"').strip()
