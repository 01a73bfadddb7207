# Hash kernels shared by the VW scorer (feature hashing), experiment allocation
# and seeded sampling. Included from _core.pyx.

cdef inline uint32_t _rotl32(uint32_t x, int r) noexcept nogil:
    return (x << r) | (x >> (32 - r))


cdef inline uint32_t _murmur3_32(const unsigned char* data, Py_ssize_t n, uint32_t seed) noexcept nogil:
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
        k = _rotl32(k, 15)
        k *= c2
        h ^= k
        h = _rotl32(h, 13)
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
        k = _rotl32(k, 15)
        k *= c2
        h ^= k
    h ^= <uint32_t>n
    h ^= h >> 16
    h *= 0x85ebca6bU
    h ^= h >> 13
    h *= 0xc2b2ae35U
    h ^= h >> 16
    return h


cdef inline uint32_t _fnv1a_32(const unsigned char* data, Py_ssize_t n) noexcept nogil:
    """FNV-1a, 32 bits, over n bytes."""
    cdef uint32_t h = 0x811c9dc5U
    cdef Py_ssize_t i
    for i in range(n):
        h ^= data[i]
        h *= 0x01000193U
    return h


cdef inline uint64_t _splitmix64(uint64_t x) noexcept nogil:
    """One step of splitmix64: a cheap, well-mixed 64-bit finalizer used to seed sampling."""
    x += 0x9E3779B97F4A7C15ULL
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL
    return x ^ (x >> 31)


def murmurhash3_32(const unsigned char[::1] data, uint32_t seed=0):
    """MurmurHash3_x86_32 of ``data`` (bytes) with ``seed``, as an unsigned int."""
    cdef uint32_t h
    with nogil:
        h = _murmur3_32(&data[0] if data.shape[0] > 0 else NULL, data.shape[0], seed)
    return h


def fnv1a_32(const unsigned char[::1] data):
    """32-bit FNV-1a of ``data`` (bytes), as an unsigned int."""
    cdef uint32_t h
    with nogil:
        h = _fnv1a_32(&data[0] if data.shape[0] > 0 else NULL, data.shape[0])
    return h


def splitmix64(uint64_t x):
    """splitmix64 finalizer of a 64-bit integer."""
    return _splitmix64(x)
