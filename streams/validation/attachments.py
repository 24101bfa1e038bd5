"""message-validation: the attachment policy, as a pure function of the walked mail.

    verdict = check_attachments(walk_message(raw), settings.attachments)
    verdict.blocked, verdict.reason    # "2 (invoice.pdf): Windows executable (PE) named 'invoice.pdf'; ..."

Rules, each a Finding with a human-readable reason:

- ``blocked-type``: what the part *is*, by its content (streams.validation.filetypes),
  whatever it is called: a renamed .exe is still a PE executable.
- ``blocked-extension``: a declared name (any of them: Content-Disposition filename,
  Content-Type name, archive member path, uuencode name) ends in a blocked extension;
  trailing dots and blanks, which Windows drops, do not hide it.
- ``double-extension``: a blocked extension after another one ("invoice.pdf.exe",
  "a.doc        .scr"), or bidirectional-override characters that make a name
  display another extension than it has.
- ``blocked-mime-type``: the declared Content-Type is one of the blocked ones.
- ``encrypted``: an encrypted archive entry or Office document: nothing can scan it.
- ``office-macro``: VBA (OLE2 and OOXML), Excel 4.0 macro sheets (XLM), OpenDocument Basic.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
from dataclasses import dataclass

import olefile

from streams.validation.filetypes import FileType, sniff
from streams.validation.mime import MimeWalk, Part, where
from streams.validation.settings import AttachmentPolicySettings

BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f]")
_BIFF_BOUNDSHEET, _BIFF_EOF = 0x0085, 0x000A
_REASONS_SHOWN = 5


@dataclass(frozen=True)
class Finding:
    rule: str      # blocked-type | blocked-extension | double-extension | blocked-mime-type | encrypted | office-macro
    locator: str   # the part, as mime.Part.locator
    reason: str


@dataclass(frozen=True)
class AttachmentVerdict:
    findings: tuple[Finding, ...] = ()

    @property
    def blocked(self) -> bool:
        return bool(self.findings)

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.rule for f in self.findings))

    @property
    def reason(self) -> str:
        shown = [f.reason for f in self.findings[:_REASONS_SHOWN]]
        more = len(self.findings) - len(shown)
        return "; ".join(shown) + (f"; and {more} more" if more > 0 else "") if shown else "no attachment objected"


def check_attachments(walk: MimeWalk, policy: AttachmentPolicySettings) -> AttachmentVerdict:
    """Every finding of the policy on the parts of ``walk`` (one per rule and attachment)."""
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for part in walk.parts:
        root = part.locator.split("!", 1)[0]
        for finding in check_part(part, policy):
            if (finding.rule, root) not in seen:
                seen.add((finding.rule, root))
                findings.append(finding)
    return AttachmentVerdict(tuple(findings))


def check_part(part: Part, policy: AttachmentPolicySettings) -> list[Finding]:
    findings: list[Finding] = []
    label = where(part)
    if part.origin == "mime" or policy.check_archive_members:
        for name in part.names:
            findings += _name_findings(part, label, name, policy)
    if part.content_type in policy.blocked_mime_types:
        findings.append(Finding("blocked-mime-type", part.locator, f"{label}: declared as {part.content_type}"))
    if part.encrypted:
        if policy.block_encrypted:
            findings.append(Finding("encrypted", part.locator, f"{label}: encrypted archive entry, cannot be scanned"))
        return findings
    ftype = sniff(part.data)
    if ftype is None:
        return findings
    if ftype.name in policy.blocked_types:
        findings.append(Finding("blocked-type", part.locator, f"{label}: {ftype.description}{_named(part)}"))
    if ftype.name == "ole-encrypted" and policy.block_encrypted:
        findings.append(Finding("encrypted", part.locator, f"{label}: encrypted Office document, cannot be scanned"))
    if policy.block_office_macros:
        macro = office_macros(part.data, ftype)
        if macro:
            findings.append(Finding("office-macro", part.locator, f"{label}: {macro}"))
    return findings


# -- names --------------------------------------------------------------------


def _name_findings(part: Part, label: str, name: str, policy: AttachmentPolicySettings) -> list[Finding]:
    base = re.split(r"[/\\]", name)[-1]
    if policy.block_double_extensions and BIDI_CONTROLS.search(base):
        shown = BIDI_CONTROLS.sub("", base)
        return [Finding("double-extension", part.locator,
                        f"{label}: name {shown!r} holds bidirectional-override characters that disguise "
                        "its extension")]
    exts = extensions(base)
    if not exts or exts[-1] not in policy.blocked_extensions:
        return []
    if policy.block_double_extensions and len(exts) >= 2:
        return [Finding("double-extension", part.locator,
                        f"{label}: double extension .{exts[-2]}.{exts[-1]} in {base!r}")]
    return [Finding("blocked-extension", part.locator, f"{label}: blocked extension .{exts[-1]}")]


def extensions(name: str) -> list[str]:
    """Lower-case extensions of a file name, as Windows would read it: trailing dots
    and blanks dropped, blanks around each dot ignored ("a.pdf   .exe" → pdf, exe)."""
    stem, *rest = name.rstrip(" .\t").split(".")
    return [e.strip().lower() for e in rest if e.strip()] if stem.strip() or len(rest) > 1 else []


def _named(part: Part) -> str:
    if part.filename:
        return f" named {part.filename!r}"
    return f" declared as {part.content_type}" if part.content_type else ""


# -- Office macros -------------------------------------------------------------


def office_macros(data: bytes, ftype: FileType | None = None) -> str | None:
    """What kind of macros the document holds, or None."""
    ftype = ftype or sniff(data)
    if ftype is None:
        return None
    if ftype.name == "ole":
        return _ole_macros(data)
    if ftype.name in ("ooxml", "odf"):
        return _zip_macros(data)
    return None


def _ole_macros(data: bytes) -> str | None:
    try:
        with olefile.OleFileIO(io.BytesIO(data)) as ole:
            for path in ole.listdir(streams=True, storages=True):
                low = [p.lower() for p in path]
                if "_vba_project_cur" in low or low[-1] == "_vba_project" or low[-1] == "vba" \
                        or len(low) >= 2 and low[-2] == "vba" and low[-1] == "dir":
                    return "VBA macros"
            for stream in ("Workbook", "Book"):
                if ole.exists(stream) and _biff_macro_sheet(ole.openstream(stream).read(4 * 1024 * 1024)):
                    return "Excel 4.0 (XLM) macro sheet"
    except Exception:  # noqa: BLE001 - damaged OLE: clamd still scans it; no macro claim
        return None
    return None


def _biff_macro_sheet(stream: bytes) -> bool:
    """A BOUNDSHEET record of type 'macro sheet' in the workbook globals (BIFF5/8)."""
    pos, records = 0, 0
    while pos + 4 <= len(stream) and records < 100_000:
        rtype, size = struct.unpack_from("<HH", stream, pos)
        body = stream[pos + 4:pos + 4 + size]
        if rtype == _BIFF_BOUNDSHEET and len(body) >= 6 and body[5] == 0x01:
            return True
        if rtype == _BIFF_EOF:
            return False
        pos += 4 + size
        records += 1
    return False


def _zip_macros(data: bytes) -> str | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = [n.lower() for n in zf.namelist()]
    except Exception:  # noqa: BLE001
        return None
    if any(n.endswith("vbaproject.bin") for n in names):
        return "VBA macros (vbaProject.bin)"
    if any(n.startswith("xl/macrosheets/") for n in names):
        return "Excel 4.0 (XLM) macro sheet"
    if any(n.startswith("basic/") and not n.endswith("/") for n in names):
        return "OpenDocument Basic macros"
    return None
