"""The raw message inside an event: compressed with zstd when that pays off."""

from __future__ import annotations

import threading

import zstandard

from schemas.events import RawMessage

_LOCAL = threading.local()
_MIN_TO_COMPRESS = 256  # below this the zstd frame overhead outweighs the saving
# A declared content size we refuse to inflate past: guards against zstd bombs.
MAX_DECOMPRESSED = 512 * 1024 * 1024


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_LOCAL, "c", None)
    if c is None:
        c = _LOCAL.c = zstandard.ZstdCompressor(level=3)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_LOCAL, "d", None)
    if d is None:
        d = _LOCAL.d = zstandard.ZstdDecompressor()
    return d


def pack_message(raw: bytes) -> dict[str, object]:
    if len(raw) < _MIN_TO_COMPRESS:
        return {"compression": "NONE", "data": raw}
    packed = _compressor().compress(raw)
    if len(packed) >= len(raw):
        return {"compression": "NONE", "data": raw}
    return {"compression": "ZSTD", "data": packed}


def packed(raw: bytes) -> RawMessage:
    """``pack_message`` as the typed record the events carry."""
    if len(raw) >= _MIN_TO_COMPRESS:
        data = _compressor().compress(raw)
        if len(data) < len(raw):
            return RawMessage(compression="ZSTD", data=data)
    return RawMessage(compression="NONE", data=raw)


def unpack_message(message: dict[str, object] | RawMessage) -> bytes:
    if isinstance(message, RawMessage):
        data: object = message.data
        compression: object = message.compression
    else:
        data, compression = message["data"], message["compression"]
    assert isinstance(data, bytes)
    if compression == "ZSTD":
        return _decompressor().decompress(data, max_output_size=MAX_DECOMPRESSED)
    return data
