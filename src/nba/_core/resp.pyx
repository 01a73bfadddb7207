# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""RESP encoding of RedisState's writes: the writer thread's per-decision work, in C (issue 10).

The writer used to build a Python tuple of EVALSHA arguments per decision (``repr(ts)``, a key
string) and let redis-py pack them: ~36k instructions a decision, all of them holding the GIL,
so under load its slices landed inside ``decide()`` in other threads. ``pack_remember`` reads
the queued tuples once with the GIL (pointers and numbers only, no new objects), then writes the
whole command into one buffer without it. A decision's window start crosses as 8 bytes of a
little-endian float64 (the script stores it as text with ``%.17g``, exact), so nothing is
formatted here but the lengths and the arm.
"""

from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
    bint PyBytes_Check(object o)
    char* PyBytes_AS_STRING(object o)
    Py_ssize_t PyBytes_GET_SIZE(object o)
    object PyBytes_FromStringAndSize(const char* s, Py_ssize_t n)
    long long PyLong_AsLongLong(object o) except? -1
    double PyFloat_AsDouble(object o) except? -1.0


cdef struct Rec:
    const char* eid
    Py_ssize_t neid
    const char* model
    Py_ssize_t nmodel
    const char* policy
    Py_ssize_t npolicy
    long long arm
    const char* x
    Py_ssize_t nx
    double ts
    char active


# A bulk string's header and trailer: '$', at most 20 digits, two CRLFs.
DEF BULK = 25
cdef const char* ONE = b"1"
cdef const char* ZERO = b"0"


cdef inline char* _int(char* p, long long v) noexcept nogil:
    """Write v in decimal; returns the end."""
    cdef char tmp[24]
    cdef int n = 0
    cdef unsigned long long u
    if v < 0:
        p[0] = c'-'
        p += 1
        u = <unsigned long long>(-(v + 1)) + 1
    else:
        u = <unsigned long long>v
    while True:
        tmp[n] = <char>(c'0' + u % 10)
        n += 1
        u //= 10
        if u == 0:
            break
    while n:
        n -= 1
        p[0] = tmp[n]
        p += 1
    return p


cdef inline char* _crlf(char* p) noexcept nogil:
    p[0] = c'\r'
    p[1] = c'\n'
    return p + 2


cdef inline char* _head(char* p, char kind, long long n) noexcept nogil:
    p[0] = kind
    return _crlf(_int(p + 1, n))


cdef inline char* _bulk(char* p, const char* s, Py_ssize_t n) noexcept nogil:
    p = _head(p, c'$', n)
    memcpy(p, s, n)
    return _crlf(p + n)


cdef inline char* _bulk2(char* p, const char* a, Py_ssize_t na, const char* b, Py_ssize_t nb) noexcept nogil:
    p = _head(p, c'$', na + nb)
    memcpy(p, a, na)
    memcpy(p + na, b, nb)
    return _crlf(p + na + nb)


cdef char* _write(char* p, const Rec* recs, Py_ssize_t n, const char* sha, Py_ssize_t nsha, const char* due,
                  Py_ssize_t ndue, const char* prefix, Py_ssize_t nprefix, const char* fixed,
                  Py_ssize_t nfixed, long long nfixed_args) noexcept nogil:
    """One EVALSHA of the remember script: KEYS due, then each decision's hash; ARGV the fixed
    arguments (already RESP), then 6 per decision."""
    cdef char digits[24]
    cdef Py_ssize_t i
    cdef uint64_t bits
    cdef int k
    cdef const Rec* r
    p = _head(p, c'*', 3 + (1 + n) + nfixed_args + 6 * n)
    p = _bulk(p, b"EVALSHA", 7)
    p = _bulk(p, sha, nsha)
    p = _bulk(p, digits, _int(digits, 1 + n) - digits)
    p = _bulk(p, due, ndue)
    for i in range(n):
        p = _bulk2(p, prefix, nprefix, recs[i].eid, recs[i].neid)
    memcpy(p, fixed, nfixed)
    p += nfixed
    for i in range(n):
        r = &recs[i]
        p = _bulk(p, r.model, r.nmodel)
        p = _bulk(p, r.policy, r.npolicy)
        p = _bulk(p, digits, _int(digits, r.arm) - digits)
        p = _bulk(p, r.x, r.nx)
        memcpy(&bits, &r.ts, 8)
        p = _head(p, c'$', 8)
        for k in range(8):  # little-endian whatever this host's order: the script reads '<d'
            p[k] = <char>((bits >> (8 * k)) & 0xFF)
        p = _crlf(p + 8)
        p = _bulk(p, ONE if r.active else ZERO, 1)
    return p


def pack_remember(list ops, Py_ssize_t start, Py_ssize_t limit, bytes sha, bytes due, bytes prefix, bytes fixed,
                  Py_ssize_t nfixed_args):
    """The EVALSHA command (RESP bytes) that remembers ``ops[start:stop]``, and ``stop``.

    ``ops`` are RedisState's queued tuples; the batch runs from ``start`` while they are
    ``("remember", eid, model, policy, arm, x bytes, ts, active)``, at most ``limit`` of them.
    ``fixed`` is the script's first ``nfixed_args`` arguments, already RESP-encoded."""
    cdef Py_ssize_t n_ops = len(ops)
    cdef Py_ssize_t stop = start
    cdef Py_ssize_t i, n, size
    cdef tuple op
    cdef Rec* recs
    cdef Rec* r
    cdef char* buf
    cdef char* end
    cdef const char* csha = sha
    cdef const char* cdue = due
    cdef const char* cprefix = prefix
    cdef const char* cfixed = fixed
    cdef Py_ssize_t nsha = len(sha), ndue = len(due), nprefix = len(prefix), nfixed = len(fixed)
    if start < 0 or start > n_ops or limit < 1:
        raise ValueError(f"pack_remember: expected 0 <= start <= {n_ops} and limit >= 1, got {start}, {limit}")
    while stop < n_ops and stop - start < limit:
        op = ops[stop]
        if len(op) != 8 or op[0] != "remember":
            break
        stop += 1
    n = stop - start
    if n == 0:
        return None, start
    recs = <Rec*>malloc(n * sizeof(Rec))
    if recs == NULL:
        raise MemoryError()
    try:
        size = 4 * BULK + 7 + nsha + ndue + nfixed
        for i in range(n):  # with the GIL: borrowed pointers into the tuples' objects, which ops keeps alive
            op = ops[start + i]
            r = &recs[i]
            r.eid = PyUnicode_AsUTF8AndSize(op[1], &r.neid)
            r.model = PyUnicode_AsUTF8AndSize(op[2], &r.nmodel)
            r.policy = PyUnicode_AsUTF8AndSize(op[3], &r.npolicy)
            r.arm = PyLong_AsLongLong(op[4])
            x = op[5]
            if not PyBytes_Check(x):
                raise TypeError(f"pack_remember: expected the model input as bytes, got {type(x).__name__}")
            r.x = PyBytes_AS_STRING(x)
            r.nx = PyBytes_GET_SIZE(x)
            r.ts = PyFloat_AsDouble(op[6])
            r.active = 1 if op[7] else 0
            size += 7 * BULK + nprefix + r.neid + r.nmodel + r.npolicy + r.nx + 8 + 1
        buf = <char*>malloc(size)
        if buf == NULL:
            raise MemoryError()
        try:
            with nogil:
                end = _write(buf, recs, n, csha, nsha, cdue, ndue, cprefix, nprefix, cfixed, nfixed, nfixed_args)
            return PyBytes_FromStringAndSize(buf, end - buf), stop
        finally:
            free(buf)
    finally:
        free(recs)


def pack_args(tuple args):
    """Arguments as RESP bulk strings (no array header): each bytes, str (UTF-8), int, or float (its ``repr``)."""
    parts = []
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = (<str>a).encode()
        elif isinstance(a, float):
            b = repr(a).encode()
        elif isinstance(a, int):
            b = b"%d" % a
        else:
            raise TypeError(f"pack_args: expected bytes, str, int or float arguments, got {type(a).__name__}")
        parts.append(b"$%d\r\n" % len(b))
        parts.append(b)
        parts.append(b"\r\n")
    return b"".join(parts)


def pack_command(tuple args):
    """One command as RESP bytes (see ``pack_args``)."""
    return b"*%d\r\n" % len(args) + pack_args(args)
