"""(stack id, count) pairs: the stored form of a window or a rollup bucket.

Pairs are kept as two numpy arrays sorted by stack id. On disk the ids are delta-encoded and
both arrays use the narrowest unsigned type that fits, then zstd: a window of 1,000 samples
over 200 stacks takes a few hundred bytes. Merging many buckets is one concatenate and one
`np.unique`, so a 30-day query costs what its distinct stacks cost, not its length.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import zstandard

_VERSION = 1
_HEADER = struct.Struct("<BBBI")  # version, id dtype code, count dtype code, number of pairs
_DTYPES = [np.dtype("<u1"), np.dtype("<u2"), np.dtype("<u4"), np.dtype("<u8")]
_DENSE_LIMIT = 20_000_000  # ids below this merge with a bincount over the id range
_local = threading.local()  # zstd contexts are not thread-safe; one pair per thread


@dataclass(frozen=True)
class Pairs:
    ids: np.ndarray  # uint64, sorted, unique
    counts: np.ndarray  # uint64, > 0

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def __len__(self) -> int:
        return len(self.ids)


EMPTY = Pairs(np.zeros(0, np.uint64), np.zeros(0, np.uint64))


def from_lists(ids: Iterable[int], counts: Iterable[int]) -> Pairs:
    """Pairs from parallel sequences; repeated ids add up."""
    return merge([Pairs(np.fromiter(ids, np.uint64), np.fromiter(counts, np.uint64))])


def merge(parts: Iterable[Pairs]) -> Pairs:
    parts = [p for p in parts if len(p)]
    if not parts:
        return EMPTY
    if len(parts) == 1 and _is_canonical(parts[0]):
        return parts[0]
    ids = np.concatenate([p.ids for p in parts])
    counts = np.concatenate([p.counts for p in parts])
    top = int(ids.max())
    if top < _DENSE_LIMIT:
        # Stack ids are dense and small: one bincount beats sorting (3.5 vs 9.4 ms for 212k
        # pairs). Counts stay exact: float64 holds integers to 2**53.
        sums = np.bincount(ids.astype(np.int64), weights=counts, minlength=top + 1)
        present = np.flatnonzero(sums)
        return Pairs(present.astype(np.uint64), sums[present].astype(np.uint64))
    unique, inverse = np.unique(ids, return_inverse=True)
    return Pairs(unique, np.bincount(inverse, weights=counts).astype(np.uint64))


def encode(pairs: Pairs) -> bytes:
    deltas = np.diff(pairs.ids, prepend=np.uint64(0))
    id_code, count_code = _code(deltas), _code(pairs.counts)
    body = (
        _HEADER.pack(_VERSION, id_code, count_code, len(pairs))
        + deltas.astype(_DTYPES[id_code]).tobytes()
        + pairs.counts.astype(_DTYPES[count_code]).tobytes()
    )
    return _compressor().compress(body)


def decode(blob: bytes) -> Pairs:
    body = _decompressor().decompress(blob)
    version, id_code, count_code, n = _HEADER.unpack_from(body)
    if version != _VERSION:
        raise ValueError(f"unknown pairs encoding version {version}")
    id_type, count_type = _DTYPES[id_code], _DTYPES[count_code]
    offset = _HEADER.size
    deltas = np.frombuffer(body, id_type, n, offset)
    counts = np.frombuffer(body, count_type, n, offset + n * id_type.itemsize)
    return Pairs(np.cumsum(deltas, dtype=np.uint64), counts.astype(np.uint64))


def _is_canonical(pairs: Pairs) -> bool:
    return len(pairs.ids) < 2 or bool(np.all(pairs.ids[1:] > pairs.ids[:-1]))


def _code(values: np.ndarray) -> int:
    top = int(values.max()) if len(values) else 0
    for code, dtype in enumerate(_DTYPES):
        if top <= np.iinfo(dtype).max:
            return code
    raise OverflowError(top)


def _compressor() -> zstandard.ZstdCompressor:
    if not hasattr(_local, "compressor"):
        _local.compressor = zstandard.ZstdCompressor(level=3)
        _local.decompressor = zstandard.ZstdDecompressor()
    return _local.compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    _compressor()
    return _local.decompressor
