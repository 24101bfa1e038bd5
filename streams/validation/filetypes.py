"""message-validation: what a part *is*, told by its first bytes, never by its name.

A small magic table of the kinds the attachment policy decides on (executables,
installers, shortcuts, disk images, archives, Office and PDF documents), each
signature exact and tested. Not a general file(1): puremagic 2.x needs Python 3.12
(we run 3.11) and filetype has not been released since 2022; and a policy wants a
few decisive answers rather than a ranked guess among thousands of extensions.
OLE2 and ZIP containers are told apart by their directory (olefile, zipfile), which
is read only, never extracted, here.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass

import olefile

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MSI_CLSID = "000C1084-0000-0000-C000-000000000046"
LNK_HEADER = bytes.fromhex("4c0000000114020000000000c000000000000046")
ONENOTE_GUID = bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3")


@dataclass(frozen=True)
class FileType:
    name: str         # short id, as in the policy's blocked_types: "pe", "zip", "ooxml", ...
    category: str     # executable | installer | shortcut | disk-image | archive | document | image | script | html
    description: str  # for the human-readable reason


def _t(name: str, category: str, description: str) -> FileType:
    return FileType(name, category, description)


PE = _t("pe", "executable", "Windows executable (PE)")
MZ = _t("mz", "executable", "DOS executable (MZ)")
ELF = _t("elf", "executable", "ELF executable")
MACHO = _t("mach-o", "executable", "Mach-O executable")
JAVA_CLASS = _t("java-class", "executable", "Java class file")
DEX = _t("dex", "executable", "Android Dalvik executable")
MSI = _t("msi", "installer", "Windows Installer package (MSI)")
JAR = _t("jar", "installer", "Java archive (JAR)")
APK = _t("apk", "installer", "Android package (APK)")
LNK = _t("lnk", "shortcut", "Windows shortcut (LNK)")
ISO = _t("iso", "disk-image", "ISO 9660 disk image")
VHD = _t("vhd", "disk-image", "virtual hard disk (VHD)")
VHDX = _t("vhdx", "disk-image", "virtual hard disk (VHDX)")
CHM = _t("chm", "executable", "compiled HTML help (CHM)")
ONENOTE = _t("onenote", "document", "OneNote section")
ZIP = _t("zip", "archive", "ZIP archive")
RAR = _t("rar", "archive", "RAR archive")
SEVENZIP = _t("7z", "archive", "7-Zip archive")
GZIP = _t("gzip", "archive", "gzip data")
BZIP2 = _t("bzip2", "archive", "bzip2 data")
XZ = _t("xz", "archive", "xz data")
ZSTD = _t("zstd", "archive", "Zstandard data")
TAR = _t("tar", "archive", "tar archive")
CAB = _t("cab", "archive", "Microsoft cabinet (CAB)")
ARJ = _t("arj", "archive", "ARJ archive")
ACE = _t("ace", "archive", "ACE archive")
OLE = _t("ole", "document", "OLE2 compound document (Office 97-2003)")
OLE_ENCRYPTED = _t("ole-encrypted", "document", "encrypted Office document")
OOXML = _t("ooxml", "document", "Office Open XML document")
ODF = _t("odf", "document", "OpenDocument file")
PDF = _t("pdf", "document", "PDF document")
RTF = _t("rtf", "document", "RTF document")
PNG = _t("png", "image", "PNG image")
JPEG = _t("jpeg", "image", "JPEG image")
GIF = _t("gif", "image", "GIF image")
TIFF = _t("tiff", "image", "TIFF image")
WEBP = _t("webp", "image", "WebP image")
SCRIPT = _t("script", "script", "script with a #! line")
HTML = _t("html", "html", "HTML document")

#: (offset, magic, type), tried in order after the special cases of sniff().
_TABLE: tuple[tuple[int, bytes, FileType], ...] = (
    (0, b"\x7fELF", ELF),
    (0, b"\xfe\xed\xfa\xce", MACHO), (0, b"\xfe\xed\xfa\xcf", MACHO),
    (0, b"\xce\xfa\xed\xfe", MACHO), (0, b"\xcf\xfa\xed\xfe", MACHO),
    (0, b"dex\n0", DEX),
    (0, LNK_HEADER, LNK),
    (0, b"vhdxfile", VHDX),
    (0, b"conectix", VHD),
    (0, b"ITSF\x03\x00\x00\x00", CHM),
    (0, ONENOTE_GUID, ONENOTE),
    (0, b"Rar!\x1a\x07", RAR),
    (0, b"7z\xbc\xaf\x27\x1c", SEVENZIP),
    (0, b"\x1f\x8b\x08", GZIP),
    (0, b"\xfd7zXZ\x00", XZ),
    (0, b"\x28\xb5\x2f\xfd", ZSTD),
    (0, b"MSCF\x00\x00\x00\x00", CAB),
    (0, b"\x60\xea", ARJ),
    (7, b"**ACE**", ACE),
    (257, b"ustar", TAR),
    (0, b"{\\rtf", RTF),
    (0, b"\x89PNG\r\n\x1a\n", PNG),
    (0, b"\xff\xd8\xff", JPEG),
    (0, b"GIF87a", GIF), (0, b"GIF89a", GIF),
    (0, b"II*\x00", TIFF), (0, b"MM\x00*", TIFF),
    (0, b"#!", SCRIPT),
)

ARCHIVE_KINDS = ("zip", "gzip", "bzip2", "xz", "tar")


def archive_kind(data: bytes) -> str | None:
    """The container mime.py opens itself (by magic): zip, gzip, bzip2, xz or tar."""
    head = data[:8]
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:3] == b"\x1f\x8b\x08":
        return "gzip"
    if data[:3] == b"BZh" and data[3:4] in (b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9") \
            and data[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        return "bzip2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if data[257:262] == b"ustar":
        return "tar"
    return None


def sniff(data: bytes) -> FileType | None:
    """The kind of ``data`` by content, or None when no signature of the table fits."""
    if len(data) < 2:
        return None
    if data[:2] == b"MZ":
        return _mz(data)
    if data[:8] == OLE_MAGIC:
        return _ole(data)
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return _zip(data)
    if data[:4] == b"\xca\xfe\xba\xbe" and len(data) >= 8:
        # Java class (major version >= 45) or Mach-O universal binary (a few archs).
        return JAVA_CLASS if struct.unpack(">I", data[4:8])[0] >= 45 else MACHO
    if archive_kind(data) == "bzip2":
        return BZIP2
    if any(data[off:off + 5] == b"CD001" for off in (0x8001, 0x8801, 0x9001)):
        return ISO
    if len(data) >= 512 and data[-512:-504] == b"conectix":
        return VHD
    if b"%PDF-" in data[:1024]:
        return PDF
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    for offset, magic, ftype in _TABLE:
        if data[offset:offset + len(magic)] == magic:
            return ftype
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return HTML
    return None


def _mz(data: bytes) -> FileType:
    if len(data) >= 0x40:
        (e_lfanew,) = struct.unpack("<I", data[0x3C:0x40])
        if 0x40 <= e_lfanew <= len(data) - 4 and data[e_lfanew:e_lfanew + 4] == b"PE\x00\x00":
            return PE
    return MZ


def _ole(data: bytes) -> FileType:
    try:
        with olefile.OleFileIO(io.BytesIO(data)) as ole:
            if ole.root is not None and (ole.root.clsid or "").upper() == MSI_CLSID:
                return MSI
            if ole.exists("EncryptedPackage") or ole.exists("EncryptionInfo"):
                return OLE_ENCRYPTED
    except Exception:  # noqa: BLE001 - a damaged OLE file is still OLE by its magic
        pass
    return OLE


def _zip(data: bytes) -> FileType:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
    except Exception:  # noqa: BLE001 - damaged: still a zip by its magic
        return ZIP
    lower = {n.lower() for n in names}
    if "[content_types].xml" in lower:
        return OOXML
    if "androidmanifest.xml" in lower and "classes.dex" in lower:
        return APK
    if "meta-inf/manifest.mf" in lower or any(n.endswith(".class") for n in lower):
        return JAR
    if "mimetype" in lower and ("content.xml" in lower or "meta-inf/manifest.xml" in lower):
        return ODF
    return ZIP
