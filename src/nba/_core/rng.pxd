# The seeded stream every draw uses: (application seed, event id) -> a 64-bit key, and
# the j-th uniform of the key's stream, so the same decision replays the same way in any
# process on any platform (all arithmetic mod 2^64):
#
#   k   = splitmix64(seed)
#   h   = murmur3_32(event_id_utf8, k mod 2^32) << 32 | murmur3_32(event_id_utf8, k >> 32)
#   key = splitmix64(h xor k)
#   u_j = (splitmix64(key + j * 0x9E3779B97F4A7C15) >> 11) * 2^-53      (j = 0, 1, ...)
#
# sample() uses u_0, sample_slate() u_j for slot j; online models' posterior draws
# (bandits.pyx) seed their generators from the same key.

from libc.stdint cimport int64_t, uint32_t, uint64_t
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize

from nba._core.hashing cimport murmur3_32, splitmix64

cdef extern from *:
    """
    #define NBA_GOLDEN 0x9E3779B97F4A7C15ULL
    #define NBA_TWO_M53 (1.0 / 9007199254740992.0)
    """
    const uint64_t GOLDEN "NBA_GOLDEN"     # the stream's step: 2^64 / golden ratio, odd
    const double TWO_M53 "NBA_TWO_M53"     # 2^-53, exact: 53 random bits -> [0, 1)


cdef inline uint64_t seeded_key(const unsigned char* id, Py_ssize_t n, uint64_t seed) noexcept nogil:
    """64-bit key of (seed, event id bytes), as the header says."""
    cdef uint64_t k = splitmix64(seed)
    cdef uint64_t h = ((<uint64_t>murmur3_32(id, n, <uint32_t>(k & 0xFFFFFFFFULL))) << 32) | \
        (<uint64_t>murmur3_32(id, n, <uint32_t>(k >> 32)))
    return splitmix64(h ^ k)


cdef inline double stream_uniform(uint64_t key, uint64_t j) noexcept nogil:
    """The j-th uniform in [0, 1) of the stream of ``key``: 53 random bits."""
    return <double><int64_t>(splitmix64(key + j * GOLDEN) >> 11) * TWO_M53


cdef inline const char* event_id_utf8(object event_id, Py_ssize_t* n) except? NULL:
    """The UTF-8 bytes of a str (cached by the str) or of bytes; NULL for anything else."""
    if type(event_id) is str:
        return PyUnicode_AsUTF8AndSize(event_id, n)
    if type(event_id) is bytes:
        n[0] = PyBytes_GET_SIZE(event_id)
        return PyBytes_AS_STRING(event_id)
    return NULL
