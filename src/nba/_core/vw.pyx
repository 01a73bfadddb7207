# Vowpal Wabbit contextual-bandit scoring: VW's feature hashing and per-action
# hashed-linear costs (cb_adf).
#
# Layout. A "block" is the features of one example (the shared context, or one
# action) as three parallel arrays (32-bit hash, float32 value, linear flag),
# grouped by interaction slot: the namespaces' first characters that appear in
# the model's interactions are numbered 0..S-1 and features are stored slot by
# slot, features in no slot last. off[0..S+1] gives the slot boundaries. VW adds
# the shared example's features to every action, after the action's own, so an
# interaction slot of an action is the concatenation (action part, shared part).
#
# Weights are VW's weight vector without the learner's stride (only the weight
# itself), so weight i is w[i & mask]. Indices are masked at use, so any 32-bit
# hash is a valid index; the Python loader validates everything else once.
# Weights live in one of two stores, and every scoring kernel is compiled for
# both (the fused type _VWW): dense, a float per bucket, one load per lookup; or
# sparse, an open-addressing table of the non-zero weights, for files whose few
# weights do not justify 2**bits floats (a -b 28 model that learned 2k weights
# would otherwise cost 1 GiB). The table is probed with a multiply-shift hash
# whose odd multiplier is drawn at load time, so no file can choose its
# collisions; a missing key is a zero weight. Only
# the low `bits` (<= 30) of a feature hash ever reach an index, also through
# interactions ((h1 * FNV) ^ h2 keeps low bits from low bits), so the encoder
# keeps 30 bits.
#
# The dict encoder below is the API edge: it walks Python dicts (with a per
# model hash cache) into C buffers and reports invalid input by status code;
# nba.models.vw turns a bad status into a SchemaError that names the feature.

from cpython.ref cimport PyObject
from cpython.dict cimport PyDict_Next, PyDict_GetItemWithError, PyDict_Check
from cpython.unicode cimport (PyUnicode_AsUTF8AndSize, PyUnicode_Check, PyUnicode_GET_LENGTH,
                              PyUnicode_READ_CHAR)
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.number cimport PyNumber_Check, PyNumber_Float
from cpython.long cimport PyLong_Check, PyLong_AsDouble
from cpython.bool cimport PyBool_Check
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from libc.float cimport FLT_MAX
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t

from nba._core.hashing cimport murmur3_32, splitmix64

cimport numpy as cnp
import numpy as _vw_np

cnp.import_array()

cdef enum:
    _VW_FNV = 16777619       # VW's FNV prime for interaction hashes
    _VW_STACK = 256          # features per example kept on the C stack
    _VW_MAX_SLOTS = 256      # distinct namespace characters in interactions
    _VW_CACHE_KEY_MAX = 256  # UTF-8 bytes: longer names are hashed every time, never cached
    _VW_ENTRY_BYTES = 112    # what one cache entry costs beside its key (dict slot, int, str header)

cdef uint32_t _VW_EMPTY = 0xFFFFFFFFU  # sparse-table key of a free slot; indices are < 2**30


cdef struct _VWBlk:
    const uint32_t* h
    const float* v
    const uint8_t* lin
    const int32_t* off      # n_slots + 2 entries; off[n_slots + 1] == number of features


cdef struct _VWDense:
    const float* w
    uint32_t mask


cdef struct _VWSlot:
    uint32_t key
    float val


cdef struct _VWSparse:
    const _VWSlot* slots
    uint64_t mult           # odd multiplier of the multiply-shift probe hash
    int shift               # 64 - log2(capacity)
    uint32_t cmask          # capacity - 1
    uint32_t mask           # 2**bits - 1


ctypedef fused _VWW:
    _VWDense
    _VWSparse


cdef struct _VWModelC:
    uint32_t mask
    uint32_t const_idx
    int add_const
    int n_slots
    int n_terms
    const int32_t* terms    # n_terms x 4: (length, slot0, slot1, slot2)


# ---------------------------------------------------------------- hashing

cdef inline uint32_t _vw_hashstring(const unsigned char* s, Py_ssize_t n, uint32_t seed) noexcept nogil:
    """VW's default feature hash: trim bytes <= 0x20, all digits -> int + seed, else murmur3."""
    cdef uint64_t ret = 0
    cdef Py_ssize_t i
    while n > 0 and s[0] <= 0x20:
        s += 1
        n -= 1
    while n > 0 and s[n - 1] <= 0x20:
        n -= 1
    for i in range(n):
        if s[i] < 48 or s[i] > 57:
            return murmur3_32(s, n, seed)
        ret = 10 * ret + (s[i] - 48)
    return <uint32_t>(ret + seed)


cdef inline uint32_t _vw_hash(const unsigned char* s, Py_ssize_t n, uint32_t seed, int hash_all) noexcept nogil:
    if hash_all:
        return murmur3_32(s, n, seed)
    return _vw_hashstring(s, n, seed)


cdef inline uint32_t _vw_hash_string_feature(const unsigned char* key, Py_ssize_t nk,
                                             const unsigned char* val, Py_ssize_t nv,
                                             uint32_t ns_hash, int hash_all, int chain,
                                             unsigned char* tmp) noexcept nogil:
    """Hash of a string-valued feature as VW's JSON parser builds it.

    The value's ' ', tab, '|' and ':' become '_'; the feature is key+value hashed
    with the namespace hash, or with --chain_hash value hashed with hash(key).
    ``tmp`` holds at least nk + nv bytes.
    """
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(nv):
        c = val[i]
        if c == 32 or c == 9 or c == 124 or c == 58:
            c = 95
        tmp[nk + i] = c
    if chain:
        return _vw_hash(tmp + nk, nv, _vw_hash(key, nk, ns_hash, hash_all), hash_all)
    memcpy(tmp, key, nk)
    return _vw_hash(tmp, nk + nv, ns_hash, hash_all)


def vw_hash(bytes data, uint32_t seed, bint hash_all=False):
    """VW's hash of ``data`` with ``seed`` (``--hash strings`` unless ``hash_all``)."""
    return _vw_hash(<const unsigned char*>(<char*>data), len(data), seed, hash_all)


def vw_hash_string_feature(bytes key, bytes value, uint32_t ns_hash, bint hash_all=False, bint chain=False):
    """Hash of the string-valued JSON feature ``{key: value}`` in a namespace with hash ``ns_hash``."""
    cdef bytes tmp = bytes(len(key) + len(value))
    return _vw_hash_string_feature(<const unsigned char*>(<char*>key), len(key),
                                   <const unsigned char*>(<char*>value), len(value),
                                   ns_hash, hash_all, chain, <unsigned char*>(<char*>tmp))


# ---------------------------------------------------------------- scoring

cdef inline void _vw_get(const _VWBlk* a, const _VWBlk* s, int g, Py_ssize_t k,
                         uint32_t* h, float* v) noexcept nogil:
    """Feature k of slot g in the concatenation (action part, shared part)."""
    cdef Py_ssize_t na = a.off[g + 1] - a.off[g]
    if k < na:
        h[0] = a.h[a.off[g] + k]
        v[0] = a.v[a.off[g] + k]
    else:
        h[0] = s.h[s.off[g] + k - na]
        v[0] = s.v[s.off[g] + k - na]


cdef float _vw_probe(const _VWSparse* W, uint32_t k, uint64_t p) noexcept nogil:
    """The rest of a sparse lookup whose first slot held another key (linear probing)."""
    while True:
        p = (p + 1) & W.cmask
        if W.slots[p].key == k or W.slots[p].key == _VW_EMPTY:
            return W.slots[p].val


cdef inline float _vw_w(const _VWW* W, uint32_t i) noexcept nogil:
    """The weight of (unmasked) index i: a load, or a probe of the sparse table (absent -> 0).

    Free slots hold the value 0 and the table is at most 1/8 full, so the first
    slot settles a lookup (hit or miss) 7 times in 8 with one predictable branch.
    """
    cdef uint32_t k, key
    cdef uint64_t p
    if _VWW is _VWDense:
        return W.w[i & W.mask]
    else:
        k = i & W.mask
        p = (<uint64_t>k * W.mult) >> W.shift
        key = W.slots[p].key
        if (key == k) | (key == _VW_EMPTY):
            return W.slots[p].val
        return _vw_probe(W, k, p)


cdef inline float _vw_run(float acc, const _VWW* W, uint32_t half, float x,
                          const uint32_t* h, const float* v, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """acc += (x * v[j]) * w[half ^ h[j]] for j in [start, end), added in j order.

    Unrolled by four: the four products are independent, the additions stay in
    VW's order, so the sum is bit for bit the rolled loop's.
    """
    cdef Py_ssize_t j = start
    cdef float t0, t1, t2, t3
    while j + 4 <= end:
        t0 = (x * v[j]) * _vw_w(W, half ^ h[j])
        t1 = (x * v[j + 1]) * _vw_w(W, half ^ h[j + 1])
        t2 = (x * v[j + 2]) * _vw_w(W, half ^ h[j + 2])
        t3 = (x * v[j + 3]) * _vw_w(W, half ^ h[j + 3])
        acc += t0
        acc += t1
        acc += t2
        acc += t3
        j += 4
    while j < end:
        acc += (x * v[j]) * _vw_w(W, half ^ h[j])
        j += 1
    return acc


cdef inline float _vw_inner(float acc, const _VWW* W, uint32_t half, float v1,
                            const _VWBlk* a, const _VWBlk* s, int g, Py_ssize_t start) noexcept nogil:
    """acc += sum over slot g from ``start`` of (v1 * v) * w[half ^ h]."""
    cdef Py_ssize_t a0 = a.off[g]
    cdef Py_ssize_t na = a.off[g + 1] - a0
    cdef Py_ssize_t s0 = s.off[g]
    cdef Py_ssize_t ns = s.off[g + 1] - s0
    if start < na:
        acc = _vw_run(acc, W, half, v1, a.h + a0, a.v + a0, start, na)
    return _vw_run(acc, W, half, v1, s.h + s0, s.v + s0, start - na if start > na else 0, ns)


cdef inline Py_ssize_t _vw_count(const _VWBlk* a, const _VWBlk* s, int g) noexcept nogil:
    return (a.off[g + 1] - a.off[g]) + (s.off[g + 1] - s.off[g])


cdef inline float _vw_pair(float acc, const _VWW* W,
                           const uint32_t* h1, const float* v1, Py_ssize_t n1,
                           const uint32_t* h2, const float* v2, Py_ssize_t n2) noexcept nogil:
    """Quadratic terms of two feature lists, first-list-major as VW iterates them."""
    cdef Py_ssize_t i
    cdef float x
    for i in range(n1):
        x = v1[i]
        if x == 0:
            continue
        acc = _vw_run(acc, W, h1[i] * <uint32_t>_VW_FNV, x, h2, v2, 0, n2)
    return acc


cdef inline float _vw_rows(float acc, const _VWW* W,
                           const uint32_t* h1, const float* v1, Py_ssize_t n1,
                           const uint32_t* h2a, const float* v2a, Py_ssize_t n2a,
                           const uint32_t* h2b, const float* v2b, Py_ssize_t n2b) noexcept nogil:
    """Quadratic terms of a feature list with the concatenation of two others."""
    cdef Py_ssize_t i
    cdef uint32_t half
    cdef float x
    if n2b == 0:
        return _vw_pair(acc, W, h1, v1, n1, h2a, v2a, n2a)
    if n2a == 0:
        return _vw_pair(acc, W, h1, v1, n1, h2b, v2b, n2b)
    for i in range(n1):
        x = v1[i]
        if x == 0:
            continue
        half = h1[i] * <uint32_t>_VW_FNV
        acc = _vw_run(acc, W, half, x, h2a, v2a, 0, n2a)
        acc = _vw_run(acc, W, half, x, h2b, v2b, 0, n2b)
    return acc


cdef float _vw_cost(const _VWModelC* m, const _VWW* Wp, const _VWBlk* a, const _VWBlk* s) noexcept nogil:
    """One action's cost: linear terms, constant, then interactions, summed in float32 as VW does."""
    cdef _VWW Wl = Wp[0]    # a local copy: its fields stay in registers across the loops
    cdef const _VWW* W = &Wl
    cdef int S = m.n_slots
    cdef float acc = 0.0
    cdef Py_ssize_t i, j, n1, n2
    cdef int t, g0, g1, g2
    cdef uint32_t h1, h2, half1, half2
    cdef float v1, v2, v12
    cdef const int32_t* term
    n1 = a.off[S + 1]
    for i in range(n1):
        if a.lin[i]:
            acc += a.v[i] * _vw_w(W, a.h[i])
    if m.add_const:
        acc += _vw_w(W, m.const_idx)
    n1 = s.off[S + 1]
    for i in range(n1):
        if s.lin[i]:
            acc += s.v[i] * _vw_w(W, s.h[i])
    for t in range(m.n_terms):
        term = m.terms + 4 * t
        g0 = term[1]
        g1 = term[2]
        if term[0] == 2 and g0 != g1:
            # Rows of the action's part of g0, then of the shared part; each row runs
            # over g1's action part then its shared part: VW's order.
            acc = _vw_rows(acc, W, a.h + a.off[g0], a.v + a.off[g0], a.off[g0 + 1] - a.off[g0],
                           a.h + a.off[g1], a.v + a.off[g1], a.off[g1 + 1] - a.off[g1],
                           s.h + s.off[g1], s.v + s.off[g1], s.off[g1 + 1] - s.off[g1])
            acc = _vw_rows(acc, W, s.h + s.off[g0], s.v + s.off[g0], s.off[g0 + 1] - s.off[g0],
                           a.h + a.off[g1], a.v + a.off[g1], a.off[g1 + 1] - a.off[g1],
                           s.h + s.off[g1], s.v + s.off[g1], s.off[g1 + 1] - s.off[g1])
            continue
        n1 = _vw_count(a, s, g0)
        if term[0] == 2:
            # Same namespace: combinations with repetition (j from i), as VW does by default.
            for i in range(n1):
                _vw_get(a, s, g0, i, &h1, &v1)
                if v1 == 0:
                    continue
                acc = _vw_inner(acc, W, h1 * <uint32_t>_VW_FNV, v1, a, s, g1, i)
        else:
            g2 = term[3]
            n2 = _vw_count(a, s, g1)
            for i in range(n1):
                _vw_get(a, s, g0, i, &h1, &v1)
                if v1 == 0:
                    continue
                half1 = h1 * <uint32_t>_VW_FNV
                j = i if g0 == g1 else 0
                while j < n2:
                    _vw_get(a, s, g1, j, &h2, &v2)
                    v12 = v1 * v2
                    if v12 != 0:
                        half2 = (half1 ^ h2) * <uint32_t>_VW_FNV
                        acc = _vw_inner(acc, W, half2, v12, a, s, g2, j if g1 == g2 else 0)
                    j += 1
    return acc


cdef void _vw_score_actions(const _VWModelC* m, const _VWW* W, const _VWBlk* shared,
                            const uint32_t* ah, const float* av, const uint8_t* alin,
                            const int64_t* base, const int32_t* aoff, Py_ssize_t n_actions,
                            double sign, double* out) noexcept nogil:
    """out[k] = sign * cost of action k (sign -1 turns costs into higher-is-better scores, exactly)."""
    cdef Py_ssize_t k
    cdef _VWBlk a
    cdef int stride = m.n_slots + 2
    for k in range(n_actions):
        a.h = ah + base[k]
        a.v = av + base[k]
        a.lin = alin + base[k]
        a.off = aoff + k * stride
        out[k] = sign * <double>_vw_cost(m, W, &a, shared)


cdef inline bint _vw_release(const _VWModelC* m, Py_ssize_t n_act, Py_ssize_t n_shared) noexcept:
    """Whether a scoring call is long enough to release the GIL for: about
    n_act x n_shared x (interactions + 1) weight lookups, against a few microseconds
    of thread hand-over when request threads wait for the GIL."""
    return n_act * (n_shared + 1) * (m.n_terms + 1) >= 16384


# ---------------------------------------------------------------- core objects

cdef class VWActions:
    """A catalogue of actions hashed once: concatenated feature blocks, one per action."""

    cdef readonly object h, v, lin, base, off
    cdef readonly Py_ssize_t n_actions
    cdef readonly object layout
    cdef const uint32_t* _h
    cdef const float* _v
    cdef const uint8_t* _lin
    cdef const int64_t* _base
    cdef const int32_t* _off

    def __cinit__(self, h, v, lin, base, off, Py_ssize_t n_actions, layout):
        cdef const uint32_t[::1] hv = h
        cdef const float[::1] vv = v
        cdef const uint8_t[::1] lv = lin
        cdef const int64_t[::1] bv = base
        cdef const int32_t[::1] ov = off
        if bv.shape[0] != n_actions + 1 or hv.shape[0] != vv.shape[0] or hv.shape[0] != lv.shape[0]:
            raise ValueError("inconsistent action arrays")
        self.h, self.v, self.lin, self.base, self.off = h, v, lin, base, off
        self.n_actions = n_actions
        self.layout = layout
        # Views over empty arrays have no first element; point at a dummy then.
        self._h = &hv[0] if hv.shape[0] else NULL
        self._v = &vv[0] if vv.shape[0] else NULL
        self._lin = &lv[0] if lv.shape[0] else NULL
        self._base = &bv[0]
        self._off = &ov[0] if ov.shape[0] else NULL


cdef class VWBound:
    """Shared features bound to vector columns: hashes grouped by slot, and the column of each."""

    cdef readonly object h, lin, off, cols
    cdef readonly Py_ssize_t n_columns
    cdef readonly object layout
    cdef const uint32_t* _h
    cdef const uint8_t* _lin
    cdef const int32_t* _off
    cdef const int32_t* _cols
    cdef Py_ssize_t _n

    def __cinit__(self, h, lin, off, cols, Py_ssize_t n_columns, layout):
        cdef const uint32_t[::1] hv = h
        cdef const uint8_t[::1] lv = lin
        cdef const int32_t[::1] ov = off
        cdef const int32_t[::1] cv = cols
        cdef Py_ssize_t i
        if hv.shape[0] != lv.shape[0] or hv.shape[0] != cv.shape[0]:
            raise ValueError("inconsistent bound arrays")
        for i in range(cv.shape[0]):
            if cv[i] < 0 or cv[i] >= n_columns:
                raise ValueError("bound column out of range")
        self.h, self.lin, self.off, self.cols = h, lin, off, cols
        self.n_columns = n_columns
        self.layout = layout
        self._n = hv.shape[0]
        self._h = &hv[0] if self._n else NULL
        self._lin = &lv[0] if self._n else NULL
        self._off = &ov[0]
        self._cols = &cv[0] if self._n else NULL


cdef class _VWNs:
    """What the encoder knows about one namespace name."""
    cdef uint32_t h
    cdef int slot
    cdef uint8_t lin
    cdef bint skip
    cdef bint cached     # in the model's namespace cache: only then are names cached in it
    cdef dict names      # feature name -> hash, for numeric and boolean values
    cdef dict strings    # feature name -> {string value -> hash}


cdef struct _VWBuf:
    uint32_t* h
    float* v
    uint8_t* lin
    int16_t* slot
    Py_ssize_t cap


cdef extern from "Python.h":
    # PyUnicode_AsUTF8AndSize without Cython's error check: NULL (a lone surrogate
    # cannot be UTF-8) becomes an invalid-input status, as every other bad input does.
    const char* _vw_utf8 "PyUnicode_AsUTF8AndSize"(object text, Py_ssize_t* size)
    void _vw_err_clear "PyErr_Clear"()


cdef inline void _vw_dispatch(const _VWModelC* m, bint sparse, const _VWDense* wd, const _VWSparse* ws,
                       const _VWBlk* shared, VWActions actions, double sign, double* out, bint release):
    """Score with the model's weight store, releasing the GIL when the call is long enough."""
    if release:
        with nogil:
            if sparse:
                _vw_score_actions(m, ws, shared, actions._h, actions._v, actions._lin,
                                  actions._base, actions._off, actions.n_actions, sign, out)
            else:
                _vw_score_actions(m, wd, shared, actions._h, actions._v, actions._lin,
                                  actions._base, actions._off, actions.n_actions, sign, out)
    elif sparse:
        _vw_score_actions(m, ws, shared, actions._h, actions._v, actions._lin,
                          actions._base, actions._off, actions.n_actions, sign, out)
    else:
        _vw_score_actions(m, wd, shared, actions._h, actions._v, actions._lin,
                          actions._base, actions._off, actions.n_actions, sign, out)


cdef class VWCore:
    """A loaded VW cb model: weights, hashing parameters, interactions, and a hash cache.

    Built by nba.models.vw after it has parsed and validated the model file. The
    weights are either ``weights`` (2**bits float32, dense) or, with ``weights``
    None, the non-zero weights ``sparse_val`` at the distinct indices
    ``sparse_idx`` (< 2**bits), kept in an open-addressing table probed with the
    odd multiplier made from ``salt``.
    """

    cdef object _weights
    cdef object _terms_arr
    cdef _VWModelC _m
    cdef _VWDense _wd
    cdef _VWSparse _ws
    cdef readonly bint sparse
    cdef uint32_t _seed
    cdef int _hash_all
    cdef int _chain
    cdef uint8_t _ignore[256]
    cdef uint8_t _ignore_lin[256]
    cdef int16_t _slot_of[256]
    cdef dict _ns_cache
    cdef Py_ssize_t _cached
    cdef readonly Py_ssize_t cached_bytes
    cdef readonly Py_ssize_t cache_limit
    cdef readonly Py_ssize_t cache_bytes_limit
    cdef readonly object layout

    def __cinit__(self, weights, int bits, uint32_t seed, bint hash_all, bint chain_hash, bint add_constant,
                  bytes ignore, bytes ignore_linear, bytes slot_chars, terms, Py_ssize_t cache_limit=200000,
                  Py_ssize_t cache_bytes_limit=8 << 20, sparse_idx=None, sparse_val=None, uint64_t salt=0):
        cdef const int32_t[:, ::1] tv = terms
        cdef Py_ssize_t i
        cdef int S = len(slot_chars)
        if bits < 1 or bits > 30:
            raise ValueError("1 <= bits <= 30")
        if S > _VW_MAX_SLOTS or tv.shape[1] != 4:
            raise ValueError("bad interaction terms")
        for i in range(tv.shape[0]):
            if tv[i, 0] not in (2, 3) or not (0 <= tv[i, 1] < S and 0 <= tv[i, 2] < S and
                                              (tv[i, 0] == 2 or 0 <= tv[i, 3] < S)):
                raise ValueError("bad interaction terms")
        self._m.mask = <uint32_t>((<uint64_t>1 << bits) - 1)
        if weights is not None:
            self._bind_dense(weights, bits)
        else:
            self._build_sparse(sparse_idx, sparse_val, salt)
        self._terms_arr = terms
        self._m.const_idx = <uint32_t>11650396 & self._m.mask
        self._m.add_const = add_constant
        self._m.n_slots = S
        self._m.n_terms = tv.shape[0]
        self._m.terms = &tv[0, 0] if tv.shape[0] else NULL
        self._seed = seed
        self._hash_all = hash_all
        self._chain = chain_hash
        for i in range(256):
            self._ignore[i] = 0
            self._ignore_lin[i] = 0
            self._slot_of[i] = -1
        for i in range(len(ignore)):
            self._ignore[<uint8_t>ignore[i]] = 1
        for i in range(len(ignore_linear)):
            self._ignore_lin[<uint8_t>ignore_linear[i]] = 1
        for i in range(S):
            self._slot_of[<uint8_t>slot_chars[i]] = i
        self._ns_cache = {}
        self._cached = 0
        self.cached_bytes = 0
        self.cache_limit = cache_limit
        self.cache_bytes_limit = cache_bytes_limit
        self.layout = (seed, bool(hash_all), bool(chain_hash), ignore, ignore_linear, slot_chars)

    cdef _bind_dense(self, weights, int bits):
        cdef const float[::1] wv = weights
        if wv.shape[0] != (<Py_ssize_t>1 << bits):
            raise ValueError("weights must hold 2**bits floats")
        self._weights = weights
        self.sparse = False
        self._wd.w = &wv[0]
        self._wd.mask = self._m.mask

    cdef _build_sparse(self, sparse_idx, sparse_val, uint64_t salt):
        """The table of the given weights: capacity a power of two >= 8 n (load <= 1/8), free slots 0.0."""
        cdef const uint32_t[::1] iv = sparse_idx
        cdef const float[::1] vv = sparse_val
        cdef Py_ssize_t n = iv.shape[0], i
        cdef int log_cap = 1
        cdef uint64_t p, mult = splitmix64(salt) | 1
        cdef uint32_t k
        if vv.shape[0] != n:
            raise ValueError("sparse_idx and sparse_val differ in length")
        while (<Py_ssize_t>1 << log_cap) < 8 * n:
            log_cap += 1
        table = _vw_np.zeros(2 << log_cap, dtype=_vw_np.uint32)  # the value 0.0f is all-zero bits
        table[0::2] = _VW_EMPTY
        cdef uint32_t[::1] tab = table
        cdef _VWSlot* slots = <_VWSlot*>&tab[0]
        cdef uint32_t cmask = <uint32_t>((<uint64_t>1 << log_cap) - 1)
        cdef int shift = 64 - log_cap
        for i in range(n):
            k = iv[i]
            if k > self._m.mask:
                raise ValueError("sparse index beyond 2**bits")
            p = (<uint64_t>k * mult) >> shift
            while slots[p].key != _VW_EMPTY and slots[p].key != k:
                p = (p + 1) & cmask
            slots[p].key = k
            slots[p].val = vv[i]
        self._weights = table
        self.sparse = True
        self._ws.slots = slots
        self._ws.mult = mult
        self._ws.shift = shift
        self._ws.cmask = cmask
        self._ws.mask = self._m.mask

    @property
    def n_slots(self):
        return self._m.n_slots

    @property
    def table_bytes(self):
        """Bytes of the weight store (the dense floats or the sparse table)."""
        return self._weights.nbytes

    def clear_cache(self):
        """Forget cached feature hashes (they are recomputed on demand)."""
        self._ns_cache = {}
        self._cached = 0
        self.cached_bytes = 0

    # -- encoding (GIL held: walks Python dicts) --

    cdef inline bint _cache_room(self, Py_ssize_t key_bytes, Py_ssize_t extra) noexcept:
        """Whether a key of ``key_bytes`` UTF-8 bytes may be cached (and if so, count it with ``extra``).

        The cache keeps its keys alive, so it is bounded by entries and by bytes;
        long keys are never cached (hashing them costs less than holding them).
        """
        cdef Py_ssize_t cost = key_bytes + extra + _VW_ENTRY_BYTES
        if (key_bytes > _VW_CACHE_KEY_MAX or self._cached >= self.cache_limit
                or self.cached_bytes + cost > self.cache_bytes_limit):
            return False
        self._cached += 1
        self.cached_bytes += cost
        return True

    cdef _VWNs _ns(self, object name):
        """Namespace info for ``name``, or None when ``name`` is not a non-empty str that UTF-8 can encode."""
        cdef PyObject* hit = PyDict_GetItemWithError(self._ns_cache, name)
        if hit != NULL:
            return <_VWNs>hit
        if not PyUnicode_Check(name):
            return None
        cdef Py_ssize_t n
        cdef const char* s = _vw_utf8(name, &n)
        if s == NULL:
            _vw_err_clear()
            return None
        if n == 0:
            return None
        cdef _VWNs ns = _VWNs.__new__(_VWNs)
        cdef uint8_t first = <uint8_t>s[0]
        ns.h = _vw_hash(<const unsigned char*>s, n, self._seed, self._hash_all)
        ns.slot = self._slot_of[first]
        ns.lin = 0 if self._ignore_lin[first] else 1
        # VW's JSON parser skips keys that start with '_'; --ignore/--keep drop namespaces.
        ns.skip = first == 95 or self._ignore[first]
        ns.names = {}
        ns.strings = {}
        ns.cached = len(self._ns_cache) < 4096 and self._cache_room(n, 0)
        if ns.cached:
            self._ns_cache[name] = ns
        return ns

    cdef int _name_hash(self, _VWNs ns, object name, uint32_t* out) except -1:
        """Hash of a numeric/boolean feature name (cached); 1 when ``name`` is not valid text."""
        cdef PyObject* hit = PyDict_GetItemWithError(ns.names, name)
        cdef Py_ssize_t n
        cdef const char* s
        if hit != NULL:
            out[0] = <uint32_t>(<object>hit)
            return 0
        s = _vw_utf8(name, &n)
        if s == NULL:
            _vw_err_clear()
            return 1
        # Only the low bits reach an index (see the top); 30 bits keep the cached int one digit.
        out[0] = _vw_hash(<const unsigned char*>s, n, ns.h, self._hash_all) & 0x3FFFFFFF
        if ns.cached and self._cache_room(n, 0):
            ns.names[name] = out[0]
        return 0

    cdef int _string_hash(self, _VWNs ns, object name, object value, uint32_t* out) except -1:
        """Hash of a string-valued feature (cached per name and value); 1 when either is not valid text."""
        cdef PyObject* hit = PyDict_GetItemWithError(ns.strings, name)
        cdef dict per_value
        cdef Py_ssize_t nk, nv
        cdef const char* k
        cdef const char* vs
        cdef unsigned char stack[512]
        cdef unsigned char* tmp = stack
        if hit != NULL:
            per_value = <dict>hit
            hit = PyDict_GetItemWithError(per_value, value)
            if hit != NULL:
                out[0] = <uint32_t>(<object>hit)
                return 0
        else:
            per_value = None
        k = _vw_utf8(name, &nk)
        vs = _vw_utf8(value, &nv) if k != NULL else NULL
        if vs == NULL:
            _vw_err_clear()
            return 1
        if nk + nv > 512:
            tmp = <unsigned char*>malloc(nk + nv)
            if tmp == NULL:
                raise MemoryError()
        out[0] = _vw_hash_string_feature(<const unsigned char*>k, nk, <const unsigned char*>vs, nv,
                                         ns.h, self._hash_all, self._chain, tmp) & 0x3FFFFFFF
        if tmp != stack:
            free(tmp)
        # A name's first cached value also pays for the name and its per-value dict.
        if ns.cached and (self._cache_room(nv, 0) if per_value is not None else
                          nk <= _VW_CACHE_KEY_MAX and self._cache_room(nv, nk + 3 * _VW_ENTRY_BYTES)):
            if per_value is None:
                per_value = {}
                ns.strings[name] = per_value
            per_value[value] = out[0]
        return 0

    cdef Py_ssize_t _encode(self, object features, _VWBuf* buf) except -3:
        """Walk {namespace: {name: value}} into ``buf``.

        Returns the number of features, -1 when ``buf`` is too small, -2 when the
        input is invalid (the Python layer explains which feature and why).
        """
        cdef Py_ssize_t pos = 0, pos2, n = 0
        cdef PyObject* pk
        cdef PyObject* pv
        cdef PyObject* fk
        cdef PyObject* fv
        cdef object name, val, f
        cdef _VWNs ns
        cdef double x
        cdef float xf
        cdef uint32_t h
        cdef bint is_str
        cdef PyObject* hit
        if not PyDict_Check(features):
            return -2
        while PyDict_Next(features, &pos, &pk, &pv):
            ns = self._ns(<object>pk)
            if ns is None:
                return -2
            if ns.skip:
                continue
            if not PyDict_Check(<object>pv):
                return -2
            pos2 = 0
            while PyDict_Next(<object>pv, &pos2, &fk, &fv):
                name = <object>fk
                val = <object>fv
                if not PyUnicode_Check(name):
                    return -2
                if PyUnicode_GET_LENGTH(name) > 0 and PyUnicode_READ_CHAR(name, 0) == 95:
                    continue      # keys starting with '_' are not features in VW's JSON
                is_str = False
                if PyBool_Check(val):
                    if val is False:
                        continue
                    x = 1.0
                elif type(val) is float:
                    x = PyFloat_AS_DOUBLE(val)
                elif PyUnicode_Check(val):
                    is_str = True
                    x = 1.0
                elif val is None:
                    continue
                elif PyLong_Check(val):
                    try:
                        x = PyLong_AsDouble(val)
                    except OverflowError:
                        return -2
                elif PyNumber_Check(val):
                    try:
                        f = PyNumber_Float(val)
                    except Exception:
                        return -2
                    x = PyFloat_AS_DOUBLE(f)
                else:
                    return -2
                xf = <float>x
                if xf != xf or xf > FLT_MAX or xf < -FLT_MAX:
                    return -2
                if xf == 0:
                    continue      # VW drops zero-valued features
                if n >= buf.cap:
                    return -1
                if is_str:
                    if self._string_hash(ns, name, val, &h):
                        return -2
                else:
                    hit = PyDict_GetItemWithError(ns.names, name)
                    if hit != NULL:
                        h = <uint32_t>(<object>hit)
                    elif self._name_hash(ns, name, &h):
                        return -2
                buf.h[n] = h
                buf.v[n] = xf
                buf.lin[n] = ns.lin
                buf.slot[n] = ns.slot
                n += 1
        return n

    cdef Py_ssize_t _count(self, object features):
        """Upper bound of the features in a valid {namespace: {name: value}}."""
        cdef Py_ssize_t n = 0
        for v in features.values():
            n += len(v)
        return n

    cdef bint _group(self, const _VWBuf* src, Py_ssize_t n, uint32_t* h, float* v, uint8_t* lin,
                     int32_t* off, bint copy) noexcept:
        """Group n encoded features by slot (no slot last), stably; fills off[0..S+1].

        Features already in slot order (the usual case: namespaces arrive grouped)
        are left where they are unless ``copy``; returns True when they were written
        to h, v, lin and False when the caller should read them from ``src``.
        """
        cdef int S = self._m.n_slots
        cdef Py_ssize_t i, p
        cdef int g, last = 0
        cdef bint ordered = True
        cdef int32_t cur[_VW_MAX_SLOTS + 2]
        for g in range(S + 2):
            off[g] = 0
        for i in range(n):
            g = src.slot[i] if src.slot[i] >= 0 else S
            off[g + 1] += 1
            if g < last:
                ordered = False
            last = g
        for g in range(S + 1):
            off[g + 1] += off[g]
        if ordered and not copy:
            return False
        if ordered:
            memcpy(h, src.h, n * sizeof(uint32_t))
            memcpy(v, src.v, n * sizeof(float))
            memcpy(lin, src.lin, n * sizeof(uint8_t))
            return True
        for g in range(S + 1):
            cur[g] = off[g]
        for i in range(n):
            g = src.slot[i] if src.slot[i] >= 0 else S
            p = cur[g]
            cur[g] += 1
            h[p] = src.h[i]
            v[p] = src.v[i]
            lin[p] = src.lin[i]
        return True

    def encode_actions(self, list actions):
        """Hash a list of action feature dicts into VWActions, or return the index of the first invalid one."""
        cdef Py_ssize_t n_actions = len(actions)
        cdef int S = self._m.n_slots
        cdef Py_ssize_t total = 0, k, n, cap = 0
        cdef _VWBuf buf
        for k in range(n_actions):
            if not PyDict_Check(actions[k]):
                return k
            try:
                n = self._count(actions[k])
            except Exception:
                return k
            total += n
            if n > cap:
                cap = n
        h = _vw_np.empty(total, dtype=_vw_np.uint32)
        v = _vw_np.empty(total, dtype=_vw_np.float32)
        lin = _vw_np.empty(total, dtype=_vw_np.uint8)
        base = _vw_np.zeros(n_actions + 1, dtype=_vw_np.int64)
        off = _vw_np.zeros(max(n_actions * (S + 2), 1), dtype=_vw_np.int32)
        slot = _vw_np.empty(max(cap, 1), dtype=_vw_np.int16)
        th = _vw_np.empty(max(cap, 1), dtype=_vw_np.uint32)
        tv = _vw_np.empty(max(cap, 1), dtype=_vw_np.float32)
        tl = _vw_np.empty(max(cap, 1), dtype=_vw_np.uint8)
        cdef uint32_t[::1] hv = h if total else th
        cdef float[::1] vv = v if total else tv
        cdef uint8_t[::1] lv = lin if total else tl
        cdef int64_t[::1] bv = base
        cdef int32_t[::1] ov = off
        cdef int16_t[::1] sv = slot
        cdef uint32_t[::1] thv = th
        cdef float[::1] tvv = tv
        cdef uint8_t[::1] tlv = tl
        buf.h = &thv[0]
        buf.v = &tvv[0]
        buf.lin = &tlv[0]
        buf.slot = &sv[0]
        buf.cap = cap
        cdef Py_ssize_t at = 0
        for k in range(n_actions):
            n = self._encode(actions[k], &buf)
            if n < 0:
                return k
            self._group(&buf, n, &hv[at], &vv[at], &lv[at], &ov[k * (S + 2)], True)
            at += n
            bv[k + 1] = at
        return VWActions(h[:at], v[:at], lin[:at], base, off, n_actions, self.layout)

    def bind(self, list columns):
        """Bind the columns of a numeric vector: VWBound, or the index of the first invalid column.

        A column is (namespace, name): the feature ``name`` with the vector's value,
        or (namespace, name, string): the string feature ``{name: string}`` (VW's
        ``name+string``) scaled by the vector's value, e.g. a one-hot category.
        """
        cdef Py_ssize_t n_cols = len(columns), k, n = 0
        cdef int S = self._m.n_slots
        cdef _VWNs ns
        cdef uint32_t hh
        slot = _vw_np.empty(max(n_cols, 1), dtype=_vw_np.int16)
        th = _vw_np.empty(max(n_cols, 1), dtype=_vw_np.uint32)
        tl = _vw_np.empty(max(n_cols, 1), dtype=_vw_np.uint8)
        tc = _vw_np.empty(max(n_cols, 1), dtype=_vw_np.int32)
        cdef int16_t[::1] sv = slot
        cdef uint32_t[::1] thv = th
        cdef uint8_t[::1] tlv = tl
        cdef int32_t[::1] tcv = tc
        for k in range(n_cols):
            col = columns[k]
            if (type(col) is not tuple or not 2 <= len(col) <= 3 or not PyUnicode_Check(col[1])
                    or (len(col) == 3 and not PyUnicode_Check(col[2]))):
                return k
            ns = self._ns(col[0])
            if ns is None:
                return k
            if ns.skip or (len(col[1]) > 0 and col[1][0] == "_"):
                continue
            if (self._string_hash(ns, col[1], col[2], &hh) if len(col) == 3 else
                    self._name_hash(ns, col[1], &hh)):
                return k
            thv[n] = hh
            tlv[n] = ns.lin
            sv[n] = ns.slot
            tcv[n] = <int32_t>k
            n += 1
        # Group by slot (stable), carrying the column index along.
        order = _vw_np.argsort(_vw_np.where(slot[:n] < 0, S, slot[:n]), kind="stable")
        off = _vw_np.zeros(S + 2, dtype=_vw_np.int32)
        counts = _vw_np.bincount(_vw_np.where(slot[:n] < 0, S, slot[:n]), minlength=S + 1)
        off[1:] = _vw_np.cumsum(counts)
        return VWBound(_vw_np.ascontiguousarray(th[:n][order]), _vw_np.ascontiguousarray(tl[:n][order]), off,
                       _vw_np.ascontiguousarray(tc[:n][order]), n_cols, self.layout)

    # -- scoring --

    cdef int _check_out(self, object out, Py_ssize_t n):
        """0 when ``out`` is a writeable contiguous float64 vector of length n."""
        if (type(out) is not cnp.ndarray or cnp.PyArray_TYPE(<cnp.ndarray>out) != cnp.NPY_DOUBLE
                or cnp.PyArray_NDIM(<cnp.ndarray>out) != 1 or cnp.PyArray_DIM(<cnp.ndarray>out, 0) != n
                or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>out)
                or not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out)):
            return -1
        return 0

    cdef object _new_out(self, Py_ssize_t n):
        cdef cnp.npy_intp dim = n
        return cnp.PyArray_EMPTY(1, &dim, cnp.NPY_DOUBLE, 0)

    def score_dict(self, object shared, VWActions actions not None, object out=None, bint negate=False):
        """Per-action costs for a shared feature dict.

        Returns the float64 costs (negated when ``negate``; ``out`` when given), or an int status: -1 invalid
        ``shared``, -2 unusable ``out``, -3 ``actions`` hashed for another layout.
        """
        cdef Py_ssize_t n_act = actions.n_actions
        cdef uint32_t sh_stack[_VW_STACK]
        cdef float sv_stack[_VW_STACK]
        cdef uint8_t sl_stack[_VW_STACK]
        cdef int16_t ss_stack[_VW_STACK]
        cdef uint32_t gh_stack[_VW_STACK]
        cdef float gv_stack[_VW_STACK]
        cdef uint8_t gl_stack[_VW_STACK]
        cdef int32_t off[_VW_MAX_SLOTS + 2]
        cdef _VWBuf buf
        cdef _VWBlk blk
        cdef Py_ssize_t n, cap
        cdef void* heap = NULL
        cdef double* op
        if actions.layout is not self.layout and actions.layout != self.layout:
            return -3
        if out is None:
            out = self._new_out(n_act)
        elif self._check_out(out, n_act):
            return -2
        op = <double*>cnp.PyArray_DATA(<cnp.ndarray>out)
        buf.h, buf.v, buf.lin, buf.slot, buf.cap = sh_stack, sv_stack, sl_stack, ss_stack, _VW_STACK
        cdef uint32_t* gh = gh_stack
        cdef float* gv = gv_stack
        cdef uint8_t* gl = gl_stack
        n = self._encode(shared, &buf)
        if n == -2:
            return -1
        if n == -1:
            try:
                cap = self._count(shared)
            except Exception:
                return -1
            heap = malloc(cap * (2 * sizeof(uint32_t) + 2 * sizeof(float) + 2 * sizeof(uint8_t) + sizeof(int16_t)))
            if heap == NULL:
                raise MemoryError()
            buf.h = <uint32_t*>heap
            gh = buf.h + cap
            buf.v = <float*>(gh + cap)
            gv = buf.v + cap
            buf.slot = <int16_t*>(gv + cap)
            buf.lin = <uint8_t*>(buf.slot + cap)
            gl = buf.lin + cap
            buf.cap = cap
            try:
                n = self._encode(shared, &buf)
            except BaseException:
                free(heap)
                raise
            if n < 0:
                free(heap)
                return -1
        if self._group(&buf, n, gh, gv, gl, off, False):
            blk.h, blk.v, blk.lin = gh, gv, gl
        else:
            blk.h, blk.v, blk.lin = buf.h, buf.v, buf.lin
        blk.off = off
        _vw_dispatch(&self._m, self.sparse, &self._wd, &self._ws, &blk, actions, -1.0 if negate else 1.0, op,
                     _vw_release(&self._m, n_act, n))
        if heap != NULL:
            free(heap)
        return out

    def score_vector(self, object x, VWBound bound not None, VWActions actions not None, object out=None,
                     bint negate=False):
        """Per-action costs for a bound shared vector ``x`` (float64, one entry per bound column).

        A NaN entry is a missing value: the feature is absent, as a zero entry is
        (adding the zero terms leaves a float32 sum's bits unchanged, so this is
        exactly scoring without the feature). Returns the float64 costs (negated
        when ``negate``; ``out`` when given), or an int status: k >= 0 column k is
        infinite or beyond float32, -2 unusable ``out``, -3 ``actions`` or ``bound``
        hashed for another layout, -4 ``x`` is not a float64 vector of the bound length.
        """
        cdef Py_ssize_t n_act = actions.n_actions
        cdef Py_ssize_t n = bound._n, k, bad = -1, nx
        cdef float vstack[_VW_STACK]
        cdef float* vals = vstack
        cdef float xf
        cdef const double* xp
        cdef double* op
        cdef _VWBlk blk
        if (actions.layout is not self.layout and actions.layout != self.layout) or \
                (bound.layout is not self.layout and bound.layout != self.layout):
            return -3
        if (type(x) is not cnp.ndarray or cnp.PyArray_TYPE(<cnp.ndarray>x) != cnp.NPY_DOUBLE
                or cnp.PyArray_NDIM(<cnp.ndarray>x) != 1 or cnp.PyArray_DIM(<cnp.ndarray>x, 0) != bound.n_columns
                or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>x)):
            return -4
        nx = bound.n_columns
        xp = <const double*>cnp.PyArray_DATA(<cnp.ndarray>x)
        if out is None:
            out = self._new_out(n_act)
        elif self._check_out(out, n_act):
            return -2
        op = <double*>cnp.PyArray_DATA(<cnp.ndarray>out)
        if n > _VW_STACK:
            vals = <float*>malloc(n * sizeof(float))
            if vals == NULL:
                raise MemoryError()
        for k in range(nx):
            xf = <float>xp[k]
            if xf > FLT_MAX or xf < -FLT_MAX:  # NaN passes both: it is a missing value
                bad = k
                break
        if bad < 0:
            for k in range(n):
                xf = <float>xp[bound._cols[k]]
                vals[k] = xf if xf == xf else 0.0
            blk.h, blk.v, blk.lin, blk.off = bound._h, vals, bound._lin, bound._off
            _vw_dispatch(&self._m, self.sparse, &self._wd, &self._ws, &blk, actions, -1.0 if negate else 1.0, op,
                         _vw_release(&self._m, n_act, n))
        if vals != vstack:
            free(vals)
        if bad >= 0:
            return bad
        return out
