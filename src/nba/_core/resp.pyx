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


# --------------------------------------------------------------------------- one round trip without the GIL

cdef extern from "<sys/socket.h>" nogil:
    ssize_t c_send "send"(int fd, const void* buf, size_t n, int flags)
    ssize_t c_recv "recv"(int fd, void* buf, size_t n, int flags)
    int MSG_NOSIGNAL

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long n, int timeout)
    short POLLIN
    short POLLOUT

cdef extern from "<errno.h>" nogil:
    int errno
    int EAGAIN
    int EWOULDBLOCK
    int EINTR

from libc.stdlib cimport realloc


cdef Py_ssize_t _line(const char* b, Py_ssize_t n, Py_ssize_t pos, long long* value) noexcept nogil:
    """The end of the line at pos (after its CRLF), its integer in value; -1 if incomplete, -2 if malformed."""
    cdef Py_ssize_t i = pos
    cdef long long v = 0
    cdef bint neg = False
    if i < n and b[i] == c'-':
        neg = True
        i += 1
    while i < n and b[i] != c'\r':
        if b[i] < c'0' or b[i] > c'9':
            return -2
        v = v * 10 + (b[i] - c'0')
        i += 1
    if i + 1 >= n:
        return -1
    if b[i + 1] != c'\n':
        return -2
    value[0] = -v if neg else v
    return i + 2


cdef Py_ssize_t _reply_end(const char* b, Py_ssize_t n, Py_ssize_t pos, int depth) noexcept nogil:
    """The end of the complete reply at pos; -1 if incomplete, -2 if malformed (RESP2 and RESP3's common types)."""
    cdef long long v = 0
    cdef Py_ssize_t end, k
    cdef char t
    if pos >= n:
        return -1
    if depth > 32:
        return -2
    t = b[pos]
    if t == c'+' or t == c'-' or t == c'_' or t == c',' or t == c'#' or t == c'(':
        end = pos + 1
        while end < n and b[end] != c'\n':
            end += 1
        return end + 1 if end < n else -1
    end = _line(b, n, pos + 1, &v)
    if end < 0:
        return end
    if t == c':':
        return end
    if t == c'$' or t == c'=' or t == c'!':
        if v < 0:
            return end
        return end + v + 2 if end + v + 2 <= n else -1
    if t == c'*' or t == c'~' or t == c'>' or t == c'%':
        if v < 0:
            return end
        if t == c'%':
            v *= 2
        for k in range(v):
            end = _reply_end(b, n, end, depth + 1)
            if end < 0:
                return end
        return end
    return -2


cdef int _exchange(int fd, const char* out, Py_ssize_t nout, char** buf, Py_ssize_t* size, Py_ssize_t* have,
                   Py_ssize_t replies, int timeout_ms) noexcept nogil:
    """Send out, then read until ``replies`` complete replies are in buf; 0, or an error code:
    -1 timeout, -2 closed by the server, -3 malformed reply, -4 out of memory, errno > 0."""
    cdef Py_ssize_t sent = 0, done = 0, scanned = 0, end
    cdef ssize_t r
    cdef pollfd p
    cdef char* grown
    p.fd = fd
    while done < replies:
        p.events = POLLIN | (POLLOUT if sent < nout else 0)
        p.revents = 0
        r = poll(&p, 1, timeout_ms)
        if r == 0:
            return -1
        if r < 0:
            if errno == EINTR:
                continue
            return errno
        if sent < nout and (p.revents & POLLOUT):
            r = c_send(fd, out + sent, nout - sent, MSG_NOSIGNAL)
            if r < 0:
                if errno != EAGAIN and errno != EWOULDBLOCK and errno != EINTR:
                    return errno
            else:
                sent += r
        if p.revents & ~POLLOUT:  # readable, or hung up / an error: recv says which
            if size[0] - have[0] < 4096:
                grown = <char*>realloc(buf[0], size[0] * 2)
                if grown == NULL:
                    return -4
                buf[0] = grown
                size[0] *= 2
            r = c_recv(fd, buf[0] + have[0], size[0] - have[0], 0)
            if r == 0:
                return -2
            if r < 0:
                if errno != EAGAIN and errno != EWOULDBLOCK and errno != EINTR:
                    return errno
                continue
            have[0] += r
            while done < replies:
                end = _reply_end(buf[0], have[0], scanned, 0)
                if end == -1:
                    break
                if end < 0:
                    return -3
                scanned = end
                done += 1
    return 0


def exchange(int fd, bytes payload, Py_ssize_t replies, double timeout):
    """Send ``payload`` on socket ``fd`` and read ``replies`` complete RESP replies, all without the
    GIL: the writer takes it back once per batch instead of after each send and recv. Returns the
    replies' bytes; TimeoutError, ConnectionError (closed, or a malformed reply) or OSError."""
    cdef const char* out = payload
    cdef Py_ssize_t nout = len(payload)
    cdef Py_ssize_t size = 16384, have = 0
    cdef int timeout_ms = -1 if timeout <= 0 else <int>(timeout * 1000) + 1
    cdef int rc
    cdef char* buf = <char*>malloc(size)
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            rc = _exchange(fd, out, nout, &buf, &size, &have, replies, timeout_ms)
        if rc == -1:
            raise TimeoutError(f"no reply from Redis within {timeout} s")
        if rc == -2:
            raise ConnectionError("Redis closed the connection")
        if rc == -3:
            raise ConnectionError("Redis sent a malformed reply")
        if rc == -4:
            raise MemoryError()
        if rc > 0:
            raise OSError(rc, "the writer's connection to Redis failed")
        return PyBytes_FromStringAndSize(buf, have)
    finally:
        free(buf)


cdef class ReplyError:
    """An error reply (``-ERR ...``): its text, for the caller to turn into its client's exception."""
    cdef readonly str message

    def __init__(self, str message):
        self.message = message


cdef object _parse(bytes data, Py_ssize_t* pos):
    """The reply at pos (RESP2, and RESP3's types: redis-py 8 speaks RESP3 by default); moves pos past it."""
    cdef const char* b = data
    cdef Py_ssize_t n = len(data), end, start
    cdef long long v = 0
    cdef char t = b[pos[0]]
    if t == c'+' or t == c'-' or t == c'_' or t == c',' or t == c'#' or t == c'(':
        start = pos[0] + 1
        end = _reply_end(b, n, pos[0], 0)
        pos[0] = end
        line = data[start:end - 2]
        if t == c'-':
            return ReplyError(line.decode("utf-8", "replace"))
        if t == c'+':
            return line
        if t == c'_':
            return None
        if t == c',':
            return float(line)
        if t == c'#':
            return line == b"t"
        return int(line)
    end = _line(b, n, pos[0] + 1, &v)
    pos[0] = end
    if t == c':':
        return v
    if t == c'$' or t == c'=' or t == c'!':
        if v < 0:
            return None
        pos[0] = end + v + 2
        if t == c'!':
            return ReplyError(data[end:end + v].decode("utf-8", "replace"))
        return data[end + 4:end + v] if t == c'=' else data[end:end + v]  # '=': a "txt:" prefix, then text
    if t == c'*' or t == c'~' or t == c'>':
        if v < 0:
            return None
        return [_parse(data, pos) for _ in range(v)]
    if t == c'%':
        out = {}
        for _ in range(v):
            key = _parse(data, pos)
            out[key] = _parse(data, pos)
        return out
    raise ConnectionError(f"unexpected reply type {chr(t)!r}")


def parse_replies(bytes data, Py_ssize_t replies):
    """The replies ``exchange`` read, as Python values: bytes, int, float, bool, None, list, dict or ``ReplyError``."""
    cdef Py_ssize_t pos = 0
    out = []
    for _ in range(replies):
        if _reply_end(data, len(data), pos, 0) < 0:
            raise ConnectionError("incomplete or malformed reply")
        out.append(_parse(data, &pos))
    return out
