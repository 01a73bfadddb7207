"""A lock for short critical sections run by request threads under the GIL.

Everything a request does under these locks keeps the GIL, so a thread holding
one is at most waiting for the GIL between two bytecodes. Blocking on the lock
would leave the waiter holding it while it waits for the GIL in turn, and two
threads would then hand both over on every call: a convoy (measured: two
deciding threads ran at half the rate of one). ``PoliteLock`` yields the GIL a
few times first so that the holder can finish, and blocks only on a holder
that is really busy (a buffer flush, an fsync).

A ``PoliteLock`` is also fork-safe: in a child made by ``os.fork()`` (gunicorn
``--preload``) every PoliteLock is new and free, even one that another thread of
the parent held at the moment of the fork (that thread does not exist in the child,
so the lock would otherwise never be released).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any


def acquire_politely(lock: threading.Lock) -> None:
    """Acquire ``lock``, which another thread holds, yielding the GIL before blocking."""
    for _ in range(64):
        time.sleep(0)  # releases the GIL: the holder runs and releases the lock
        if lock.acquire(False):
            return
    lock.acquire()


class PoliteLock:
    """A non-reentrant lock (``with lock:``) that does not form convoys with the GIL."""

    __slots__ = ("lock", "__weakref__")

    def __init__(self) -> None:
        #: The underlying threading.Lock: a hot path may inline ``__enter__`` as
        #: ``lock.acquire(False) or acquire_politely(lock)`` (reading it per call:
        #: a forked child gets a new one).
        self.lock = threading.Lock()
        _LIVE.add(self)

    def __enter__(self) -> PoliteLock:
        if not self.lock.acquire(False):
            acquire_politely(self.lock)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()

    def acquire(self, blocking: bool = True) -> bool:
        if not blocking:
            return self.lock.acquire(False)
        self.__enter__()
        return True

    def release(self) -> None:
        self.lock.release()

    def locked(self) -> bool:
        return self.lock.locked()


_LIVE: weakref.WeakSet[PoliteLock] = weakref.WeakSet()


def _renew_after_fork() -> None:
    for lock in list(_LIVE):
        lock.lock = threading.Lock()


os.register_at_fork(after_in_child=_renew_after_fork)
