"""message-validation's lenient decoders and other readings (issue 18, section 4): each
kind of malformed mail gives up the zip it hides, and its clean twin is walked whole."""

from __future__ import annotations

import base64
import email
from email.policy import compat32

import pytest

from streams.validation.attachments import check_attachments
from streams.validation.decoders import (
    base64_readings,
    binhex_blocks,
    decode_qp,
    decode_yenc,
    inline_blocks,
    yenc_blocks,
)
from streams.validation.mime import walk_message
from streams.validation.readings import boundary_candidates, carved_base64, structure_readings
from streams.validation.settings import AttachmentPolicySettings
from tests.support.broken_mime import KINDS, binhex, payload_zip, uuencode, yenc
from tests.support.clamd import EICAR

DATA = bytes(range(256)) * 3


def test_base64_readings_of_padding_in_the_middle() -> None:
    text = base64.b64encode(DATA)
    damaged = text[:70] + b"==\r\n" + text[70:]
    readings = base64_readings(damaged)
    assert readings[0] != DATA       # each padded stretch on its own: misaligned after the "="
    assert DATA in readings          # the "=" skipped: the data whole
    assert base64_readings(text) == [DATA]  # undamaged: one reading


def test_base64_ends_at_padding_in_one_reading_and_junk_is_skipped() -> None:
    text = base64.b64encode(b"hello!!") + b"\r\n~~junk~~\r\n"
    assert b"hello!!" in base64_readings(text)


def test_base64_lines_of_any_length_join() -> None:
    text = base64.b64encode(DATA)
    lines = b"\r\n".join(text[i:i + w] for i, w in zip(range(0, len(text), 13), [13] * 200, strict=False))
    assert base64_readings(lines)[0] == DATA


def test_quoted_printable_soft_break_with_blanks_and_equals_before_non_hex() -> None:
    assert decode_qp(b"ab= \t\r\ncd=\r\nef") == b"abcdef"
    assert decode_qp(b"a=zb=3d=3Dc") == b"a=zb==c"


def test_uuencode_binhex_and_yenc_blocks_round_trip() -> None:
    assert inline_blocks(b"text\r\n" + uuencode(DATA, "a.bin"), 10**6) == [("uuencode", "a.bin", DATA)]
    assert binhex_blocks(b"see\r\n" + binhex(DATA, b"b.bin"), 10**6) == [("b.bin", DATA)]
    assert yenc_blocks(yenc(DATA, b"c.bin"), 10**6) == [("c.bin", DATA)]
    assert decode_yenc(b"=}=@\r\nk") == b"\x13\xd6A"  # escapes: "=" then the byte + 64; CR LF not data


def test_decoded_blocks_are_bounded() -> None:
    assert len(yenc_blocks(yenc(DATA), 100)[0][1]) == 101
    assert len(binhex_blocks(binhex(DATA), 100)[0][1]) == 101


def test_boundary_candidates() -> None:
    assert boundary_candidates(b'multipart/mixed; boundary="a"; boundary=b') == [b"a", b"b"]
    assert boundary_candidates(b'multipart/mixed; boundary="a"; boundary*0="r"; boundary*1="e"') == [b"a", b"re"]
    assert boundary_candidates(b"multipart/mixed; boundary*=utf-8''x%41y") == [b"xAy"]


def _readings(raw: bytes) -> list[tuple[str, bytes]]:
    return list(structure_readings(raw, email.message_from_bytes(raw, policy=compat32)))


def test_structure_readings_only_for_ambiguous_headers() -> None:
    assert _readings(KINDS["b64-mixed-lines"](payload_zip(False))) == []
    labels = [label for label, _ in _readings(KINDS["two-boundaries"](payload_zip(False)))]
    assert len(labels) == 2 and "'decoy'" in labels[0] and "'real'" in labels[1]


def test_carving_joins_base64_across_a_boundary_line() -> None:
    raw = KINDS["outer-boundary-in-base64"](payload_zip(True))
    blocks = list(carved_base64(raw))
    assert any(payload_zip(True) in base64_readings(b) for b in blocks)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_gives_up_the_eicar_in_its_zip(kind: str) -> None:
    walk = walk_message(KINDS[kind](payload_zip(infected=True)))
    assert any(p.data == EICAR for p in walk.parts), [p.locator for p in walk.parts]
    assert walk.unparseable is None


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_clean_twin_is_walked_whole_and_passes_the_policy(kind: str) -> None:
    walk = walk_message(KINDS[kind](payload_zip(infected=False)))
    assert walk.complete, (walk.unparseable, walk.incomplete)
    assert not check_attachments(walk, AttachmentPolicySettings()).blocked
    assert not any(EICAR in p.data for p in walk.parts)


def test_a_folded_boundary_is_the_body_s_boundary() -> None:
    walk = walk_message(KINDS["folded-boundary"](payload_zip(False)))
    assert [p.locator for p in walk.parts][:3] == ["1", "2", "2!readme.txt"]


def test_a_cut_archive_not_read_whole_elsewhere_still_makes_the_walk_incomplete() -> None:
    data = payload_zip(False)
    cut = base64.b64encode(data[: len(data) // 2])
    raw = (b"Subject: x\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n" + cut)
    walk = walk_message(raw)
    assert walk.incomplete and "zip archive unreadable" in walk.incomplete


def test_other_readings_do_not_add_what_was_seen() -> None:
    walk = walk_message(KINDS["b64-mixed-lines"](payload_zip(True)))
    assert len([p for p in walk.parts if p.data == EICAR]) == 1  # carving found the same zip: not again
