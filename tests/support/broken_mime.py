"""Mails that hide a zip behind malformed MIME, one builder per trick, for the
message-validation tests (issue 18, section 4). Each builder takes the zip and gives the
raw mail; ``payload_zip(infected)`` is EICAR zipped, or a harmless twin of the same shape.

    for kind, build in KINDS.items():
        raw = build(payload_zip(infected=True))

Every mail is generated here, in the test; no collection of real malformed mail is kept.
"""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
from collections.abc import Callable

from tests.support.clamd import EICAR

HEAD = b"From: mallory@example.net\r\nTo: bob@example.com\r\nSubject: %s\r\nMIME-Version: 1.0\r\n"
CLEAN = b"Harmless text of the same length as the EICAR test file, nothing to find here......"


def payload_zip(infected: bool) -> bytes:
    """A deflated zip of one file (EICAR or harmless text); its comment holds ``=`` bytes,
    so that quoted-printable tricks have an ``=`` to play with."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("readme.com" if infected else "readme.txt", EICAR if infected else CLEAN)
        zf.comment = b"a=zb=q"
    return buf.getvalue()


def _b64_lines(data: bytes, widths: tuple[int, ...] = (76,)) -> list[bytes]:
    text = base64.b64encode(data)
    lines, i, n = [], 0, 0
    while i < len(text):
        width = widths[n % len(widths)]
        lines.append(text[i:i + width])
        i, n = i + width, n + 1
    return lines


def _multipart(subject: bytes, part_headers: bytes, body: bytes, boundary: bytes = b"b1",
               content_type: bytes | None = None) -> bytes:
    ctype = content_type or b'multipart/mixed; boundary="' + boundary + b'"'
    return (HEAD % subject + b"Content-Type: " + ctype + b"\r\n\r\n" +
            b"--" + boundary + b"\r\nContent-Type: text/plain\r\n\r\nsee the attachment\r\n" +
            b"--" + boundary + b"\r\n" + part_headers + b"\r\n" + body + b"\r\n--" + boundary + b"--\r\n")


def _zip_part(lines: list[bytes], cte: bytes = b"Content-Transfer-Encoding: base64") -> tuple[bytes, bytes]:
    headers = b'Content-Type: application/zip; name="docs.zip"\r\n' + cte + b"\r\n"
    return headers, b"\r\n".join(lines)


# -- base64 that readers still decode --------------------------------------------


def b64_padding_inside(data: bytes) -> bytes:
    lines = _b64_lines(data, (70, 76))  # 70 characters: a quantum cut in two, then "=" after it
    lines[0] += b"=="
    return _multipart(b"padding inside", *_zip_part(lines))


def b64_extra_padding(data: bytes) -> bytes:
    lines = _b64_lines(data)
    lines[-1] += b"====="
    return _multipart(b"extra padding", *_zip_part(lines))


def b64_junk_after_padding(data: bytes) -> bytes:
    lines = _b64_lines(data + b"\0")  # not a multiple of 3: the encoding ends in padding
    lines.append(b"!!--junk after the end**AAAA")
    return _multipart(b"junk after padding", *_zip_part(lines))


def b64_mixed_lines(data: bytes) -> bytes:
    return _multipart(b"mixed line lengths", *_zip_part(_b64_lines(data, (61, 75, 13, 76, 2))))


def b64_blank_in_header_name(data: bytes) -> bytes:
    return _multipart(b"blank in a header name", *_zip_part(_b64_lines(data),
                                                            b"Content-Transfer-Encoding : base64"))


# -- quoted-printable that readers still decode ----------------------------------


def _qp(data: bytes, literal_equals: bool = False, soft_break: bytes = b"=\r\n") -> bytes:
    out, width = bytearray(), 0
    for i, byte in enumerate(data):
        nxt = data[i + 1:i + 2]
        if byte == 0x3D and literal_equals and nxt and chr(nxt[0]) not in "0123456789ABCDEFabcdef":
            piece = b"="  # "=" before a non-hex character: readers keep it as it is
        elif 33 <= byte <= 126 and byte != 0x3D:
            piece = bytes([byte])
        else:
            piece = b"=%02X" % byte
        if width + len(piece) > 72:
            out += soft_break
            width = 0
        out += piece
        width += len(piece)
    return bytes(out)


def qp_soft_break_blanks(data: bytes) -> bytes:
    return _multipart(b"soft breaks with blanks", *_zip_part(
        [_qp(data, soft_break=b"= \t \r\n")], b"Content-Transfer-Encoding: quoted-printable"))


def qp_equals_not_hex(data: bytes) -> bytes:
    assert b"=z" in data  # payload_zip's comment
    return _multipart(b"= before non-hex", *_zip_part(
        [_qp(data, literal_equals=True)], b"Content-Transfer-Encoding: quoted-printable"))


# -- old encodings ------------------------------------------------------------


def uuencode(data: bytes, name: str = "docs.zip") -> bytes:
    lines = [binascii.b2a_uu(data[i:i + 45]).rstrip(b"\n") for i in range(0, len(data), 45)]
    return b"begin 644 " + name.encode() + b"\r\n" + b"\r\n".join(lines) + b"\r\n`\r\nend\r\n"


_HQX = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"


def binhex(data: bytes, name: bytes = b"docs.zip") -> bytes:
    header = bytes([len(name)]) + name + b"\0" + b"????" + b"????" + b"\0\0" + len(data).to_bytes(4, "big") + \
        b"\0\0\0\0"
    crc = binascii.crc_hqx
    stream = header + crc(header, 0).to_bytes(2, "big") + data + crc(data, 0).to_bytes(2, "big") + b"\0\0"
    stream = stream.replace(b"\x90", b"\x90\x00")  # the run-length marker, as a literal
    bits = int.from_bytes(stream, "big") << (-len(stream) * 8 % 6)
    count = (len(stream) * 8 + 5) // 6
    chars = bytes(_HQX[(bits >> (6 * (count - 1 - i))) & 63] for i in range(count))
    lines = [chars[i:i + 64] for i in range(0, len(chars), 64)]
    return b"(This file must be converted with BinHex 4.0)\r\n:" + b"\r\n".join(lines) + b":\r\n"


def yenc(data: bytes, name: bytes = b"docs.zip") -> bytes:
    out, line = bytearray(), bytearray()
    for byte in data:
        enc = (byte + 42) & 0xFF
        line += b"=" + bytes([(enc + 64) & 0xFF]) if enc in (0, 10, 13, 0x3D, 0x2E) else bytes([enc])
        if len(line) >= 128:
            out += line + b"\r\n"
            line = bytearray()
    out += line + b"\r\n"
    return b"=ybegin line=128 size=%d name=%s\r\n" % (len(data), name) + bytes(out) + b"=yend size=%d\r\n" % len(data)


def _in_part(subject: bytes, block: bytes) -> bytes:
    return _multipart(subject, b'Content-Type: application/octet-stream; name="docs.dat"\r\n', block)


def _inline(subject: bytes, block: bytes) -> bytes:
    return HEAD % subject + b"Content-Type: text/plain\r\n\r\nsee below\r\n\r\n" + block + b"\r\nbye\r\n"


def _in_preamble(subject: bytes, block: bytes) -> bytes:
    return (HEAD % subject + b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n' + block +
            b"--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1--\r\n")


# -- ambiguous structure ------------------------------------------------------


def two_boundaries(data: bytes) -> bytes:
    return _multipart(b"two boundaries", *_zip_part(_b64_lines(data)), boundary=b"real",
                      content_type=b'multipart/mixed; boundary="decoy"; boundary="real"')


def rfc2231_beside_plain(data: bytes) -> bytes:
    return _multipart(b"rfc 2231 boundary", *_zip_part(_b64_lines(data)), boundary=b"real",
                      content_type=b'multipart/mixed; boundary="decoy"; boundary*0="re"; boundary*1="al"')


def odd_multipart_type(data: bytes) -> bytes:
    return _multipart(b"odd multipart type", *_zip_part(_b64_lines(data)),
                      content_type=b'multipart/mixed/related; boundary="b1"')


def unusual_subtype(data: bytes) -> bytes:
    return _multipart(b"unusual subtype", *_zip_part(_b64_lines(data)),
                      content_type=b'multipart/x-vnd.unheard-of; boundary="b1"')


def multipart_without_subtype(data: bytes) -> bytes:
    return _multipart(b"multipart without subtype", *_zip_part(_b64_lines(data)),
                      content_type=b'multipart; boundary="b1"')


def blank_in_content_type_name(data: bytes) -> bytes:
    """The mail's own Content-Type with a blank before its colon (RFC 5322 obs-optional)."""
    raw = _multipart(b"blank in the content-type name", *_zip_part(_b64_lines(data)))
    return raw.replace(b"\r\nContent-Type: multipart/", b"\r\nContent-Type : multipart/", 1)


def outer_boundary_in_base64(data: bytes) -> bytes:
    lines = _b64_lines(data, (40,))
    cut = len(lines) // 2
    inner = (b'Content-Type: multipart/mixed; boundary="inner"\r\n\r\n--inner\r\n'
             b'Content-Type: application/zip; name="docs.zip"\r\nContent-Transfer-Encoding: base64\r\n\r\n' +
             b"\r\n".join(lines[:cut]) + b"\r\n--outer\r\n" + b"\r\n".join(lines[cut:]) + b"\r\n--inner--\r\n")
    return (HEAD % b"outer boundary inside" + b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
            b"--outer\r\nContent-Type: text/plain\r\n\r\nhello\r\n--outer\r\n" + inner + b"--outer--\r\n")


def folded_boundary(data: bytes) -> bytes:
    """Valid RFC 2046: the quoted boundary folded at its blank (unfolded: "folded here")."""
    return _multipart(b"folded boundary", *_zip_part(_b64_lines(data)), boundary=b"folded here",
                      content_type=b'multipart/mixed;\r\n boundary="folded\r\n here"')


KINDS: dict[str, Callable[[bytes], bytes]] = {
    "b64-padding-inside": b64_padding_inside,
    "b64-extra-padding": b64_extra_padding,
    "b64-junk-after-padding": b64_junk_after_padding,
    "b64-mixed-lines": b64_mixed_lines,
    "b64-blank-in-header-name": b64_blank_in_header_name,
    "qp-soft-break-blanks": qp_soft_break_blanks,
    "qp-equals-not-hex": qp_equals_not_hex,
    "uu-in-part": lambda d: _in_part(b"uu part", uuencode(d)),
    "uu-in-preamble": lambda d: _in_preamble(b"uu preamble", uuencode(d)),
    "binhex-in-part": lambda d: _in_part(b"binhex part", binhex(d)),
    "binhex-inline": lambda d: _inline(b"binhex inline", binhex(d)),
    "yenc-in-part": lambda d: _in_part(b"yenc part", yenc(d)),
    "yenc-inline": lambda d: _inline(b"yenc inline", yenc(d)),
    "two-boundaries": two_boundaries,
    "rfc2231-beside-plain": rfc2231_beside_plain,
    "odd-multipart-type": odd_multipart_type,
    "unusual-subtype": unusual_subtype,
    "multipart-without-subtype": multipart_without_subtype,
    "blank-in-content-type-name": blank_in_content_type_name,
    "outer-boundary-in-base64": outer_boundary_in_base64,
    "folded-boundary": folded_boundary,
}
