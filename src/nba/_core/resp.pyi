"""Type stubs of nba._core.resp: RESP encoding of RedisState's writes."""

from __future__ import annotations

from typing import Any

def pack_remember(ops: list[tuple[Any, ...]], start: int, limit: int, sha: bytes, due: bytes, prefix: bytes,
                  fixed: bytes, nfixed_args: int) -> tuple[bytes | None, int]:
    """The EVALSHA (RESP bytes) remembering ``ops[start:stop]`` (a run of at most ``limit`` remember
    tuples), and ``stop``; ``(None, start)`` if ``ops[start]`` is not one. Packs without the GIL."""

def pack_args(args: tuple[Any, ...]) -> bytes:
    """Arguments as RESP bulk strings (no array header): bytes, str (UTF-8), int or float (its repr)."""

def pack_command(args: tuple[Any, ...]) -> bytes:
    """One command as RESP bytes: each argument bytes, str (UTF-8), int or float (its repr)."""

def exchange(fd: int, payload: bytes, replies: int, timeout: float) -> bytes:
    """Send ``payload`` on socket ``fd`` and read ``replies`` complete RESP replies without the GIL;
    their bytes. TimeoutError, ConnectionError or OSError."""

class ReplyError:
    """An error reply's text."""

    message: str

    def __init__(self, message: str) -> None: ...

def parse_replies(data: bytes, replies: int) -> list[Any]:
    """The replies ``exchange`` read: bytes, int, None, list, or ``ReplyError``."""
