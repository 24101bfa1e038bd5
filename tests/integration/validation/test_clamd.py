"""message-validation's virus scan against a real clamd (tests/support/clamd.py: Debian's
clamav-daemon with a signature database of the test's own): found, clean, unscannable,
and clamd down, frozen or refusing. Never a clean verdict without clamd's OK."""

from __future__ import annotations

import base64
import io
import os
import time
import zipfile
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from streams.validation.attachments import check_attachments
from streams.validation.clamd import (
    ClamdClient,
    ClamdTimeout,
    ClamdTooLarge,
    ClamdUnavailable,
)
from streams.validation.mime import walk_message
from streams.validation.settings import AttachmentPolicySettings, ClamdSettings
from streams.validation.virus import scan_message, scan_with_retry
from tests.support.clamd import (
    EICAR,
    EICAR_NAME,
    MARKER,
    MARKER_NAME,
    TESTFILE_NAME,
    TESTFILES,
    Clamd,
    corpus_paths,
)

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def message(body: str = "hello\n", subject: str = "test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "alice@example.net", "bob@example.com", subject
    msg.set_content(body)
    return msg


def attach(msg: EmailMessage, data: bytes, filename: str, mime: str = "application/octet-stream") -> EmailMessage:
    maintype, subtype = mime.split("/")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg


def eicar_forwarded() -> bytes:
    """EICAR in a zip, in a base64 attachment, in a mail forwarded as message/rfc822."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("readme.com", EICAR)
    inner = attach(message("the documents\n", "docs"), buf.getvalue(), "docs.zip", "application/zip")
    outer = message("FYI, see below\n", "Fwd: docs")
    outer.add_attachment(inner)
    raw = outer.as_bytes()
    assert EICAR not in raw  # only decoding and unzipping reveal it
    return raw


async def test_ping_and_version(client: ClamdClient) -> None:
    await client.ping()
    assert (await client.version()).startswith("ClamAV ")


async def test_eicar_in_a_zip_in_a_forwarded_message_is_infected(client: ClamdClient) -> None:
    verdict = await scan_message(eicar_forwarded(), client)
    assert verdict.kind == "infected" and verdict.names == (EICAR_NAME,)
    # clamd found it in the raw mail, and our own walk reached the zip member as well.
    assert f"{EICAR_NAME} in the mail" in verdict.reason
    assert "!readme.com" in verdict.reason


async def test_marker_in_a_base64_encoded_forwarded_mail_is_found(client: ClamdClient) -> None:
    inner = attach(message("inner\n"), MARKER + b"\n", "note.txt", "text/plain")
    raw = (b"From: a@example.net\r\nTo: b@example.com\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nfwd\r\n"
           b"--B\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(inner.as_bytes()) + b"--B--\r\n")
    verdict = await scan_message(raw, client)
    assert verdict.kind == "infected" and MARKER_NAME in verdict.names


@pytest.mark.parametrize("name", sorted(p.name for p in TESTFILES.glob("clam*")) or ["(clamav-testfiles missing)"])
async def test_clamav_testfiles_attached_under_a_harmless_name_are_infected(clamd: Clamd, name: str) -> None:
    path = TESTFILES / name
    if not path.is_file():
        pytest.skip("apt-get install clamav-testfiles: ClamAV's test set of clam.exe in archives and formats")
    raw = attach(message(), path.read_bytes(), "statement.pdf", "application/pdf").as_bytes()
    verdict = await scan_message(raw, ClamdClient(clamd.unix_address))
    assert verdict.kind == "infected" and TESTFILE_NAME in verdict.names, verdict


async def test_clean_corpus_mails_are_clean(clamd: Clamd) -> None:
    client = ClamdClient(clamd.unix_address)
    for path in corpus_paths("easy_ham", 40):
        verdict = await scan_message(path.read_bytes(), client)
        assert verdict.kind == "clean", (path.name, verdict)


async def test_renamed_exe_is_quarantined_by_policy_and_clamd_names_a_known_one(clamd: Clamd) -> None:
    client = ClamdClient(clamd.unix_address)
    harmless_pe = bytearray(1024)
    harmless_pe[0:2], harmless_pe[0x3C:0x40], harmless_pe[0x80:0x84] = b"MZ", (0x80).to_bytes(4, "little"), b"PE\0\0"
    raw = attach(message(), bytes(harmless_pe), "invoice.pdf", "application/pdf").as_bytes()
    policy = check_attachments(walk_message(raw), AttachmentPolicySettings())
    assert policy.blocked and policy.rules == ("blocked-type",) and "invoice.pdf" in policy.reason
    assert (await scan_message(raw, client)).kind == "clean"  # no signature: the policy is what stops it
    if (TESTFILES / "clam.exe").is_file():
        raw = attach(message(), (TESTFILES / "clam.exe").read_bytes(), "invoice.pdf", "application/pdf").as_bytes()
        assert (await scan_message(raw, client)).names == (TESTFILE_NAME,)


async def test_broken_mime_is_unscannable_and_the_next_mail_still_flows(client: ClamdClient) -> None:
    broken = (b"From: a@example.net\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary=\"=Part 1\"\r\n"
              b"\r\n--= Part 1\r\nContent-Type: text/plain\r\n\r\nhi\r\n--= Part 1--\r\n")
    verdict = await scan_message(broken, client)
    assert verdict.kind == "unscannable" and "unparseable: multipart boundary never found" in verdict.reason
    assert (await scan_message(message("next one\n").as_bytes(), client)).kind == "clean"


async def test_zip_bomb_is_unscannable_not_clean(client: ClamdClient) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w") as out:
        for _ in range(64):
            out.write(bytes(MiB))
    raw = attach(message(), buf.getvalue(), "invoice.zip", "application/zip").as_bytes()
    verdict = await scan_message(raw, client)
    assert verdict.kind == "unscannable" and "compression bomb" in verdict.reason


async def test_clamd_stopped_is_unavailable_never_clean(fresh_clamd: Callable[..., Clamd]) -> None:
    cd = fresh_clamd()
    clients = [ClamdClient(cd.unix_address), ClamdClient(cd.tcp_address)]
    for client in clients:
        await client.ping()
    cd.stop()
    raw = message().as_bytes()
    for client in clients:
        with pytest.raises(ClamdUnavailable):
            await client.ping()
        with pytest.raises(ClamdUnavailable):
            await scan_message(raw, client)


async def test_frozen_clamd_times_out(fresh_clamd: Callable[..., Clamd]) -> None:
    cd = fresh_clamd()
    client = ClamdClient(cd.unix_address, scan_timeout_s=0.5)
    with cd.paused():
        started = time.monotonic()
        with pytest.raises(ClamdTimeout):
            await client.instream(os.urandom(256 * 1024))
        with pytest.raises(ClamdTimeout):
            await scan_message(eicar_forwarded(), client)
        assert time.monotonic() - started < 3
    assert (await client.instream(b"thawed")).clean


async def test_stream_over_clamds_own_limit_is_unscannable(fresh_clamd: Callable[..., Clamd]) -> None:
    cd = fresh_clamd(StreamMaxLength="1M")
    client = ClamdClient(cd.unix_address)  # its cap (25 MiB) is above what this clamd takes
    with pytest.raises(ClamdTooLarge):
        await client.instream(os.urandom(2 * MiB))
    raw = attach(message(), os.urandom(2 * MiB), "big.bin").as_bytes()
    verdict = await scan_message(raw, client)
    assert verdict.kind == "unscannable" and "size limit exceeded" in verdict.reason
    # Over TCP clamd's answer can be lost to the reset of its hang-up; still never a verdict.
    with pytest.raises((ClamdTooLarge, ClamdUnavailable)):
        await ClamdClient(cd.tcp_address).instream(os.urandom(8 * MiB))


async def test_empty_and_multi_chunk_streams(client: ClamdClient) -> None:
    assert (await client.instream(b"")).clean
    # EICAR across the edge of two 64 KiB chunks, in a stream of 5 chunks: clamd sees one stream.
    padded = os.urandom(65536 - 30) + EICAR + os.urandom(200 * 1024)
    assert client.chunk_bytes == 65536
    assert (await client.instream(padded)).found == (EICAR_NAME,)


async def test_mail_over_the_client_cap_is_unscannable(clamd: Clamd) -> None:
    client = ClamdClient(clamd.unix_address, max_stream_bytes=64 * 1024)
    with pytest.raises(ClamdTooLarge):
        await client.instream(bytes(100 * 1024))
    verdict = await scan_message(attach(message(), os.urandom(100 * 1024), "a.bin").as_bytes(), client)
    assert verdict.kind == "unscannable" and "over the scan cap" in verdict.reason


async def test_file_over_clamds_scan_limits_is_unscannable(fresh_clamd: Callable[..., Clamd]) -> None:
    cd = fresh_clamd(MaxFileSize="1M", MaxScanSize="1M")  # with AlertExceedsMax (tests/support/clamd.py)
    raw = attach(message(), os.urandom(2 * MiB), "big.bin").as_bytes()
    verdict = await scan_message(raw, ClamdClient(cd.unix_address))
    assert verdict.kind == "unscannable" and "Heuristics.Limits.Exceeded" in verdict.reason


async def test_retry_waits_for_clamd_to_come_back() -> None:
    cd = Clamd()  # not started yet: its socket does not exist
    client = ClamdClient(cd.unix_address)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            cd.start()

    try:
        verdict = await scan_with_retry(eicar_forwarded(), client, ClamdSettings(), sleep=sleep)
    finally:
        cd.stop()
    assert verdict.kind == "infected" and waits == [1.0, 2.0]


async def test_retry_gives_up_with_the_error_never_a_verdict() -> None:
    cd = Clamd()  # never started
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    settings = ClamdSettings(attempts=6, retry_initial_s=1, retry_max_s=5)
    try:
        with pytest.raises(ClamdUnavailable):
            await scan_with_retry(message().as_bytes(), ClamdClient(cd.tcp_address), settings, sleep=sleep)
    finally:
        cd.stop()
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
