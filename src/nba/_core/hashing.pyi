"""Type stubs of nba._core.hashing: hashing."""

from __future__ import annotations

def murmurhash3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 of ``data`` with ``seed``, unsigned."""

def fnv1a_32(data: bytes) -> int:
    """32-bit FNV-1a of ``data``, unsigned."""

def splitmix64(x: int) -> int:
    """splitmix64 finalizer of a 64-bit unsigned integer."""

def fnv1a_32_str(s: str, state: int = 0x811C9DC5) -> int:
    """32-bit FNV-1a over the UTF-16 code units of ``s`` (GrowthBook's ``fnv1a32``), from ``state``."""
