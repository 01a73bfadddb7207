"""Type stubs of nba._core.logio: log writes."""

from __future__ import annotations

def write_held(fd: int, data: bytearray, start: int = 0) -> int:
    """write(2) ``data[start:]`` holding the GIL (short page-cache writes); bytes written, or OSError."""
