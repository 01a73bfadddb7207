# Hash kernels shared by the VW scorer (feature hashing), experiment allocation and
# seeded sampling: inline, so every module that cimports them compiles them in place.
#
# FNV-1a is written once here, as its step (fnv1a_unit); the byte, str and decimal
# forms are folds of that step. GrowthBook's SDKs hash strings as 32-bit FNV-1a over
# UTF-16 code units (JavaScript's charCodeAt), one 16-bit value per step, so an ASCII
# id hashes its bytes; a str is read in place (CPython's 1-, 2- or 4-byte form), code
# points above U+FFFF split into their surrogate pair as UTF-16 stores them.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from *:
    """
    #define NBA_FNV_OFFSET 0x811c9dc5U
    #define NBA_FNV_PRIME 0x01000193U
    """
    const uint32_t FNV_OFFSET "NBA_FNV_OFFSET"   # FNV-1a's 32-bit offset basis and prime
    const uint32_t FNV_PRIME "NBA_FNV_PRIME"


cdef inline uint32_t rotl32(uint32_t x, int r) noexcept nogil:
    return (x << r) | (x >> (32 - r))


cdef inline uint32_t murmur3_32(const unsigned char* data, Py_ssize_t n, uint32_t seed) noexcept nogil:
    """MurmurHash3_x86_32 over n bytes; blocks read little-endian as on every VW platform."""
    cdef uint32_t h = seed
    cdef uint32_t k
    cdef uint32_t c1 = 0xcc9e2d51U
    cdef uint32_t c2 = 0x1b873593U
    cdef Py_ssize_t nblocks = n // 4
    cdef Py_ssize_t i
    cdef const unsigned char* p
    for i in range(nblocks):
        p = data + 4 * i
        k = (<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)
        k *= c1
        k = rotl32(k, 15)
        k *= c2
        h ^= k
        h = rotl32(h, 13)
        h = h * 5 + 0xe6546b64U
    p = data + 4 * nblocks
    k = 0
    cdef Py_ssize_t rem = n & 3
    if rem == 3:
        k ^= (<uint32_t>p[2]) << 16
    if rem >= 2:
        k ^= (<uint32_t>p[1]) << 8
    if rem >= 1:
        k ^= <uint32_t>p[0]
        k *= c1
        k = rotl32(k, 15)
        k *= c2
        h ^= k
    h ^= <uint32_t>n
    h ^= h >> 16
    h *= 0x85ebca6bU
    h ^= h >> 13
    h *= 0xc2b2ae35U
    h ^= h >> 16
    return h


cdef inline uint32_t fnv1a_unit(uint32_t h, uint32_t c) noexcept nogil:
    """One FNV-1a step: fold the value ``c`` (a byte or a UTF-16 code unit) into state ``h``."""
    return (h ^ c) * FNV_PRIME


cdef inline uint32_t fnv1a_bytes(uint32_t h, const unsigned char* data, Py_ssize_t n) noexcept nogil:
    """Continue FNV-1a state ``h`` over n bytes."""
    cdef Py_ssize_t i
    for i in range(n):
        h = fnv1a_unit(h, data[i])
    return h


cdef inline uint32_t fnv1a_units(uint32_t h, const uint16_t* u, Py_ssize_t n) noexcept nogil:
    """Continue FNV-1a state ``h`` over n UTF-16 code units."""
    cdef Py_ssize_t i
    for i in range(n):
        h = fnv1a_unit(h, u[i])
    return h


cdef inline void fnv1a_fold_all(uint32_t* h, Py_ssize_t m, uint32_t c) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(m):
        h[j] = fnv1a_unit(h[j], c)


cdef inline void fnv1a_str_multi(uint32_t* h, Py_ssize_t m, const void* data, Py_ssize_t n,
                                 int kind) noexcept nogil:
    """Continue ``m`` FNV-1a states over the UTF-16 code units of a str's n characters at once.

    ``data`` and ``kind`` are the str's PEP 393 buffer and width (1, 2 or 4 bytes). FNV-1a
    is one serial multiply chain per state; folding every state per code unit runs the
    independent chains side by side instead of one after another (m = 1: one string hash).
    """
    cdef Py_ssize_t i
    cdef uint32_t c
    cdef const uint8_t* p1
    cdef const uint16_t* p2
    cdef const uint32_t* p4
    if kind == 1:
        p1 = <const uint8_t*>data
        for i in range(n):
            fnv1a_fold_all(h, m, p1[i])
    elif kind == 2:
        p2 = <const uint16_t*>data
        for i in range(n):
            fnv1a_fold_all(h, m, p2[i])
    else:
        p4 = <const uint32_t*>data
        for i in range(n):
            c = p4[i]
            if c >= 0x10000:
                c -= 0x10000
                fnv1a_fold_all(h, m, 0xD800U + (c >> 10))
                fnv1a_fold_all(h, m, 0xDC00U + (c & 0x3FFU))
            else:
                fnv1a_fold_all(h, m, c)


cdef inline uint32_t fnv1a_decimal(uint32_t x) noexcept nogil:
    """FNV-1a of the decimal digits of ``x`` (what ``fnv1a32(str(x))`` hashes)."""
    cdef unsigned char digits[10]
    cdef int n = 0
    while True:
        digits[9 - n] = <unsigned char>(48 + x % 10)
        n += 1
        x //= 10
        if x == 0:
            break
    return fnv1a_bytes(FNV_OFFSET, digits + 10 - n, n)


cdef inline uint64_t splitmix64(uint64_t x) noexcept nogil:
    """One step of splitmix64: a cheap, well-mixed 64-bit finalizer used to seed sampling."""
    x += 0x9E3779B97F4A7C15ULL
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL
    return x ^ (x >> 31)
