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
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from libc.stdint cimport int32_t, uint8_t
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


@cython.final
cdef class DictVectorizer:
    """The fields of a FeatureSchema, per source, as the compiled fast path reads them.

    Built by ``nba.schema`` from its plans: for each field its key, kind, column,
    the value of a missing one, NaN allowed or not, bounds and clipping, and for a
    categorical its {category: column} map, its column when missing (or -1) and
    when unknown (-1 all zeros, the "other" column, or -2: the slow path raises).
    """

    cdef tuple _keys
    cdef tuple _cmaps
    cdef int32_t* _kind
    cdef int32_t* _col
    cdef int32_t* _miss_col
    cdef int32_t* _unknown_col
    cdef uint8_t* _nan_ok
    cdef uint8_t* _clip
    cdef uint8_t* _context
    cdef double* _default
    cdef double* _lo
    cdef double* _hi
    cdef Py_ssize_t _n
    cdef readonly Py_ssize_t n_columns

    def __cinit__(self):
        self._kind = NULL

    def __init__(self, list fields, Py_ssize_t n_columns):
        """``fields``: (key, kind "number"|"bool"|"category", column, missing value, nan_ok, lo, hi,
        clip, cmap or None, missing column, unknown column, from context)."""
        cdef Py_ssize_t i, n = len(fields)
        if self._kind != NULL:
            raise ValueError("DictVectorizer is already initialised")
        self._n = n
        self.n_columns = n_columns
        self._kind = <int32_t*>malloc(max(n, 1) * 4 * sizeof(int32_t))
        self._nan_ok = <uint8_t*>malloc(max(n, 1) * 3 * sizeof(uint8_t))
        self._default = <double*>malloc(max(n, 1) * 3 * sizeof(double))
        if self._kind == NULL or self._nan_ok == NULL or self._default == NULL:
            raise MemoryError()
        self._col = self._kind + max(n, 1)
        self._miss_col = self._col + max(n, 1)
        self._unknown_col = self._miss_col + max(n, 1)
        self._clip = self._nan_ok + max(n, 1)
        self._context = self._clip + max(n, 1)
        self._lo = self._default + max(n, 1)
        self._hi = self._lo + max(n, 1)
        keys = []
        cmaps = []
        for i in range(n):
            key, kind, col, missing, nan_ok, lo, hi, clip, cmap, miss_col, unknown_col, ctx = fields[i]
            if type(key) is not str:
                raise ValueError("field keys must be str")
            if not (0 <= col < n_columns):
                raise ValueError("field column out of range")
            self._kind[i] = {"number": _VF_NUMBER, "bool": _VF_BOOL, "category": _VF_CATEGORY}[kind]
            if self._kind[i] == _VF_CATEGORY:
                if type(cmap) is not dict:
                    raise ValueError("a category field needs a dict of columns")
                for c in cmap.values():
                    if not (0 <= c < n_columns):
                        raise ValueError("category column out of range")
                if not (-1 <= miss_col < n_columns) or not (-2 <= unknown_col < n_columns):
                    raise ValueError("missing/unknown column out of range")
            self._col[i] = col
            self._miss_col[i] = miss_col
            self._unknown_col[i] = unknown_col
            self._default[i] = missing
            self._nan_ok[i] = nan_ok
            self._lo[i] = lo
            self._hi[i] = hi
            self._clip[i] = clip
            self._context[i] = ctx
            keys.append(key)
            cmaps.append(cmap)
        self._keys = tuple(keys)
        self._cmaps = tuple(cmaps)

    def __dealloc__(self):
        free(self._kind)
        free(self._nan_ok)
        free(self._default)

    def vectorize(self, object profile, object context, cnp.ndarray out):
        """Write the vector of ``profile`` and ``context`` (dicts, Structs, Mappings or None)
        into ``out``; True when done, False when the input needs nba.schema's validating
        path (``out`` is then partly written)."""
        cdef Py_ssize_t i
        cdef int kind
        cdef PyObject* v
        cdef object obj, c
        cdef double d
        cdef double* o
        cdef object held
        cdef int sk
        cdef int pk = _source_kind(profile)
        cdef int ck = _source_kind(context)
        if pk < 0 or ck < 0:
            return False
        if (cnp.PyArray_TYPE(out) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(out) != 1
                or not cnp.PyArray_IS_C_CONTIGUOUS(out) or not cnp.PyArray_ISWRITEABLE(out)
                or cnp.PyArray_DIM(out, 0) != self.n_columns):
            return False
        o = <double*>cnp.PyArray_DATA(out)
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
            elif sk == _SRC_NONE:
                v = NULL
            else:
                try:
                    if sk == _SRC_ATTR:
                        held = getattr(obj, self._keys[i], _ABSENT)
                    else:
                        held = obj.get(self._keys[i], _ABSENT)
                except Exception:
                    return False  # the validating path reads it again and raises what it raises
                v = NULL if held is _ABSENT or held is _UNSET else <PyObject*>held
            kind = self._kind[i]
            if v == NULL or <object>v is None:
                if kind == _VF_CATEGORY:
                    if self._miss_col[i] >= 0:
                        o[self._miss_col[i]] = 1.0
                else:
                    o[self._col[i]] = self._default[i]
                continue
            if kind == _VF_CATEGORY:
                if type(<object>v) is not str and type(<object>v) is not int and type(<object>v) is not float:
                    return False
                c = self._cmaps[i]
                v2 = PyDict_GetItem(c, <object>v)
                if v2 != NULL:
                    o[<Py_ssize_t><object>v2] = 1.0
                elif type(<object>v) is float or self._unknown_col[i] == -2:
                    return False  # NaN, an unknown float, or unknown="error": the slow path says which
                elif type(<object>v) is str and _has_surrogate(<object>v):
                    return False  # an unknown category is logged as given: the slow path refuses one UTF-8 cannot write
                elif self._unknown_col[i] >= 0:
                    o[self._unknown_col[i]] = 1.0
                continue
            if type(<object>v) is float:
                d = PyFloat_AS_DOUBLE(<object>v)
            elif type(<object>v) is int:
                try:
                    d = <double>(<object>v)
                except OverflowError:
                    return False
            elif type(<object>v) is bool and kind == _VF_BOOL:
                d = 1.0 if <object>v is True else 0.0
            else:
                return False
            if isnan(d):
                if not self._nan_ok[i]:
                    return False
            elif kind == _VF_BOOL:
                if d != 0.0 and d != 1.0:
                    return False
            else:
                if isinf(d):
                    return False
                if d < self._lo[i] or d > self._hi[i]:
                    if not self._clip[i]:
                        return False
                    d = self._lo[i] if d < self._lo[i] else self._hi[i]
            o[self._col[i]] = d
        return True
