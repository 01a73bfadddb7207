# Writing a log record without handing the GIL over.
#
# A decision record is one write(2) of under a kilobyte into the page cache: a
# microsecond or two. os.write releases the GIL around it, and when another
# request thread is waiting for the GIL that release costs a thread hand-over
# per decision (measured: two deciding threads ran at 40% of one thread's rate).
# write_held keeps the GIL for the call, as the short tree walks do.

from posix.unistd cimport write as _posix_write
from libc.errno cimport errno, EINTR
from libc.string cimport strerror
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE


def write_held(int fd, bytearray data not None, Py_ssize_t start=0):
    """write(2) ``data[start:]`` to ``fd`` holding the GIL; the bytes written (one call,
    retried on EINTR), or OSError."""
    cdef Py_ssize_t n = PyByteArray_GET_SIZE(data)
    cdef ssize_t r
    cdef int err
    if start < 0 or start > n:
        raise ValueError("start must be within data")
    while True:
        r = _posix_write(fd, PyByteArray_AS_STRING(data) + start, <size_t>(n - start))
        if r >= 0:
            return r
        err = errno
        if err != EINTR:
            raise OSError(err, strerror(err).decode("utf-8", "replace"))
