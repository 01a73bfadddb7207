# The one lock of nba's short critical sections (see locks.pyx), for Python (``with``)
# and for compiled modules (bandits.pyx), which take it with or without the GIL.

from cpython.pythread cimport PyThread_type_lock


cdef class PoliteLock:
    cdef PyThread_type_lock _lock
    cdef Py_ssize_t _gen           # the fork generation the lock was made in
    cdef void _renew(self) noexcept
    cdef void take(self) noexcept                  # holding the GIL: polite, then blocking
    cdef void take_nogil(self) noexcept nogil      # without the GIL: blocking
    cdef void give(self) noexcept nogil
