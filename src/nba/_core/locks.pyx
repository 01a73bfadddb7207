# A lock for short critical sections run by request threads under the GIL.
#
# Everything a request does under these locks keeps the GIL, so a thread holding one
# is at most waiting for the GIL between two bytecodes. Blocking on the lock would
# leave the waiter holding the GIL while it waits for the lock, and two threads would
# then hand both over on every call: a convoy (measured: two deciding threads ran at
# half the rate of one). ``take`` yields the GIL a few times first so that the holder
# can finish, and blocks only on a holder that is really busy (a buffer flush, an
# fsync, a long posterior draw loop, which holds the lock without the GIL).
#
# Fork-safe: in a child made by os.fork() (gunicorn --preload) every lock is new and
# free on its first use, even one that another thread of the parent held at the moment
# of the fork (that thread does not exist in the child, so the lock would never be
# released). The fork bumps a generation; a lock made in an older one is replaced
# (one integer compare per acquisition) and the old one abandoned, not freed.

from cpython.pythread cimport (PyThread_acquire_lock, PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_release_lock, NOWAIT_LOCK, WAIT_LOCK)

import os

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef enum:
    _POLITE_TRIES = 64   # GIL yields before blocking on a busy holder

cdef Py_ssize_t _fork_gen = 0


def _after_fork_in_child():
    global _fork_gen
    _fork_gen += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


cdef class PoliteLock:
    """A non-reentrant lock (``with lock:``) that does not form convoys with the GIL and
    is new and free in a forked child."""

    def __cinit__(self):
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError("cannot allocate a lock")
        self._gen = _fork_gen

    def __dealloc__(self):
        if self._lock != NULL and self._gen == _fork_gen:
            PyThread_free_lock(self._lock)

    cdef void _renew(self) noexcept:
        """In a forked child, replace the lock (the parent's may be held by a thread that is gone)."""
        cdef PyThread_type_lock fresh = PyThread_allocate_lock()
        if fresh != NULL:  # else keep the old one: free unless a vanished thread held it
            self._lock = fresh
        self._gen = _fork_gen

    cdef void take(self) noexcept:
        cdef int i
        if self._gen != _fork_gen:
            self._renew()
        if PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            return
        for i in range(_POLITE_TRIES):
            with nogil:
                sched_yield()
            if PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
                return
        with nogil:
            PyThread_acquire_lock(self._lock, WAIT_LOCK)

    cdef void take_nogil(self) noexcept nogil:
        if self._gen != _fork_gen:
            with gil:
                self._renew()
        PyThread_acquire_lock(self._lock, WAIT_LOCK)

    cdef void give(self) noexcept nogil:
        PyThread_release_lock(self._lock)

    def __enter__(self):
        self.take()
        return self

    def __exit__(self, *exc):
        PyThread_release_lock(self._lock)

    def acquire(self, bint blocking=True):
        """Take the lock (politely); without ``blocking``, only if it is free. True if taken."""
        if not blocking:
            if self._gen != _fork_gen:
                self._renew()
            return PyThread_acquire_lock(self._lock, NOWAIT_LOCK) == 1
        self.take()
        return True

    def release(self):
        """Release the lock (taken by any thread); RuntimeError if it is not held."""
        if self._gen != _fork_gen or PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            if self._gen == _fork_gen:
                PyThread_release_lock(self._lock)
            raise RuntimeError("release unlocked lock")
        PyThread_release_lock(self._lock)

    def locked(self):
        """True while some thread holds the lock."""
        if self._gen != _fork_gen:
            return False
        if PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            PyThread_release_lock(self._lock)
            return False
        return True
