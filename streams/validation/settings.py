"""message-validation: settings of the virus scan, the MIME walk and the attachment policy.

The ``[validation]`` section; ``Settings`` is what the service is given (the gateway's
identity, this section and the archive switch). In the TOML file::

    [validation.clamd]
    address = "unix:/run/clamav/clamd.ctl"   # or "tcp:127.0.0.1:3310"
    scan_timeout_s = 60

    [validation.attachments]
    blocked_extensions = ["exe", "scr", "js"]

clamd must be configured to match: ``StreamMaxLength`` at least ``max_stream_bytes``
(else clamd cuts the stream and answers "size limit exceeded"), and
``AlertExceedsMax yes`` (else a file over clamd's own MaxFileSize/MaxScanSize/
MaxRecursion limits is reported OK unscanned; with it, such a mail is *unscannable*
here, never clean).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from core.dns_settings import split_list as _split_list
from core.settings import GatewaySettings
from streams.validation.policy_settings import AuthSettings, ContentSettings, DecisionSettings

MiB = 1024 * 1024

#: Windows executable, script, shortcut, installer and disk-image extensions (after
#: Outlook's "Level 1" list, less the rare ones, plus the 2022+ ISO/VHD/OneNote wave).
DEFAULT_BLOCKED_EXTENSIONS = (
    "ade adp app appx appxbundle application appref-ms bas bat chm cmd com cpl dll diagcab exe gadget "
    "hlp hta img inf ins iso isp jar jnlp js jse lnk mde msc msi msix msp mst one pif ps1 ps1xml psc1 "
    "psd1 psm1 reg scf scr sct shb shs sys url vb vbe vbs vhd vhdx wsc wsf wsh xbap xll xnk"
).split()

#: Kinds of content (as named by ``streams.validation.filetypes``) blocked whatever the
#: attachment is called.
DEFAULT_BLOCKED_TYPES = ["pe", "mz", "elf", "mach-o", "msi", "lnk", "iso", "vhd", "vhdx", "chm",
                         "java-class", "jar", "onenote"]

#: Declared Content-Types that are blocked as such (the content is checked separately).
DEFAULT_BLOCKED_MIME_TYPES = [
    "application/x-msdownload", "application/x-msdos-program", "application/x-dosexec",
    "application/x-ms-installer", "application/x-msi", "application/hta", "application/x-ms-shortcut",
    "application/vnd.ms-htmlhelp", "application/java-archive", "application/x-executable",
]


class ClamdSettings(BaseModel):
    """How to reach clamd, and how long and how much to give it."""

    address: str = Field(
        default="unix:/run/clamav/clamd.ctl",
        description='"unix:/path/clamd.ctl", "tcp:host:port" (or "/path", "host:port"); '
                    "Debian's clamav-daemon listens on /run/clamav/clamd.ctl.",
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Connecting; past it clamd is unavailable.")
    scan_timeout_s: float = Field(default=60.0, gt=0, description="One INSTREAM, from connect to verdict.")
    max_stream_bytes: int = Field(
        default=25 * MiB, ge=1024,
        description="Largest stream sent to clamd (keep <= clamd's StreamMaxLength); larger: unscannable.",
    )
    chunk_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * MiB, description="INSTREAM chunk size.")
    concurrency: int = Field(default=4, ge=1, description="INSTREAMs at once per mail (parts scanned apart).")
    retry_initial_s: float = Field(default=1.0, gt=0, description="First wait after clamd failed.")
    retry_max_s: float = Field(default=30.0, gt=0, description="Longest wait between two attempts.")
    attempts: int = Field(
        default=5, ge=1, description="Attempts per mail before it goes to the hold queue (never passed as clean).",
    )
    batch_retry_s: float = Field(
        default=60.0, gt=0,
        description="Longest time one batch of mail.scored spends retrying clamd (waits and repeated scans, from "
                    "its first failure); once clamd gave no answer for a mail, the rest of the batch is held at "
                    "once. A batch so waits on clamd at most about scan_timeout_s + batch_retry_s.",
    )


class MimeLimits(BaseModel):
    """Bounds of the MIME walk (and of archive extraction): a mail past one is not fully
    inspected, so it is unscannable, never clean."""

    max_depth: int = Field(default=10, ge=1, description="Nesting of multiparts, attached mails and archives.")
    max_parts: int = Field(default=1000, ge=1, description="Leaf parts and archive members, all counted.")
    max_part_bytes: int = Field(default=50 * MiB, ge=1024, description="One decoded part or archive member.")
    max_total_bytes: int = Field(default=200 * MiB, ge=1024, description="All decoded parts and members.")
    max_archive_members: int = Field(default=1000, ge=1, description="Entries listed by one archive.")
    max_compression_ratio: int = Field(
        default=200, ge=2, description="Expanded/compressed size past which a member counts as a bomb.",
    )
    ratio_floor_bytes: int = Field(default=1 * MiB, ge=0, description="Members smaller than this are never bombs.")


class AttachmentPolicySettings(BaseModel):
    """What the attachment filter quarantines."""

    blocked_extensions: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKED_EXTENSIONS),
        description="File name extensions (without dot, any case) blocked in mails and archives.",
    )
    blocked_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKED_TYPES),
        description="Kinds of content (detected by magic, not by name) that are blocked.",
    )
    blocked_mime_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKED_MIME_TYPES),
        description="Declared Content-Types that are blocked.",
    )
    block_double_extensions: bool = Field(default=True, description='"invoice.pdf.exe", "a.doc      .scr".')
    block_encrypted: bool = Field(default=True, description="Encrypted archives and documents (unscannable).")
    block_office_macros: bool = Field(default=True, description="VBA or Excel 4.0 (XLM) macros.")
    check_archive_members: bool = Field(default=True, description="Apply the name rules inside archives too.")

    @field_validator("blocked_extensions", mode="before")
    @classmethod
    def _extensions(cls, v: Any) -> Any:
        return [str(x).strip().lstrip(".").lower() for x in _split_list(v)]

    @field_validator("blocked_types", "blocked_mime_types", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return [str(x).strip().lower() for x in _split_list(v)]


class ValidationFilterSettings(BaseModel):
    """message-validation's filters: virus scan, MIME walk, attachment policy, authentication,
    content rules, and the decision that combines them (policy_settings.py)."""

    routing_once: bool = Field(
        default=True,
        description="Each mail id routed once (once.py: its records and a routing mark in one Kafka "
                    "transaction). Off: at-least-once only (no transaction, no mark; a crash duplicates what "
                    "was routed after the last offset commit) -- to measure what the guarantee costs.",
    )
    routing_batch: int = Field(
        default=200, ge=1, description="Most mails taken from mail.scored at once; each partition's share of a "
                                       "batch is routed in one transaction.")
    routing_batch_within_s: float = Field(
        default=0.1, gt=0, description="Longest wait for a batch to fill: the latency batching may add.")
    virus_scan: Literal["auto"] | bool = Field(
        default="auto",
        description="auto: scan when a clamd answers at clamd.address or Debian's socket at the service's start, "
                    "else virus scanning is OFF, with a warning (table, log, metrics; scan_switch.py). true: "
                    "scan, and a mail clamd cannot answer for is held, never passed as clean. false: off.",
    )
    clamd: ClamdSettings = Field(default_factory=ClamdSettings)
    limits: MimeLimits = Field(default_factory=MimeLimits)
    attachments: AttachmentPolicySettings = Field(default_factory=AttachmentPolicySettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    content: ContentSettings = Field(default_factory=ContentSettings)
    decision: DecisionSettings = Field(default_factory=DecisionSettings)


class ArchiveSwitch(BaseModel):
    """The one switch of the ``[archive]`` section validation obeys: copy every mail to mail.archive."""

    enabled: bool = False


class Settings(GatewaySettings):
    """What message-validation is given: the gateway's identity, its own section and the archive switch."""

    validation: ValidationFilterSettings = Field(default_factory=ValidationFilterSettings)
    archive: ArchiveSwitch = Field(default_factory=ArchiveSwitch)
