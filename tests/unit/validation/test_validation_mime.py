"""message-validation's MIME walk (streams/validation/mime.py): malformed mail, attached
mails, archives and their bombs. No I/O."""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
import tracemalloc
import zipfile
from email.message import EmailMessage

import pytest

from streams.validation.decoders import decode_base64
from streams.validation.mime import walk_message
from streams.validation.settings import MimeLimits

MiB = 1024 * 1024


def mail(body: str = "hello\n", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "alice@example.net")
    msg["To"] = headers.pop("To", "bob@example.com")
    msg["Subject"] = headers.pop("Subject", "test")
    for key, value in headers.items():
        msg[key] = value
    msg.set_content(body)
    return msg


def with_attachment(data: bytes, filename: str, mime: str = "application/octet-stream") -> bytes:
    msg = mail()
    maintype, subtype = mime.split("/")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def zipped(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def set_encrypted_flag(zip_bytes: bytes) -> bytes:
    """Marks every entry as (traditionally) encrypted, as a password-protected zip is."""
    data = bytearray(zip_bytes)
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = data.find(sig)
        while pos != -1:
            data[pos + flag_at] |= 0x01
            pos = data.find(sig, pos + 4)
    return bytes(data)


# -- ordinary mail -------------------------------------------------------------


def test_plain_mail_is_one_verbatim_part() -> None:
    walk = walk_message(mail("just text\n").as_bytes())
    assert walk.complete and len(walk.parts) == 1
    (part,) = walk.parts
    assert part.locator == "1" and part.content_type == "text/plain" and part.verbatim
    assert part.data.strip() == b"just text"


def test_base64_attachment_is_decoded_and_named() -> None:
    walk = walk_message(with_attachment(b"\x00\x01binary\xff", "data.bin"))
    assert walk.complete
    att = walk.parts[-1]
    assert att.names == ("data.bin",) and att.encoding == "base64" and not att.verbatim
    assert att.data == b"\x00\x01binary\xff"


def test_disagreeing_names_are_all_kept() -> None:
    raw = (b"From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: application/octet-stream; name=\"setup.exe\"\r\n"
           b"Content-Disposition: attachment; filename=\"notes.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + base64.b64encode(b"x") + b"\r\n--B--\r\n")
    (part,) = walk_message(raw).parts
    assert part.names == ("notes.txt", "setup.exe")


@pytest.mark.parametrize("header, expected", [
    ('filename="=?utf-8?B?UmVjaG51bmcucGRmLmV4ZQ==?="', "Rechnung.pdf.exe"),  # RFC 2047 in a parameter
    ("filename*=utf-8''Rechnung%20%C3%BC.exe", "Rechnung ü.exe"),                 # RFC 2231
    ("filename*=x-nonsense''abc%FF.exe", "abc\xff.exe"),                          # unknown charset: latin-1
    ('filename="=?x-nonsense?Q?a=FFb.scr?="', "a\xffb.scr"),                       # unknown charset, 2047
])
def test_file_names_decode_whatever_the_charset(header: str, expected: str) -> None:
    raw = (b"From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
           + header.encode() + b"\r\n\r\nxyz\r\n--B--\r\n")
    (part,) = walk_message(raw).parts
    assert part.filename == expected


def test_eight_bit_file_name_bytes_do_not_break_the_walk() -> None:
    raw = (b"From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
           b"--B\r\nContent-Disposition: attachment; filename=\"r\xe9sum\xe9.exe\"\r\n\r\nxyz\r\n--B--\r\n")
    (part,) = walk_message(raw).parts
    assert part.filename is not None and part.filename.endswith(".exe")


# -- malformed mail: never an exception ------------------------------------------------

MALFORMED = {
    "empty": b"",
    "blank": b"\r\n\r\n",
    "binary noise": bytes(range(256)) * 40,
    "no header": b"this is not a mail at all\nno headers here\n",
    "nul bytes": b"From: a@b\r\nSubject: \x00\x00\r\n\r\nbody\x00\r\n",
    "header line of 1 MB": b"From: a@b\r\nX-Long: " + b"a" * MiB + b"\r\n\r\nbody\r\n",
    "multipart without boundary": b"From: a@b\r\nContent-Type: multipart/mixed\r\n\r\n--X\r\n\r\nbody\r\n--X--\r\n",
    "boundary never found": (b"From: a@b\r\nContent-Type: multipart/alternative; boundary=\"=Multi Part\"\r\n\r\n"
                             b"--= Multi Part\r\nContent-Type: text/plain\r\n\r\nhi\r\n--= Multi Part--\r\n"),
    "close boundary missing": (b"From: a@b\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\n"
                               b"Content-Type: text/plain\r\n\r\nhi\r\n"),
    "truncated base64": (b"From: a@b\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQ"),
    "base64 with junk": (b"From: a@b\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                         b"aGVs!!bG8g\xff\xfed29y*bGQ=\r\n"),
    "unknown transfer encoding": b"From: a@b\r\nContent-Transfer-Encoding: x-rot13\r\n\r\nuryyb\r\n",
    "bad charset": b"From: a@b\r\nContent-Type: text/plain; charset=x-does-not-exist\r\n\r\n\xe9\xe8\r\n",
    "content-type garbage": b"From: a@b\r\nContent-Type: ;;;===\"\r\n\r\nbody\r\n",
    "declared length lies": b"From: a@b\r\nContent-Length: 999999999\r\n\r\nshort\r\n",
    "uuencode garbage": b"From: a@b\r\n\r\nbegin 644 x.exe\r\n!!!!not uu!!!!\r\nend\r\n",
    "deep nesting": b"From: a@b\r\nMIME-Version: 1.0\r\n" + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(3000)
    ) + b"Content-Type: text/plain\r\n\r\nx\r\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_mail_never_raises(name: str) -> None:
    walk = walk_message(MALFORMED[name], MimeLimits(max_depth=10))
    assert isinstance(walk.parts, tuple)


@pytest.mark.parametrize("name, reason", [
    ("empty", "empty message"),
    ("blank", "empty message"),
    ("no header", "no header fields"),
    ("binary noise", "no header fields"),
    ("multipart without boundary", "without a boundary"),
    ("boundary never found", "boundary never found"),
])
def test_unparseable_mail_says_why(name: str, reason: str) -> None:
    walk = walk_message(MALFORMED[name])
    assert walk.unparseable is not None and reason in walk.unparseable
    assert not walk.complete


@pytest.mark.parametrize("name", ["close boundary missing", "truncated base64", "base64 with junk",
                                  "unknown transfer encoding", "bad charset", "declared length lies",
                                  "content-type garbage", "nul bytes", "header line of 1 MB"])
def test_damaged_but_readable_mail_is_walked(name: str) -> None:
    walk = walk_message(MALFORMED[name])
    assert walk.unparseable is None and walk.parts


def test_declared_length_is_ignored() -> None:
    (part,) = walk_message(MALFORMED["declared length lies"]).parts
    assert part.data == b"short\r\n"


def test_base64_decoding_is_lenient() -> None:
    assert decode_base64(b"aGVs!!bG8g\xff\xfed29y*bGQ=")[0] == b"hello world"
    assert decode_base64(b"aGVsbG8")[0] == b"hello"                       # padding missing
    assert decode_base64(b"aGk=\r\naGk=")[0] == b"hihi"                   # two encodings concatenated
    assert decode_base64(b"aGVsbG8gd")[0] == b"hello "                    # a lone trailing sextet
    assert decode_base64(b"aGVs!!bG8g")[1] is not None                   # junk is noted


def test_nesting_beyond_the_limit_is_incomplete_not_a_crash() -> None:
    walk = walk_message(MALFORMED["deep nesting"], MimeLimits(max_depth=10))
    assert walk.unparseable == "MIME nesting too deep to parse" or \
        (walk.incomplete is not None and "nesting deeper than 10" in walk.incomplete)
    moderately_deep = b"From: a@b\r\n" + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(30)
    ) + b"Content-Type: text/plain\r\n\r\nx\r\n"
    walk = walk_message(moderately_deep, MimeLimits(max_depth=10))
    assert walk.incomplete is not None and "nesting deeper than 10" in walk.incomplete


# -- attached mails --------------------------------------------------------------


def test_forwarded_message_is_walked_into() -> None:
    inner = mail("inner text\n", Subject="inner")
    inner.add_attachment(b"payload", maintype="application", subtype="octet-stream", filename="p.bin")
    outer = mail("see below\n")
    outer.add_attachment(inner)
    walk = walk_message(outer.as_bytes())
    assert walk.complete
    assert [p.filename for p in walk.parts] == [None, None, "p.bin"]
    assert walk.parts[-1].data == b"payload" and walk.parts[-1].depth >= 3


def test_base64_encoded_message_rfc822_is_decoded_and_walked() -> None:
    inner = mail("inner\n")
    inner.add_attachment(b"secret", maintype="application", subtype="octet-stream", filename="s.bin")
    raw = (b"From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: text/plain\r\n\r\nfwd\r\n--B\r\nContent-Type: message/rfc822\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(inner.as_bytes()) + b"--B--\r\n")
    walk = walk_message(raw)
    assert walk.complete
    assert any(p.filename == "s.bin" and p.data == b"secret" for p in walk.parts)


def test_eml_file_attachment_is_walked_into() -> None:
    inner = mail("inner\n")
    inner.add_attachment(b"deep", maintype="application", subtype="octet-stream", filename="deep.bin")
    walk = walk_message(with_attachment(inner.as_bytes(), "forwarded.eml"))
    assert any(p.filename == "deep.bin" and p.data == b"deep" for p in walk.parts)


def test_uuencoded_block_in_a_text_body_is_extracted() -> None:
    import binascii
    payload = b"MZ" + bytes(range(200))
    lines = b"".join(binascii.b2a_uu(payload[i:i + 45]) for i in range(0, len(payload), 45))
    raw = b"From: a@b\r\n\r\nhere it is\r\n\r\nbegin 644 tool.exe\r\n" + lines + b"`\r\nend\r\n"
    walk = walk_message(raw)
    (uu,) = [p for p in walk.parts if p.origin == "uuencode"]
    assert uu.filename == "tool.exe" and uu.data == payload and uu.locator == "1!uu1"


# -- archives --------------------------------------------------------------------


def test_zip_members_are_extracted_by_magic_not_name() -> None:
    archive = zipped({"a/readme.txt": b"read me", "b/tool.exe": b"MZ..."})
    walk = walk_message(with_attachment(archive, "photo.jpg", "image/jpeg"))
    assert walk.complete
    members = {p.filename: p for p in walk.parts if p.origin == "zip"}
    assert members["a/readme.txt"].data == b"read me"
    assert members["b/tool.exe"].locator == "2!b/tool.exe"


def test_nested_archives_are_extracted() -> None:
    inner = zipped({"deepest.txt": b"found me"})
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("inner.zip")
        info.size = len(inner)
        tf.addfile(info, io.BytesIO(inner))
    outer = zipped({"bundle.tgz": tar_buf.getvalue()})
    walk = walk_message(with_attachment(outer, "outer.zip"))
    assert walk.complete
    (deepest,) = [p for p in walk.parts if p.filename == "deepest.txt"]
    assert deepest.data == b"found me"
    assert deepest.locator == "2!bundle.tgz!bundle.tar!inner.zip!deepest.txt"


def test_encrypted_zip_entries_are_reported_not_read() -> None:
    archive = set_encrypted_flag(zipped({"secret.doc": b"x" * 100}, zipfile.ZIP_STORED))
    walk = walk_message(with_attachment(archive, "secret.zip"))
    (entry,) = [p for p in walk.parts if p.origin == "zip"]
    assert entry.encrypted and entry.data == b""


def test_broken_archive_leaves_the_walk_incomplete() -> None:
    archive = bytearray(zipped({"a.txt": b"hello world" * 100}))
    archive[40:60] = b"\x00" * 20  # damage the compressed data
    walk = walk_message(with_attachment(bytes(archive), "a.zip"))
    assert walk.incomplete is not None and "a.zip" in walk.incomplete


def test_zip_bomb_is_stopped_within_the_memory_budget() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w") as out:
        block = bytes(MiB)
        for _ in range(256):  # 256 MiB of zeros in ~250 KB
            out.write(block)
    raw = with_attachment(buf.getvalue(), "invoice.zip")
    assert len(raw) < 1 * MiB
    tracemalloc.start()
    try:
        walk = walk_message(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert walk.incomplete is not None and "compression bomb" in walk.incomplete
    assert peak < 100 * MiB, f"peak {peak / MiB:.0f} MiB"


def test_gzip_bomb_and_many_members_and_many_parts_are_bounded() -> None:
    limits = MimeLimits(max_part_bytes=4 * MiB, max_archive_members=50, max_parts=20)
    bomb = gzip.compress(bytes(16 * MiB))
    walk = walk_message(with_attachment(bomb, "log.gz"), limits)
    assert walk.incomplete is not None and "expands" in walk.incomplete
    many = zipped({f"f{i}.txt": b"x" for i in range(60)})
    walk = walk_message(with_attachment(many, "many.zip"), limits)
    assert walk.incomplete is not None and "60 entries" in walk.incomplete
    msg = mail()
    for i in range(25):
        msg.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=f"{i}.bin")
    walk = walk_message(msg.as_bytes(), limits)
    assert walk.incomplete == "more than 20 parts" and len(walk.parts) == 20


def test_recursive_zip_quine_like_nesting_stops_at_depth() -> None:
    data = b"bottom"
    for level in range(15):
        data = zipped({f"level{level}.zip": data}, zipfile.ZIP_STORED)
    walk = walk_message(with_attachment(data, "russian-doll.zip"), MimeLimits(max_depth=8))
    assert walk.incomplete is not None and "nesting deeper than 8" in walk.incomplete


def test_mutated_mail_never_raises() -> None:
    """Byte flips, cuts and splices of a rich mail (multipart, forwarded mail, zip, tar.gz,
    uuencode), with a fixed seed: the walk always returns, whatever it makes of them."""
    import random

    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("t.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"hello"))
    inner = mail("inner\n")
    inner.add_attachment(zipped({"a.txt": b"a" * 300, "b.bin": bytes(range(256))}), maintype="application",
                         subtype="zip", filename="inner.zip")
    outer = mail("begin 644 x.bin\n#86)C\n`\nend\n")
    outer.add_attachment(tar_buf.getvalue(), maintype="application", subtype="gzip", filename="t.tgz")
    outer.add_attachment(inner)
    seed = outer.as_bytes()
    rng = random.Random(20261125)
    specials = [b"--", b"\r\n", b"=", b"Content-Type: multipart/mixed; boundary=", b"PK\x03\x04", b"begin 644 "]
    for _ in range(400):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 8)):
            op, pos = rng.randrange(4), rng.randrange(len(data))
            if op == 0:
                data[pos] = rng.randrange(256)
            elif op == 1:
                del data[pos:pos + rng.randint(1, 200)]
            elif op == 2:
                data[pos:pos] = rng.choice(specials)
            else:
                data = data[:pos]
            if not data:
                break
        walk = walk_message(bytes(data), MimeLimits(max_depth=6, max_parts=50))
        assert isinstance(walk.parts, tuple)
