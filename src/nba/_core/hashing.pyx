"""The shared hash kernels (``hashing.pxd``) as Python functions, for the loaders and tests."""

from cpython.unicode cimport PyUnicode_DATA, PyUnicode_GET_LENGTH, PyUnicode_KIND
from libc.stdint cimport uint32_t, uint64_t

from nba._core.hashing cimport FNV_OFFSET, fnv1a_bytes, fnv1a_str_multi, murmur3_32
from nba._core.hashing cimport splitmix64 as _splitmix64


def murmurhash3_32(const unsigned char[::1] data, uint32_t seed=0):
    """MurmurHash3_x86_32 of ``data`` (bytes) with ``seed``, as an unsigned int."""
    cdef uint32_t h
    with nogil:
        h = murmur3_32(&data[0] if data.shape[0] > 0 else NULL, data.shape[0], seed)
    return h


def fnv1a_32(const unsigned char[::1] data):
    """32-bit FNV-1a of ``data`` (bytes), as an unsigned int."""
    cdef uint32_t h
    with nogil:
        h = fnv1a_bytes(FNV_OFFSET, &data[0] if data.shape[0] > 0 else NULL, data.shape[0])
    return h


def fnv1a_32_str(str s, uint32_t state=FNV_OFFSET):
    """32-bit FNV-1a over the UTF-16 code units of ``s``, continuing from ``state``.

    With the default state this is GrowthBook's ``fnv1a32``; salts are folded with
    it once, so per-unit hashing continues from there.
    """
    cdef uint32_t h = state
    fnv1a_str_multi(&h, 1, PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s), PyUnicode_KIND(s))
    return h


def splitmix64(uint64_t x):
    """splitmix64 finalizer of a 64-bit integer."""
    return _splitmix64(x)
