"""The ids' val hash, computed where the images are parsed (``pipeline.sources.files``) and relied on by
ingest's split decisions: the same value Spark's ``xxhash64`` gives, so Python tasks and Spark
expressions agree on every row."""

from __future__ import annotations

import struct

_XXHASH_SEED = 42  # the seed of Spark's xxhash64() for its first column


def spark_xxhash64_id_seed(ids: list[str], seed: int) -> list[int]:
    """Spark's ``xxhash64(id, lit(seed))`` for each id: XXH64 of the id's UTF-8 bytes (seed 42), then
    of the seed as a little-endian int (or long, beyond 32 bits) seeded with that; a signed long."""
    import xxhash

    tail = struct.pack("<i", seed) if -(1 << 31) <= seed < (1 << 31) else struct.pack("<q", seed)
    out = []
    for ident in ids:
        h = xxhash.xxh64_intdigest(tail, xxhash.xxh64_intdigest(ident.encode("utf-8"), _XXHASH_SEED))
        out.append(h - (1 << 64) if h >= 1 << 63 else h)
    return out
