"""Reading request bodies within limits: the compressed size and the size after decoding.

Both limits are enforced while reading, so an oversized or zip-bomb body costs the server at
most the limit in memory, never the claimed or expanded size; after a large request, the
memory it freed is handed back to the system (`release_memory`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import zlib
from collections.abc import Callable
from functools import cache

import zstandard
from fastapi import HTTPException, Request

_CHUNK = 64 * 1024


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(f"the body is {declared} bytes; the limit (max_body_bytes) is {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(f"the body exceeds the limit (max_body_bytes) of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_body(body: bytes, encoding: str | None, max_bytes: int, trim_after: int = 0) -> bytes:
    """`body` decoded, at most `max_bytes`; a larger one is refused (413) once its buffer is
    freed and, past `trim_after` bytes, handed back (`release_memory`)."""
    encoding = (encoding or "identity").strip().lower()
    try:
        if encoding == "identity":
            data = body
        elif encoding == "zstd":
            with zstandard.ZstdDecompressor().stream_reader(body) as reader:
                data = reader.read(max_bytes + 1)
        elif encoding in ("gzip", "deflate"):
            decoder = zlib.decompressobj(wbits=47)  # 32+15: gzip or zlib header, auto-detected
            data = decoder.decompress(body, max_bytes + 1)
        else:
            raise HTTPException(
                415, f"unsupported Content-Encoding {encoding!r}: use zstd, gzip or identity"
            )
    except (zstandard.ZstdError, zlib.error) as exc:
        raise HTTPException(400, f"the body is not valid {encoding}: {exc}") from None
    if len(data) > max_bytes:
        del data
        release_memory(max_bytes, trim_after)
        raise _too_large(
            f"the decoded body exceeds the limit (max_decompressed_bytes) of {max_bytes} bytes"
        )
    return data


def _too_large(message: str) -> HTTPException:
    return HTTPException(413, message)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None elsewhere (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_memory(decoded_bytes: int, threshold: int) -> None:
    """After a request that decoded `decoded_bytes`, once its objects are freed: glibc keeps
    freed heap pages for reuse, and the millions of small blocks of a large body's parse tree
    leave them scattered, so RSS would stay at the request's peak. malloc_trim returns them
    (benchmarks/hostile_memory.py measures both). Small requests skip it: it walks the heap."""
    trim = _malloc_trim()
    if trim is not None and threshold > 0 and decoded_bytes >= threshold:
        trim(0)
