"""Crash-safe file replacement, shared by what nba rewrites whole (profile snapshots, erased log segments)."""

from __future__ import annotations

import os
import tempfile

__all__ = ["fsync_directory", "replace_atomically"]


def fsync_directory(directory: str) -> None:
    """Make a rename or a new file in ``directory`` durable; skipped where directories cannot be opened or synced."""
    try:
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass  # some file systems refuse to sync directories; the file itself is synced
    finally:
        os.close(dfd)


def replace_atomically(path: str, data: bytes) -> None:
    """Put ``data`` at ``path`` so that ``path`` holds the old bytes or the new ones, never a mix.

    A temporary file in the same directory (a dot name no reader of nba's files matches),
    fsync, ``os.replace`` over ``path``, fsync of the directory. On an error the temporary
    file is removed, ``path`` is as it was, and the ``OSError`` is raised.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_directory(directory)
