"""message-validation's attachment policy (streams/validation/attachments.py) and the
content sniffing it stands on (filetypes.py). No I/O: every sample is built here."""

from __future__ import annotations

import io
import math
import struct
import uuid
import zipfile
from email.message import EmailMessage

import pytest

from streams.validation.attachments import check_attachments, extensions, office_macros
from streams.validation.filetypes import sniff
from streams.validation.mime import walk_message
from streams.validation.settings import AttachmentPolicySettings

POLICY = AttachmentPolicySettings()


def pe_executable() -> bytes:
    """The smallest shape of a Windows PE file: MZ header, e_lfanew, PE signature."""
    head = bytearray(512)
    head[0:2] = b"MZ"
    head[0x3C:0x40] = struct.pack("<I", 0x80)
    head[0x80:0x84] = b"PE\x00\x00"
    head[0x84:0x86] = struct.pack("<H", 0x14C)  # i386
    return bytes(head)


def build_cfb(streams: dict[str, bytes], root_clsid: str | None = None) -> bytes:
    """A minimal OLE2 compound file (v3, 512-byte sectors) holding ``streams`` ("A/B/name"
    paths make storages). Streams are padded to 4 KiB so that no mini stream is needed."""
    sect, end, free, nostream = 512, 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFF
    nodes: list[dict] = [{"name": "Root Entry", "type": 5, "kids": [], "data": b""}]
    storages = {"": 0}
    for path, data in streams.items():
        parts = path.split("/")
        parent = ""
        for depth, name in enumerate(parts):
            key = "/".join(parts[:depth + 1])
            if depth < len(parts) - 1:
                if key not in storages:
                    nodes.append({"name": name, "type": 1, "kids": [], "data": b""})
                    storages[key] = len(nodes) - 1
                    nodes[storages[parent]]["kids"].append(storages[key])
                parent = key
            else:
                nodes.append({"name": name, "type": 2, "kids": [], "data": data.ljust(4096, b"\0")})
                nodes[storages[parent]]["kids"].append(len(nodes) - 1)
    ndir = math.ceil(len(nodes) * 128 / sect)
    fat = [0xFFFFFFFD] + [2 + i if i < ndir - 1 else end for i in range(ndir)]
    starts: dict[int, int] = {}
    body = b""
    for idx, node in enumerate(nodes):
        if node["type"] == 2:
            starts[idx] = len(fat)
            n = math.ceil(len(node["data"]) / sect)
            fat += [len(fat) + j + 1 for j in range(n - 1)] + [end]
            body += node["data"].ljust(n * sect, b"\0")
    assert len(fat) <= 128
    right = {kid: node["kids"][i + 1] for node in nodes for i, kid in enumerate(node["kids"][:-1])}
    entries = b""
    for idx, node in enumerate(nodes):
        name = node["name"].encode("utf-16-le") + b"\0\0"
        clsid = uuid.UUID(root_clsid).bytes_le if idx == 0 and root_clsid else bytes(16)
        child = node["kids"][0] if node["kids"] else nostream
        start = starts.get(idx, end)
        entries += (name.ljust(64, b"\0") + struct.pack("<HBBIII", len(name), node["type"], 1, nostream,
                                                        right.get(idx, nostream), child)
                    + clsid + bytes(4) + bytes(16) + struct.pack("<IQ", start, len(node["data"])))
    while len(entries) % sect:
        entries += bytes(64) + struct.pack("<HBBIII", 0, 0, 0, nostream, nostream, nostream) + bytes(48)
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16)
              + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + bytes(6)
              + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, end, 0, end, 0)
              + struct.pack("<I", 0) + b"\xff" * 4 * 108)
    fat_sector = b"".join(struct.pack("<I", x) for x in fat + [free] * (128 - len(fat)))
    return header + fat_sector + entries + body


def biff_workbook(macro_sheet: bool) -> bytes:
    def record(rtype: int, data: bytes) -> bytes:
        return struct.pack("<HH", rtype, len(data)) + data
    sheet = struct.pack("<IBB", 0, 0, 0x01 if macro_sheet else 0x00) + b"\x06\x00Sheet1"
    return record(0x0809, bytes(16)) + record(0x0085, sheet) + record(0x000A, b"")


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def mail_with(*attachments: tuple[bytes, str, str]) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.net", "b@example.com", "files"
    msg.set_content("see attached\n")
    for data, filename, mime in attachments:
        maintype, subtype = mime.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def verdict(*attachments: tuple[bytes, str, str], policy: AttachmentPolicySettings = POLICY):
    return check_attachments(walk_message(mail_with(*attachments)), policy)


# -- by content ------------------------------------------------------------------


def test_renamed_exe_is_blocked_by_its_content() -> None:
    v = verdict((pe_executable(), "invoice.pdf", "application/pdf"))
    assert v.blocked and v.rules == ("blocked-type",)
    assert "Windows executable (PE)" in v.reason and "invoice.pdf" in v.reason


def test_exe_without_a_name_inside_a_zip_named_like_a_picture_is_blocked() -> None:
    v = verdict((zipped({"scan0001": pe_executable()}), "holiday.jpg", "image/jpeg"))
    assert v.rules == ("blocked-type",)
    assert v.findings[0].locator == "2!scan0001"


@pytest.mark.parametrize("data, name", [
    (b"\x7fELF\x02\x01\x01" + bytes(60), "elf"),
    (b"\xcf\xfa\xed\xfe" + bytes(60), "mach-o"),
    (b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + bytes(60), "java-class"),
    (b"\xca\xfe\xba\xbe\x00\x00\x00\x02" + bytes(60), "mach-o"),
    (bytes.fromhex("4c0000000114020000000000c000000000000046") + bytes(60), "lnk"),
    (bytes(0x8001) + b"CD001" + bytes(100), "iso"),
    (b"vhdxfile" + bytes(100), "vhdx"),
    (b"MZ" + bytes(100), "mz"),
    (b"%PDF-1.7\n", "pdf"),
    (b"Rar!\x1a\x07\x01\x00", "rar"),
    (b"#!/bin/sh\necho hi\n", "script"),
    (b"  <!DOCTYPE html><html>", "html"),
    (b"\x89PNG\r\n\x1a\n" + bytes(20), "png"),
])
def test_sniff_tells_kinds_by_magic(data: bytes, name: str) -> None:
    ftype = sniff(data)
    assert ftype is not None and ftype.name == name


def test_sniff_tells_containers_apart() -> None:
    assert sniff(pe_executable()).name == "pe"  # type: ignore[union-attr]
    assert sniff(zipped({"[Content_Types].xml": b"<x/>", "word/document.xml": b"<x/>"})).name == "ooxml"  # type: ignore[union-attr]
    assert sniff(zipped({"META-INF/MANIFEST.MF": b"x", "a/B.class": b"x"})).name == "jar"  # type: ignore[union-attr]
    assert sniff(zipped({"a.txt": b"x"})).name == "zip"  # type: ignore[union-attr]
    assert sniff(build_cfb({"WordDocument": b"x"})).name == "ole"  # type: ignore[union-attr]
    assert sniff(build_cfb({"x": b"x"}, root_clsid="000C1084-0000-0000-C000-000000000046")).name == "msi"  # type: ignore[union-attr]
    assert sniff(b"plain text, nothing special") is None


def test_msi_is_blocked_whatever_its_name() -> None:
    msi = build_cfb({"x": b"x"}, root_clsid="000C1084-0000-0000-C000-000000000046")
    v = verdict((msi, "statement.doc", "application/msword"))
    assert v.rules == ("blocked-type",) and "Windows Installer" in v.reason


# -- by name -----------------------------------------------------------------------


@pytest.mark.parametrize("name, rule", [
    ("setup.exe", "blocked-extension"),
    ("SETUP.EXE", "blocked-extension"),
    ("run.exe.", "blocked-extension"),            # Windows drops the trailing dot
    ("run.exe   ", "blocked-extension"),
    ("invoice.pdf.exe", "double-extension"),
    ("photo.jpg                       .scr", "double-extension"),
    ("invoice\u202efdp.exe", "double-extension"),    # shows as "invoiceexe.pdf"
    ("report\u202excod.js", "double-extension"),
    ("payload.hta", "blocked-extension"),
    ("disk.iso", "blocked-extension"),
])
def test_dangerous_names_are_blocked(name: str, rule: str) -> None:
    v = verdict((b"harmless bytes", name, "application/octet-stream"))
    assert v.rules == (rule,), v.reason


@pytest.mark.parametrize("name", ["report.pdf", "archive.tar.gz", "notes.v2.txt", ".bashrc", "README",
                                  "photo.exe.jpg", "exe"])
def test_ordinary_names_pass(name: str) -> None:
    assert not verdict((b"harmless bytes", name, "application/octet-stream")).blocked


def test_extensions_are_read_as_windows_reads_them() -> None:
    assert extensions("a.pdf   .EXE") == ["pdf", "exe"]
    assert extensions("a.exe . .") == ["exe"]
    assert extensions(".profile") == []
    assert extensions("noext") == []


def test_every_declared_name_is_checked() -> None:
    raw = (b"From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: application/octet-stream; name=\"setup.scr\"\r\n"
           b"Content-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nhello\r\n--B--\r\n")
    v = check_attachments(walk_message(raw), POLICY)
    assert v.rules == ("blocked-extension",) and ".scr" in v.reason


def test_encoded_word_name_is_decoded_before_the_check() -> None:
    raw = (b"From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
           b"--B\r\nContent-Disposition: attachment; filename=\"=?utf-8?B?UmVjaG51bmcucGRmLmV4ZQ==?=\"\r\n\r\n"
           b"hello\r\n--B--\r\n")
    assert check_attachments(walk_message(raw), POLICY).rules == ("double-extension",)


def test_names_inside_archives_are_checked_and_can_be_exempted() -> None:
    archive = zipped({"docs/readme.txt": b"hi", "docs/start.js": b"WScript.Echo(1)"})
    v = verdict((archive, "docs.zip", "application/zip"))
    assert v.rules == ("blocked-extension",) and v.findings[0].locator == "2!docs/start.js"
    lenient = AttachmentPolicySettings(check_archive_members=False)
    assert not verdict((archive, "docs.zip", "application/zip"), policy=lenient).blocked


def test_blocked_declared_content_type() -> None:
    v = verdict((b"hello", "tool.bin", "application/x-msdownload"))
    assert v.rules == ("blocked-mime-type",)


def test_uuencoded_exe_in_the_body_is_blocked() -> None:
    import binascii
    lines = b"".join(binascii.b2a_uu(b"hello world"[i:i + 45]) for i in range(0, 11, 45))
    raw = b"From: a@b\r\nSubject: x\r\n\r\nhere\r\nbegin 644 tool.exe\r\n" + lines + b"`\r\nend\r\n"
    v = check_attachments(walk_message(raw), POLICY)
    assert v.rules == ("blocked-extension",) and "tool.exe" in v.reason


# -- encrypted and macros ------------------------------------------------------------


def test_encrypted_zip_is_blocked() -> None:
    archive = bytearray(zipped({"invoice.doc": b"x" * 200}))
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        archive[archive.find(sig) + flag_at] |= 0x01
    v = verdict((bytes(archive), "invoice.zip", "application/zip"))
    assert v.rules == ("encrypted",) and "invoice.doc" in v.reason


def test_encrypted_office_document_is_blocked() -> None:
    doc = build_cfb({"EncryptionInfo": b"x", "EncryptedPackage": b"x"})
    v = verdict((doc, "salary.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))
    assert v.rules == ("encrypted",)


def test_vba_macros_in_ole_and_ooxml_are_found() -> None:
    doc = build_cfb({"WordDocument": b"x", "Macros/VBA/dir": b"x", "Macros/VBA/ThisDocument": b"x"})
    assert office_macros(doc) == "VBA macros"
    assert office_macros(build_cfb({"WordDocument": b"x"})) is None
    docm = zipped({"[Content_Types].xml": b"<x/>", "word/document.xml": b"<x/>", "word/vbaProject.bin": doc})
    assert office_macros(docm) == "VBA macros (vbaProject.bin)"
    docx = zipped({"[Content_Types].xml": b"<x/>", "word/document.xml": b"<x/>"})
    assert office_macros(docx) is None
    v = verdict((docm, "order.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"))
    assert v.rules == ("office-macro",)  # once, though both the docx and its vbaProject.bin hold macros


def test_excel4_macro_sheets_are_found() -> None:
    assert office_macros(build_cfb({"Workbook": biff_workbook(macro_sheet=True)})) == "Excel 4.0 (XLM) macro sheet"
    assert office_macros(build_cfb({"Workbook": biff_workbook(macro_sheet=False)})) is None
    xlsm = zipped({"[Content_Types].xml": b"<x/>", "xl/workbook.xml": b"<x/>", "xl/macrosheets/sheet1.xml": b"<x/>"})
    assert office_macros(xlsm) == "Excel 4.0 (XLM) macro sheet"


def test_macros_can_be_allowed() -> None:
    doc = build_cfb({"WordDocument": b"x", "Macros/VBA/dir": b"x"})
    allowed = AttachmentPolicySettings(block_office_macros=False)
    assert not verdict((doc, "letter.doc", "application/msword"), policy=allowed).blocked


def test_a_plain_mail_has_no_finding() -> None:
    v = verdict((b"%PDF-1.4\n...", "report.pdf", "application/pdf"), (b"\x89PNG\r\n\x1a\n", "logo.png", "image/png"))
    assert not v.blocked and v.reason == "no attachment objected"


def test_settings_accept_comma_separated_lists() -> None:
    policy = AttachmentPolicySettings(blocked_extensions=".EXE, scr", blocked_types="PE")  # type: ignore[arg-type]
    assert policy.blocked_extensions == ["exe", "scr"] and policy.blocked_types == ["pe"]
