# Experiment allocation kernels (GrowthBook-compatible bucketing).
#
# Strings are hashed as GrowthBook's SDKs hash them (hashing.pxd: FNV-1a over UTF-16
# code units), read in place from the str object.
#
# FNV-1a is a left fold, so hash(seed + value) continues from the state left by
# the seed: each experiment's salt is folded once, at construction.

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.unicode cimport PyUnicode_KIND, PyUnicode_DATA, PyUnicode_GET_LENGTH
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

from nba._core.hashing cimport FNV_OFFSET, fnv1a_decimal, fnv1a_str_multi, fnv1a_units

cdef enum:
    _GB_BUCKETS = 10000      # hash v2: n = (h % 10000) / 10000
    _GB_NS_BUCKETS = 1000    # hash v1 (namespaces, v1 experiments): n = (h % 1000) / 1000
    _MAX_EXPERIMENTS = 255   # one byte per experiment in an allocation code
    _MAX_STATES = _MAX_EXPERIMENTS + 2
    _HOLDOUT_BIT = 1         # out[0] of an allocation code: the unit is held out
    _FORCED_BIT = 2          # ... a forced variant applies (set by nba.experiments)

# The same numbers for nba.experiments, which builds the tables: defined once, here.
GB_BUCKETS = _GB_BUCKETS
GB_NS_BUCKETS = _GB_NS_BUCKETS
MAX_EXPERIMENTS = _MAX_EXPERIMENTS
HOLDOUT_BIT = _HOLDOUT_BIT
FORCED_BIT = _FORCED_BIT

cdef struct _StrRef:
    const void* data
    Py_ssize_t n
    int kind


cdef inline _StrRef _str_ref(str s):
    cdef _StrRef r
    r.data = PyUnicode_DATA(s)
    r.n = PyUnicode_GET_LENGTH(s)
    r.kind = PyUnicode_KIND(s)
    return r


cdef class ExperimentTable:
    """Precomputed bucket tables of a set of experiments, a holdout and their namespaces.

    Built by ``nba.experiments.Allocator``, which validates every array: variant
    tables hold ``variant index + 1`` per bucket (0: not enrolled): 10,000 hash-v2
    buckets, or for a hash-v1 experiment the first 1,000 entries. Namespace ranges
    are bucket intervals of the hash-v1 namespace hash. ``assign`` returns one byte
    per experiment plus a leading holdout byte.

    Hash v1 is ``fnv1a32(unit + seed) % 1000``: the unit comes first, so it continues
    the unit's own state (the one namespaces continue) over the seed's code units,
    stored beside the namespace ids in ``ns_units`` at ``v1_start``/``v1_len``.
    """

    cdef readonly Py_ssize_t n_experiments
    cdef const uint32_t[::1] _salt_state      # (n_exp,) FNV state after the salt's code units
    cdef const uint8_t[:, ::1] _table         # (n_exp, 10000) variant index + 1, 0 = out
    cdef const int32_t[::1] _ns_start         # (n_exp,) offset into _ns_units, -1: no namespace
    cdef const int32_t[::1] _ns_len           # (n_exp,) code units of "__" + namespace id
    cdef const int32_t[::1] _ns_lo            # (n_exp,) namespace buckets [lo, hi) over 0..999
    cdef const int32_t[::1] _ns_hi
    cdef const int32_t[::1] _v1_start         # (n_exp,) offset of the seed in _ns_units, -1: hash v2
    cdef const int32_t[::1] _v1_len           # (n_exp,) code units of the v1 seed
    cdef const uint16_t[::1] _ns_units        # concatenated "__" + namespace ids and v1 seeds
    cdef int32_t _holdout_buckets             # buckets [0, k) are held out; 0: no holdout
    cdef uint32_t _init[_MAX_STATES]          # start states: holdout salt, empty (namespaces), salts

    def __init__(
        self,
        const uint32_t[::1] salt_state,
        const uint8_t[:, ::1] table,
        const int32_t[::1] ns_start,
        const int32_t[::1] ns_len,
        const int32_t[::1] ns_lo,
        const int32_t[::1] ns_hi,
        const uint16_t[::1] ns_units,
        uint32_t holdout_state,
        int32_t holdout_buckets,
        const int32_t[::1] v1_start,
        const int32_t[::1] v1_len,
    ):
        cdef Py_ssize_t n = salt_state.shape[0]
        cdef Py_ssize_t e
        if n > _MAX_EXPERIMENTS:
            raise ValueError(f"salt_state: expected at most {_MAX_EXPERIMENTS} experiments, got {n}")
        if table.shape[0] != n or table.shape[1] != _GB_BUCKETS:
            raise ValueError(f"table: expected shape ({n}, {_GB_BUCKETS}), got ({table.shape[0]}, {table.shape[1]})")
        for name, arr in (("ns_start", ns_start), ("ns_len", ns_len), ("ns_lo", ns_lo), ("ns_hi", ns_hi),
                          ("v1_start", v1_start), ("v1_len", v1_len)):
            if arr.shape[0] != n:
                raise ValueError(f"{name}: expected {n} entries, got {arr.shape[0]}")
        for e in range(n):
            if ns_start[e] >= 0 and (ns_len[e] < 0 or ns_start[e] + ns_len[e] > ns_units.shape[0]):
                raise ValueError(f"experiment {e}: namespace units [{ns_start[e]}, +{ns_len[e]}) outside ns_units")
            if ns_start[e] >= 0 and not (0 <= ns_lo[e] <= ns_hi[e] <= _GB_NS_BUCKETS):
                raise ValueError(f"experiment {e}: namespace buckets [{ns_lo[e]}, {ns_hi[e]}) outside [0, {_GB_NS_BUCKETS}]")
            if v1_start[e] >= 0 and (v1_len[e] < 0 or v1_start[e] + v1_len[e] > ns_units.shape[0]):
                raise ValueError(f"experiment {e}: v1 seed units [{v1_start[e]}, +{v1_len[e]}) outside ns_units")
        if not 0 <= holdout_buckets <= _GB_BUCKETS:
            raise ValueError(f"holdout_buckets: expected 0..{_GB_BUCKETS}, got {holdout_buckets}")
        self.n_experiments = n
        self._salt_state = salt_state
        self._table = table
        self._ns_start = ns_start
        self._ns_len = ns_len
        self._ns_lo = ns_lo
        self._ns_hi = ns_hi
        self._ns_units = ns_units
        self._v1_start = v1_start
        self._v1_len = v1_len
        self._holdout_buckets = holdout_buckets
        self._init[0] = holdout_state
        self._init[1] = FNV_OFFSET
        for e in range(n):
            self._init[2 + e] = salt_state[e]

    cdef inline void _assign_one(self, _StrRef u, unsigned char* out) noexcept nogil:
        """Fill ``out[0]`` (1: held out) and ``out[1 + e]`` (variant index + 1 in experiment e, 0: none)."""
        cdef Py_ssize_t e
        cdef Py_ssize_t n_exp = self.n_experiments
        cdef uint32_t h[_MAX_STATES]
        cdef uint32_t hn
        cdef int32_t b
        cdef const uint16_t* ns_units = &self._ns_units[0] if self._ns_units.shape[0] > 0 else NULL
        out[0] = 0
        for e in range(n_exp):
            out[1 + e] = 0
        if u.n == 0:  # GrowthBook enrolls an empty id nowhere, not even in a holdout
            return
        # One pass over the unit continues every seed: h[0] the holdout's salt, h[1]
        # the empty seed (namespaces hash unit + "__" + id and v1 experiments unit +
        # seed: both continue it), h[2 + e] salt e (hash v2).
        memcpy(h, self._init, (2 + n_exp) * sizeof(uint32_t))
        fnv1a_str_multi(h, 2 + n_exp, u.data, u.n, u.kind)
        if self._holdout_buckets > 0 and <int32_t>(fnv1a_decimal(h[0]) % _GB_BUCKETS) < self._holdout_buckets:
            out[0] = _HOLDOUT_BIT
            return
        for e in range(n_exp):
            if self._ns_start[e] >= 0:
                hn = fnv1a_units(h[1], ns_units + self._ns_start[e], self._ns_len[e])
                b = <int32_t>(hn % _GB_NS_BUCKETS)
                if b < self._ns_lo[e] or b >= self._ns_hi[e]:
                    continue
            if self._v1_start[e] >= 0:
                hn = fnv1a_units(h[1], ns_units + self._v1_start[e], self._v1_len[e])
                out[1 + e] = self._table[e, hn % _GB_NS_BUCKETS]
            else:
                out[1 + e] = self._table[e, fnv1a_decimal(h[2 + e]) % _GB_BUCKETS]

    def assign(self, str unit):
        """Allocation code of one unit: ``bytes`` of 1 + n_experiments (holdout, then variant + 1).

        Keeps the GIL: the work (tens to hundreds of ns) is shorter than a GIL hand-off.
        """
        cdef object code = PyBytes_FromStringAndSize(NULL, 1 + self.n_experiments)
        self._assign_one(_str_ref(unit), <unsigned char*>PyBytes_AS_STRING(code))
        return code

    def assign_many(self, tuple units, uint8_t[:, ::1] out):
        """Allocate ``units`` (a tuple of str) into the rows of ``out`` (n, 1 + n_experiments).

        The tuple keeps every str alive while the GIL is released.
        """
        cdef Py_ssize_t n = len(units)
        cdef Py_ssize_t i
        cdef _StrRef* refs
        if out.shape[0] != n or out.shape[1] != 1 + self.n_experiments:
            raise ValueError(f"out: expected shape ({n}, {1 + self.n_experiments}), got ({out.shape[0]}, {out.shape[1]})")
        for i in range(n):
            if type(units[i]) is not str:
                raise TypeError(f"units[{i}]: expected str, got {type(units[i]).__name__}")
        refs = <_StrRef*>malloc(max(n, 1) * sizeof(_StrRef))
        if refs == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                refs[i] = _str_ref(<str>units[i])
            with nogil:
                for i in range(n):
                    self._assign_one(refs[i], &out[i, 0])
        finally:
            free(refs)
