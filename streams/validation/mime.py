"""message-validation: a raw mail taken apart into its leaf parts, trusting nothing in it.

    walk = walk_message(raw, limits)      # never raises
    walk.unparseable                       # "no header fields", "multipart boundary ... never found", ...
    walk.incomplete                        # the first limit hit (zip bomb, depth, count): not all was seen
    for part in walk.parts: part.locator, part.filename, part.data ...

The stdlib parser (``compat32``: lenient, and no header objects to trip on; header
values unfolded when read) splits the MIME tree; transfer encodings are decoded in
decoders.py as leniently as the most lenient reader (damaged base64 in each of its
readings, quoted-printable, uuencode, BinHex, yEnc); declared lengths and charsets are
never used to size or decode anything. Where readers may split the mail otherwise
(readings.py: ambiguous boundaries, odd types, base64 cut by a boundary line), every
other reading is walked too, its parts added when their content is new (locators
"r1.2", "carved1", "2~2"); a mail is unparseable only when no reading can take it apart.
The other readings have a byte budget of their own (``max_total_bytes`` again), so a
walk extracts at most twice that. Attached mails (message/rfc822, also when wrongly base64-encoded,
and ``.eml`` files) are walked into, and so are zip, tar, gzip, bzip2 and xz
containers found by their magic, not by their name; encrypted zip entries are
reported, not read. Every expansion is bounded (depth, part count, bytes per part,
bytes in all, compression ratio), so a bomb costs at most the configured bytes.
"""

from __future__ import annotations

import bz2
import hashlib
import email
import email.errors
import io
import lzma
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.policy import Compat32, compat32
from typing import IO

from streams.validation.decoders import (
    IDENTITY_ENCODINGS,
    base64_readings,
    decode_transfer,
    inline_blocks,
)
from streams.validation.filetypes import archive_kind
from streams.validation.names import clean_name, declared_names
from streams.validation.readings import carved_base64, damaged, structure_readings
from streams.validation.settings import MimeLimits

#: Defects after which the parts we see are not the parts a mail reader would see.
FATAL_DEFECTS = {
    email.errors.NoBoundaryInMultipartDefect: "multipart without a boundary parameter",
    email.errors.StartBoundaryNotFoundDefect: "multipart boundary never found in the body",
}
_GENERATOR_POLICY = compat32.clone(mangle_from_=False)
_TAG = {"uuencode": "uu", "binhex": "hqx", "yenc": "yenc"}  # in locators: "2!uu1", "hqx1"
_LINE_BREAK = re.compile(r"\r?\n")


class _Unfolding(Compat32):
    """compat32 that unfolds header values when read (RFC 5322 2.2.3: the line break goes,
    the blank stays), so a boundary folded over two lines is the boundary of the body."""

    def header_fetch_parse(self, name: str, value: str) -> str:  # type: ignore[override]
        if isinstance(value, str) and "\n" in value:
            value = _LINE_BREAK.sub("", value)
        return super().header_fetch_parse(name, value)


_PARSE_POLICY = _Unfolding()


@dataclass(frozen=True)
class Part:
    """One leaf of the mail: a MIME leaf, a uuencoded block or an archive member."""

    locator: str              # "2.1" (MIME numbering), "2!docs.zip!a.exe" inside archives
    content_type: str         # as declared, lower-case ("" for archive members)
    names: tuple[str, ...]    # declared file names (Content-Disposition filename, Content-Type name, member path)
    data: bytes               # decoded content
    depth: int
    origin: str               # mime | uuencode | zip | tar | gzip | bzip2 | xz
    encoding: str             # transfer encoding as declared (mime), else the origin
    verbatim: bool            # data occur as such in the raw mail (nothing was decoded)
    encrypted: bool = False   # an archive entry that cannot be read without its password

    @property
    def filename(self) -> str | None:
        return self.names[0] if self.names else None


@dataclass(frozen=True)
class MimeWalk:
    parts: tuple[Part, ...]
    unparseable: str | None = None   # the mail cannot be taken apart as a reader would
    incomplete: str | None = None    # a limit was hit: some content was not extracted
    notes: tuple[str, ...] = ()      # defects that did not stop the walk

    @property
    def complete(self) -> bool:
        return self.unparseable is None and self.incomplete is None


class _Stop(Exception):
    """A limit was hit: the walk ends here, what was found so far is kept."""


@dataclass
class _Walker:
    limits: MimeLimits
    parts: list[Part] = field(default_factory=list)
    total: int = 0
    unparseable: str | None = None
    incomplete: str | None = None
    notes: list[str] = field(default_factory=list)
    #: Walking a reading other than the stdlib parser's: its defects and broken archives
    #: are notes, and content already seen in another reading is not added again.
    other: bool = False
    seen: set[bytes] = field(default_factory=set)
    opened: list[bytes] = field(default_factory=list)  # archives that opened
    broken: list[tuple[Part, str]] = field(default_factory=list)  # archives that did not (first reading)

    # -- bookkeeping ---------------------------------------------------------

    def stop(self, reason: str) -> _Stop:
        self.incomplete = self.incomplete or reason
        return _Stop(reason)

    def note(self, text: str) -> None:
        if len(self.notes) < 50:
            self.notes.append(text)

    def budget(self) -> int:
        """Bytes the next part may still have."""
        return min(self.limits.max_part_bytes, self.limits.max_total_bytes - self.total)

    def add(self, part: Part) -> bool:
        """Adds ``part``; False when another reading had the same content already."""
        digest = hashlib.blake2b(part.data, digest_size=16).digest()
        if self.other and digest in self.seen:
            return False
        self.seen.add(digest)
        if len(self.parts) >= self.limits.max_parts:
            raise self.stop(f"more than {self.limits.max_parts} parts")
        if len(part.data) > self.limits.max_part_bytes:
            raise self.stop(f"part {part.locator} has {len(part.data)} bytes, over {self.limits.max_part_bytes}")
        if self.total + len(part.data) > self.limits.max_total_bytes:
            raise self.stop(f"parts add up to more than {self.limits.max_total_bytes} bytes")
        self.total += len(part.data)
        self.parts.append(part)
        return True

    # -- MIME ----------------------------------------------------------------

    def message(self, msg: Message, prefix: str, depth: int, verbatim: bool) -> None:
        if depth > self.limits.max_depth:
            raise self.stop(f"nesting deeper than {self.limits.max_depth} at {prefix or 'the top'}")
        for defect in msg.defects:
            reason = FATAL_DEFECTS.get(type(defect))
            if reason and self.unparseable is None and not self.other:
                self.unparseable = f"{reason} (part {prefix or 'top'}: {_content_type_header(msg)})"
        if not msg.is_multipart():
            self.leaf(msg, prefix or "1", depth, verbatim)
            return
        payload = [p for p in msg.get_payload() if isinstance(p, Message)]
        if msg.get_content_maintype() == "message":
            self.attached(msg, payload, prefix or "1", depth, verbatim)
            return
        for i, sub in enumerate(payload, 1):
            self.message(sub, f"{prefix}.{i}" if prefix else str(i), depth + 1, verbatim)

    def attached(self, container: Message, payload: list[Message], locator: str, depth: int,
                 verbatim: bool) -> None:
        """A message/rfc822 part: walk the mail inside (decoding it first when it was,
        against RFC 2046, sent base64 or quoted-printable)."""
        cte = _transfer_encoding(container)
        if not payload:
            return
        if cte in IDENTITY_ENCODINGS:
            for i, inner in enumerate(payload, 1):  # several only for message/delivery-status
                self.message(inner, f"{locator}.{i}", depth + 1, verbatim)
            return
        inner = payload[0]
        encoded = inner.as_bytes(policy=_GENERATOR_POLICY)
        if not inner.keys():
            encoded = encoded.lstrip(b"\r\n")
        data = decode_transfer(encoded, cte)[0]
        if self.add(Part(locator, container.get_content_type(), (), data, depth, "mime", cte, False)):
            self.embedded_message(data, f"{locator}.1", depth + 1, False)

    def embedded_message(self, data: bytes, locator: str, depth: int, verbatim: bool) -> None:
        """A mail held as data (decoded message/rfc822, an .eml file): parsed and walked."""
        if depth > self.limits.max_depth:
            raise self.stop(f"nesting deeper than {self.limits.max_depth} at {locator}")
        self.message(email.message_from_bytes(data, policy=_PARSE_POLICY), locator, depth, verbatim)

    def leaf(self, msg: Message, locator: str, depth: int, verbatim: bool) -> None:
        ctype = msg.get_content_type()
        cte = _transfer_encoding(msg)
        body = _payload_bytes(msg)
        data, note = decode_transfer(body, cte)
        if note:
            self.note(f"part {locator}: {note}")
        names = declared_names(msg)
        part = Part(locator, ctype, names, data, depth, "mime", cte, verbatim and cte in IDENTITY_ENCODINGS)
        if not self.add(part):
            return
        self.contents(part)
        self.inline(part)
        if cte == "base64":  # damaged base64 that readers decode otherwise: each of their readings
            for n, other in enumerate(base64_readings(body)[1:], 2):
                self.alternative(Part(f"{locator}~{n}", ctype, names, other, depth, "mime", cte, False))

    def inline(self, part: Part) -> None:
        """uuencoded, BinHex and yEnc blocks in a part, each a member of it."""
        for n, (origin, name, data) in enumerate(inline_blocks(part.data, self.budget()), 1):
            member = Part(f"{part.locator}!{_TAG[origin]}{n}", "", (clean_name(name),), data, part.depth + 1,
                          origin, origin, False)
            if self.add(member):
                self.contents(member)

    def alternative(self, part: Part) -> None:
        """A part of another reading: added and walked unless its content was seen."""
        other, self.other = self.other, True
        try:
            if self.add(part):
                self.contents(part)
                self.inline(part)
        finally:
            self.other = other

    def others(self, raw: bytes, msg: Message) -> None:
        """Every other reading of the mail (readings.py), with a byte budget of its own; a
        mail the parser (``msg``) could not take apart is parseable when one of them can."""
        self.total = 0
        parsed = [self.reading(f"r{n}", label, text)
                  for n, (label, text) in enumerate(structure_readings(raw, msg), 1)]
        if any(parsed) and self.unparseable:
            self.note(f"{self.unparseable}: read by another reading")
            self.unparseable = None
        carved = carved_base64(raw) if parsed or self.broken or damaged(msg) else ()
        for n, block in enumerate(carved, 1):
            for k, data in enumerate(base64_readings(block), 1):
                self.alternative(Part(f"carved{n}" + (f"~{k}" if k > 1 else ""), "", (), data, 1, "carved",
                                      "base64", False))
        # Blocks outside every part: in a preamble or an epilogue (the leaves had theirs looked at).
        around = (t for sub in msg.walk() for t in (sub.preamble, sub.epilogue) if t)
        blocks = (b for text in around for b in inline_blocks(text.encode("utf-8", "surrogateescape"), self.budget()))
        for n, (origin, name, data) in enumerate(blocks, 1):
            self.alternative(Part(f"{_TAG[origin]}{n}", "", (clean_name(name),), data, 1, origin, origin, False))

    def reading(self, prefix: str, label: str, raw: bytes) -> bool:
        """Walks the mail as rewritten by a structure reading; True when it parsed without
        a fatal defect (a reader can take the mail apart that way)."""
        self.note(f"reading {prefix}: {label}")
        other, self.other = self.other, True
        try:
            msg = email.message_from_bytes(raw, policy=_PARSE_POLICY)
            self.message(msg, prefix, 0, False)
        except _Stop:
            raise
        except Exception as exc:  # noqa: BLE001 - a reading the parser fails on is no reading
            self.note(f"reading {prefix} failed: {type(exc).__name__}: {exc}")
            return False
        finally:
            self.other = other
        return not _fatal(msg)

    # -- containers ----------------------------------------------------------

    def contents(self, part: Part) -> None:
        """Walk into what ``part`` holds: an archive (by magic) or a mail (.eml, message/*)."""
        kind = archive_kind(part.data)
        if kind is not None:
            if part.depth + 1 > self.limits.max_depth:
                raise self.stop(f"nesting deeper than {self.limits.max_depth} at {part.locator}")
            try:
                getattr(self, f"open_{kind}")(part)
            except _Stop:
                raise
            except Exception as exc:  # a broken archive is reported, never fatal
                self.unreadable(part, f"{where(part)}: {kind} archive unreadable ({type(exc).__name__}: {exc})")
                return
            self.opened.append(part.data)
            return
        is_mail = part.content_type in ("message/rfc822", "message/global") or any(
            n.lower().endswith(".eml") for n in part.names)
        if is_mail:
            self.embedded_message(part.data, f"{part.locator}.1", part.depth + 1, part.verbatim)

    def unreadable(self, part: Part, reason: str) -> None:
        """A broken archive: a note in another reading; in the parser's, the walk is
        incomplete unless another reading opens it whole (see resolve)."""
        if self.other:
            self.note(reason)
        else:
            self.broken.append((part, reason))

    def resolve(self) -> None:
        """The broken archives of the parser's reading that no other reading opened whole
        (an outer boundary cut a base64 part that the other reading did not cut)."""
        for part, reason in self.broken:
            head = part.data[:32]  # the same archive's start: local header and first name
            if any(whole != part.data and whole.startswith(head) for whole in self.opened):
                self.note(f"{reason}; read whole in another reading")
            else:
                self.incomplete = self.incomplete or reason

    def member(self, container: Part, name: str, data: bytes, origin: str, encrypted: bool = False) -> None:
        part = Part(f"{container.locator}!{name}", "", (name,), data, container.depth + 1, origin, origin, False,
                    encrypted)
        if self.add(part) and not encrypted:
            self.contents(part)

    def open_zip(self, part: Part) -> None:
        with zipfile.ZipFile(io.BytesIO(part.data)) as zf:
            infos = zf.infolist()
            if len(infos) > self.limits.max_archive_members:
                raise self.stop(f"{where(part)}: zip lists {len(infos)} entries, over "
                                f"{self.limits.max_archive_members}")
            for info in infos:
                if info.is_dir():
                    continue
                if info.flag_bits & 0x1 or info.compress_type == 99:  # traditional or AES encryption
                    self.member(part, info.filename, b"", "zip", encrypted=True)
                    continue
                with zf.open(info) as stream:
                    data = self.bounded_read(stream, part, info.filename, min(info.compress_size, len(part.data)))
                self.member(part, info.filename, data, "zip")

    def open_tar(self, part: Part) -> None:
        with tarfile.open(fileobj=io.BytesIO(part.data), mode="r:") as tf:
            for count, info in enumerate(tf, 1):
                if count > self.limits.max_archive_members:
                    raise self.stop(f"{where(part)}: tar holds more than {self.limits.max_archive_members} entries")
                if not info.isfile():
                    continue
                stream = tf.extractfile(info)
                data = self.bounded_read(stream, part, info.name, len(part.data)) if stream else b""
                self.member(part, info.name, data, "tar")

    def open_gzip(self, part: Part) -> None:
        self.decompressed(part, "gzip", zlib.decompressobj(16 + zlib.MAX_WBITS).decompress)

    def open_bzip2(self, part: Part) -> None:
        self.decompressed(part, "bzip2", bz2.BZ2Decompressor().decompress)

    def open_xz(self, part: Part) -> None:
        self.decompressed(part, "xz", lzma.LZMADecompressor().decompress)

    def decompressed(self, part: Part, kind: str, decompress: Callable[[bytes, int], bytes]) -> None:
        limit = self.budget()
        data = decompress(part.data, limit + 1)  # max_length: the output is bounded, whatever the input
        self.check_expansion(part, f"{kind} stream", len(data), len(part.data), limit)
        self.member(part, _strip_suffix(part.filename or "", kind) or kind, data, kind)

    def bounded_read(self, stream: IO[bytes], part: Part, name: str, packed: int) -> bytes:
        limit = self.budget()
        buf = bytearray()
        while True:
            chunk = stream.read(min(65536, limit + 1 - len(buf)))
            if not chunk:
                return bytes(buf)
            buf += chunk
            self.check_expansion(part, name, len(buf), packed, limit)

    def check_expansion(self, part: Part, name: str, size: int, packed: int, limit: int) -> None:
        if size > limit:
            raise self.stop(f"{where(part)}: {name} expands past {limit} bytes (compression bomb?)")
        ratio = self.limits.max_compression_ratio
        if size > self.limits.ratio_floor_bytes and size > ratio * max(packed, 1):
            raise self.stop(f"{where(part)}: {name} expands more than {ratio}:1 (compression bomb?)")


def _fatal(msg: Message) -> bool:
    return any(type(d) in FATAL_DEFECTS for sub in msg.walk() for d in sub.defects)


def where(part: Part) -> str:
    """A part as people read it: its locator and, when it has one, its name."""
    return f"{part.locator} ({part.filename})" if part.filename else f"part {part.locator}"


def walk_message(raw: bytes, limits: MimeLimits | None = None) -> MimeWalk:
    """The leaf parts of ``raw``; never raises (what went wrong is in the result)."""
    walker = _Walker(limits or MimeLimits())
    if not raw.strip():
        return MimeWalk((), unparseable="empty message")
    try:
        msg = email.message_from_bytes(raw, policy=_PARSE_POLICY)
        if not msg.keys():
            walker.unparseable = "no header fields"
        walker.message(msg, "", 0, True)
        walker.others(raw, msg)
    except _Stop:
        pass
    except RecursionError:
        walker.unparseable = "MIME nesting too deep to parse"
    except Exception as exc:  # noqa: BLE001 - a mail must never crash the stage: it goes to quarantine
        walker.unparseable = f"parser error: {type(exc).__name__}: {exc}"
    walker.resolve()
    return MimeWalk(tuple(walker.parts), walker.unparseable, walker.incomplete, tuple(walker.notes))


# -- reading the parser's parts ------------------------------------------------


def _payload_bytes(msg: Message) -> bytes:
    # The stored payload, not get_payload(): for a part with 8-bit bytes and no transfer
    # encoding, that decodes them by the declared charset with "replace" (lossy).
    payload = msg._payload  # noqa: SLF001
    if payload is None:
        return b""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, list):  # a multipart with a broken structure, read as a leaf
        return b"".join(_payload_bytes(p) if isinstance(p, Message) else str(p).encode("utf-8", "surrogateescape")
                        for p in payload)
    # The bytes parser keeps undecodable bytes as surrogate escapes: this gives them back.
    return str(payload).encode("utf-8", "surrogateescape")


def _transfer_encoding(msg: Message) -> str:
    value = str(msg.get("content-transfer-encoding", "") or "")
    return (value.strip().split(None, 1) or [""])[0].strip(";\"'").lower()


def _content_type_header(msg: Message) -> str:
    return " ".join(str(msg.get("content-type", "")).split())[:120]


def _strip_suffix(name: str, kind: str) -> str:
    base = name.rsplit("/", 1)[-1]
    for suffix in {"gzip": (".gz", ".tgz"), "bzip2": (".bz2", ".tbz"), "xz": (".xz", ".txz")}[kind]:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)] + (".tar" if suffix.startswith(".t") else "")
    return ""
