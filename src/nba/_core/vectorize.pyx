# Profiles and contexts to model vectors.
#
# Turning the profile and context into the model's float64 vector is the
# largest share of Python work in a decision. This is nba.schema's fast path,
# compiled: it reads dicts, msgspec Structs and other Mappings, exact floats,
# ints, bools and known categories, and hands anything else (a wrong type, NaN
# where it is not allowed, infinity, a bound without clip, an unknown category
# under "error" or one holding a lone surrogate, vectors and other objects) back
# to nba.schema, which validates and words the error. It never raises for bad
# input; it only says "not mine". A key is read as nba.schema reads it: a dict
# by lookup, a Struct by attribute, a Mapping by ``.get`` (a defaultdict does not
# grow); None and msgspec.UNSET are missing.

cimport cython
cimport numpy as cnp
from cpython.dict cimport PyDict_GetItem
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset
from libc.stdint cimport int32_t, uint8_t, uint64_t
from cpython.object cimport PyObject
from cpython.float cimport PyFloat_AS_DOUBLE
from libc.math cimport isnan, isinf, NAN

from collections.abc import Mapping as _Mapping

import msgspec

from cpython.unicode cimport (PyUnicode_1BYTE_KIND, PyUnicode_DATA, PyUnicode_GET_LENGTH, PyUnicode_KIND,
                              PyUnicode_READ)

cdef extern from "Python.h":
    # A macro over a str's compact representation (PEP 393) that Cython does not declare.
    bint PyUnicode_IS_ASCII(object o)


cdef inline bint _has_surrogate(object s):
    """True if the str holds a code point in U+D800..U+DFFF, which UTF-8 cannot encode.

    ASCII and Latin-1 strings cannot hold one (the flag and kind tests); others are
    scanned, which is what the UTF-8 encoder would do anyway.
    """
    if PyUnicode_IS_ASCII(s):
        return False
    cdef int kind = PyUnicode_KIND(s)
    if kind == PyUnicode_1BYTE_KIND:
        return False
    cdef void* data = PyUnicode_DATA(s)
    cdef Py_ssize_t i
    cdef Py_UCS4 c
    for i in range(PyUnicode_GET_LENGTH(s)):
        c = PyUnicode_READ(kind, data, i)
        if 0xD800 <= c <= 0xDFFF:
            return True
    return False

cdef object _STRUCT = msgspec.Struct
cdef object _UNSET = msgspec.UNSET
cdef object _ABSENT = object()

# How a source is read: nothing there, a dict, a Struct's attributes, a Mapping's .get.
cdef enum:
    _SRC_NONE = 0
    _SRC_DICT = 1
    _SRC_ATTR = 2
    _SRC_GET = 3


cdef inline int _source_kind(object obj):
    """How ``obj`` is read, or -1 for an input only nba.schema's validating path reads."""
    if obj is None:
        return _SRC_NONE
    if type(obj) is dict:
        return _SRC_DICT
    if isinstance(obj, _STRUCT):
        return _SRC_ATTR
    if isinstance(obj, _Mapping):
        return _SRC_GET
    return -1


cdef enum:
    _VF_NUMBER = 0
    _VF_BOOL = 1
    _VF_CATEGORY = 2
    _VF_CODE = 3      # a category as its index in the categories (LightGBM's native categorical code)

# What a call saw of a field, counted per field (FeatureSchema.counters): bits of an event.
cdef enum:
    _EV_MISSING = 1    # absent, None, UNSET, or NaN where NaN means missing
    _EV_DEFAULTED = 2  # missing, and the declared default was written
    _EV_UNKNOWN = 4    # a category outside the declared ones
    _EV_CLIPPED = 8    # a number clipped to its bounds
    _N_COUNTS = 4      # counts per field: one per event bit, in bit order
    _STACK_EVENTS = 256

# The same bits for nba.schema's validating path: defined once, here.
EVENT_MISSING, EVENT_DEFAULTED, EVENT_UNKNOWN, EVENT_CLIPPED = _EV_MISSING, _EV_DEFAULTED, _EV_UNKNOWN, _EV_CLIPPED


@cython.final
cdef class DictVectorizer:
    """The fields of a FeatureSchema, per source, as the compiled fast path reads them.

    Built by ``nba.schema`` from its plans: for each field its key, kind, column,
    the value of a missing one, NaN allowed or not, bounds and clipping, and for a
    categorical its {category: column} map (for a code field {category: code}), its
    column when missing (or -1) and when unknown (-1 all zeros / NaN, the "other"
    column, or -2: the slow path raises), then whether it comes from the context and
    whether a missing value must be refused (strict mode: declined).

    It also keeps the per-field counts of what successful calls saw (missing,
    defaulted, unknown, clipped) and the number of calls; a call that declines
    counts nothing, so the validating path, which finishes it, counts it once
    (``record``).
    """

    cdef tuple _keys
    cdef tuple _cmaps
    cdef tuple _extras          # per source (profile, context): extra keys, when strict about keys; else None
    cdef int32_t* _kind
    cdef int32_t* _col
    cdef int32_t* _miss_col
    cdef int32_t* _unknown_col
    cdef uint8_t* _nan_ok
    cdef uint8_t* _clip
    cdef uint8_t* _context
    cdef uint8_t* _strict_miss
    cdef double* _default
    cdef double* _lo
    cdef double* _hi
    cdef uint64_t* _counts      # _N_COUNTS per field
    cdef uint64_t _calls
    cdef Py_ssize_t _n
    cdef readonly Py_ssize_t n_columns

    def __cinit__(self):
        self._kind = NULL

    def __init__(self, list fields, Py_ssize_t n_columns, object strict_keys=None):
        """``fields``: (key, kind "number"|"bool"|"category"|"code", column, missing value, nan_ok, lo, hi,
        clip, cmap or None, missing column, unknown column, from context, refuse missing).
        ``strict_keys``: None, or (profile extras, context extras): the keys beyond the fields a dict or
        Mapping source may hold; one it holds beyond those sends the call to the validating path."""
        cdef Py_ssize_t i, n = len(fields)
        if self._kind != NULL:
            raise ValueError("DictVectorizer is already initialised")
        self._n = n
        self.n_columns = n_columns
        self._kind = <int32_t*>malloc(max(n, 1) * 4 * sizeof(int32_t))
        self._nan_ok = <uint8_t*>malloc(max(n, 1) * 4 * sizeof(uint8_t))
        self._default = <double*>malloc(max(n, 1) * 3 * sizeof(double))
        self._counts = <uint64_t*>calloc(max(n, 1) * _N_COUNTS, sizeof(uint64_t))
        if self._kind == NULL or self._nan_ok == NULL or self._default == NULL or self._counts == NULL:
            raise MemoryError()
        self._col = self._kind + max(n, 1)
        self._miss_col = self._col + max(n, 1)
        self._unknown_col = self._miss_col + max(n, 1)
        self._clip = self._nan_ok + max(n, 1)
        self._context = self._clip + max(n, 1)
        self._strict_miss = self._context + max(n, 1)
        self._lo = self._default + max(n, 1)
        self._hi = self._lo + max(n, 1)
        keys = []
        cmaps = []
        for i in range(n):
            key, kind, col, missing, nan_ok, lo, hi, clip, cmap, miss_col, unknown_col, ctx, strict = fields[i]
            if type(key) is not str:
                raise ValueError("field keys must be str")
            if not (0 <= col < n_columns):
                raise ValueError("field column out of range")
            self._kind[i] = {"number": _VF_NUMBER, "bool": _VF_BOOL, "category": _VF_CATEGORY,
                             "code": _VF_CODE}[kind]
            if self._kind[i] == _VF_CATEGORY or self._kind[i] == _VF_CODE:
                if type(cmap) is not dict:
                    raise ValueError("a category field needs a dict of columns")
                for c in cmap.values():
                    if self._kind[i] == _VF_CODE:
                        if type(c) is not float:
                            raise ValueError("a code field maps categories to float codes")
                    elif not (0 <= c < n_columns):
                        raise ValueError("category column out of range")
                if not (-1 <= miss_col < n_columns) or not (-2 <= unknown_col < n_columns):
                    raise ValueError("missing/unknown column out of range")
                if self._kind[i] == _VF_CODE and unknown_col >= 0:
                    raise ValueError("a code field has no 'other' column")
            self._col[i] = col
            self._miss_col[i] = miss_col
            self._unknown_col[i] = unknown_col
            self._default[i] = missing
            self._nan_ok[i] = nan_ok
            self._lo[i] = lo
            self._hi[i] = hi
            self._clip[i] = clip
            self._context[i] = ctx
            self._strict_miss[i] = strict
            keys.append(key)
            cmaps.append(cmap)
        self._keys = tuple(keys)
        self._cmaps = tuple(cmaps)
        if strict_keys is not None:
            extras_p, extras_c = strict_keys
            if not all(type(k) is str for k in extras_p) or not all(type(k) is str for k in extras_c):
                raise ValueError("extra keys must be str")
            self._extras = (tuple(extras_p), tuple(extras_c))
        else:
            self._extras = None

    def __dealloc__(self):
        free(self._kind)
        free(self._nan_ok)
        free(self._default)
        free(self._counts)

    def vectorize(self, object profile, object context, cnp.ndarray out):
        """Write the vector of ``profile`` and ``context`` (dicts, Structs, Mappings or None)
        into ``out``; True when done (and counted), False when the input needs nba.schema's
        validating path (``out`` is then partly written, and nothing is counted)."""
        cdef int pk = _source_kind(profile)
        cdef int ck = _source_kind(context)
        cdef int32_t stack_ev[_STACK_EVENTS]
        cdef int32_t* ev
        cdef int done
        if pk < 0 or ck < 0:
            return False
        if (cnp.PyArray_TYPE(out) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(out) != 1
                or not cnp.PyArray_IS_C_CONTIGUOUS(out) or not cnp.PyArray_ISWRITEABLE(out)
                or cnp.PyArray_DIM(out, 0) != self.n_columns):
            return False
        if self._n <= _STACK_EVENTS:
            return self._fill(profile, context, pk, ck, <double*>cnp.PyArray_DATA(out), stack_ev) == 1
        ev = <int32_t*>malloc(self._n * sizeof(int32_t))  # a call records at most one event per field
        if ev == NULL:
            raise MemoryError()
        try:
            done = self._fill(profile, context, pk, ck, <double*>cnp.PyArray_DATA(out), ev)
        finally:
            free(ev)
        return done == 1

    cdef int _fill(self, object profile, object context, int pk, int ck, double* o, int32_t* ev) except -1:
        """``vectorize`` into ``o``, recording events in ``ev`` and counting them on success: 1 done, 0 declined."""
        cdef Py_ssize_t i, k
        cdef int kind
        cdef PyObject* v
        cdef object obj, c
        cdef double d
        cdef object held
        cdef int sk
        cdef bint keys = self._extras is not None
        cdef Py_ssize_t found_p = 0, found_c = 0
        cdef Py_ssize_t n_ev = 0
        memset(o, 0, self.n_columns * sizeof(double))
        for i in range(self._n):
            if self._context[i]:
                obj = context
                sk = ck
            else:
                obj = profile
                sk = pk
            if sk == _SRC_DICT:
                v = PyDict_GetItem(obj, self._keys[i])
                if keys and v != NULL:
                    if self._context[i]:
                        found_c += 1
                    else:
                        found_p += 1
            elif sk == _SRC_NONE:
                v = NULL
            else:
                try:
                    if sk == _SRC_ATTR:
                        held = getattr(obj, self._keys[i], _ABSENT)
                    else:
                        held = obj.get(self._keys[i], _ABSENT)
                except Exception:
                    return 0  # the validating path reads it again and raises what it raises
                if keys and held is not _ABSENT:
                    if self._context[i]:
                        found_c += 1
                    else:
                        found_p += 1
                v = NULL if held is _ABSENT or held is _UNSET else <PyObject*>held
            kind = self._kind[i]
            if v == NULL or <object>v is None:
                if self._strict_miss[i]:
                    return 0  # strict mode: the validating path says which feature is missing
                if kind == _VF_CATEGORY:
                    if self._miss_col[i] >= 0:
                        o[self._miss_col[i]] = 1.0
                        ev[n_ev] = i << 4 | _EV_MISSING | _EV_DEFAULTED
                    else:
                        ev[n_ev] = i << 4 | _EV_MISSING
                else:
                    o[self._col[i]] = self._default[i]
                    if kind == _VF_CODE:
                        ev[n_ev] = i << 4 | (_EV_MISSING | _EV_DEFAULTED if self._miss_col[i] >= 0 else _EV_MISSING)
                    else:
                        ev[n_ev] = i << 4 | (_EV_MISSING if self._nan_ok[i] else _EV_MISSING | _EV_DEFAULTED)
                n_ev += 1
                continue
            if kind == _VF_CATEGORY or kind == _VF_CODE:
                if type(<object>v) is not str and type(<object>v) is not int and type(<object>v) is not float:
                    return 0
                c = self._cmaps[i]
                v2 = PyDict_GetItem(c, <object>v)
                if v2 != NULL:
                    if kind == _VF_CODE:
                        o[self._col[i]] = PyFloat_AS_DOUBLE(<object>v2)
                    else:
                        o[<Py_ssize_t><object>v2] = 1.0
                    continue
                if type(<object>v) is float or self._unknown_col[i] == -2:
                    return 0  # NaN, an unknown float, or unknown="error" (or strict): the slow path says which
                if type(<object>v) is str and _has_surrogate(<object>v):
                    return 0  # an unknown category is logged as given: the slow path refuses one UTF-8 cannot write
                if kind == _VF_CODE:
                    o[self._col[i]] = NAN
                elif self._unknown_col[i] >= 0:
                    o[self._unknown_col[i]] = 1.0
                ev[n_ev] = i << 4 | _EV_UNKNOWN
                n_ev += 1
                continue
            if type(<object>v) is float:
                d = PyFloat_AS_DOUBLE(<object>v)
            elif type(<object>v) is int:
                try:
                    d = <double>(<object>v)
                except OverflowError:
                    return 0
            elif type(<object>v) is bool and kind == _VF_BOOL:
                d = 1.0 if <object>v is True else 0.0
            else:
                return 0
            if isnan(d):
                if not self._nan_ok[i]:
                    return 0
                ev[n_ev] = i << 4 | _EV_MISSING
                n_ev += 1
            elif kind == _VF_BOOL:
                if d != 0.0 and d != 1.0:
                    return 0
            else:
                if isinf(d):
                    return 0
                if d < self._lo[i] or d > self._hi[i]:
                    if not self._clip[i]:
                        return 0
                    d = self._lo[i] if d < self._lo[i] else self._hi[i]
                    ev[n_ev] = i << 4 | _EV_CLIPPED
                    n_ev += 1
            o[self._col[i]] = d
        if self._extras is not None:
            if profile is context:  # one input for both sources: it may hold either's keys
                if not self._only_declared(profile, pk, found_p + found_c, self._extras[0] + self._extras[1]):
                    return 0
            elif (not self._only_declared(profile, pk, found_p, self._extras[0])
                    or not self._only_declared(context, ck, found_c, self._extras[1])):
                return 0
        self._calls += 1
        for k in range(n_ev):
            self._commit(ev[k])
        return 1

    cdef inline void _commit(self, int32_t e) noexcept:
        cdef uint64_t* c = self._counts + (e >> 4) * _N_COUNTS
        if e & _EV_MISSING:
            c[0] += 1
        if e & _EV_DEFAULTED:
            c[1] += 1
        if e & _EV_UNKNOWN:
            c[2] += 1
        if e & _EV_CLIPPED:
            c[3] += 1

    cdef bint _only_declared(self, object obj, int sk, Py_ssize_t found, tuple extras) except -1:
        """True when a dict or Mapping source holds no key beyond its fields and ``extras``."""
        cdef Py_ssize_t n
        if sk != _SRC_DICT and sk != _SRC_GET:
            return True  # nothing, or a Struct: its fields are its type's
        try:
            n = len(obj)
        except Exception:
            return False
        if n <= found:
            return True
        for key in extras:
            if (PyDict_GetItem(obj, key) != NULL) if sk == _SRC_DICT else (key in obj):
                found += 1
        return n <= found

    def record(self, list events):
        """Count one call the validating path finished: ``events`` are (field index, event bits)."""
        cdef Py_ssize_t i
        cdef int32_t bits
        for i, bits in events:
            if not (0 <= i < self._n) or bits & ~15:
                raise ValueError("event out of range")
        self._calls += 1
        for i, bits in events:
            self._commit(<int32_t>(i << 4 | bits))

    def add(self, Py_ssize_t calls, const uint64_t[:, ::1] counts):
        """Count ``calls`` calls at once (a batch): ``counts[i]`` are field i's four counts."""
        cdef Py_ssize_t i, k
        if calls < 0 or counts.shape[0] != self._n or counts.shape[1] != _N_COUNTS:
            raise ValueError(f"expected ({self._n}, {_N_COUNTS}) counts and calls >= 0")
        self._calls += calls
        for i in range(self._n):
            for k in range(_N_COUNTS):
                self._counts[i * _N_COUNTS + k] += counts[i, k]

    def counts(self, bint reset=False):
        """(calls, [[missing, defaulted, unknown, clipped] per field]) since the start or the last reset."""
        cdef Py_ssize_t i, k
        rows = []
        for i in range(self._n):
            rows.append([self._counts[i * _N_COUNTS + k] for k in range(_N_COUNTS)])
        calls = self._calls
        if reset:
            memset(self._counts, 0, max(self._n, 1) * _N_COUNTS * sizeof(uint64_t))
            self._calls = 0
        return calls, rows
