# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Profile feature updates in one compiled call per event (issue 11: ``track`` at >= 200,000 events/s).

``Features`` compiles its definitions once into ``Step`` objects (a kind code, the numbers of the
definition, the property name, the ``where`` items, and the definition's Python updater), grouped
by event type. ``track`` applies every step of an event to the SAME Python-list states the
updaters (``Definition._updater``) change, with the same arithmetic in the same order, so
values, merges, snapshots and stores see bit-identical states.

The state IS Python objects (lists of Python numbers, a set of str), so this module handles
objects by design; what it saves is a Python call, frame and attribute loads per definition.
Each step declines to its Python updater on anything unusual (a state entry of another type or
length, properties that are not a dict, a weight that is a number subclass, an int beyond 64
bits, a ``LastValue`` tie at equal ts, which the updater's msgpack rule settles), so the
updater stays the one place that words such cases.
"""

from cpython.dict cimport PyDict_GetItemWithError
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_FromDouble
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_FromLongLong
from cpython.object cimport Py_NE, PyObject, PyObject_RichCompareBool
from cpython.set cimport PySet_Add
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.math cimport copysign, exp, floor, fmod, isfinite


cdef extern from "Python.h":
    bint PyFloat_CheckExact(object o)
    bint PyLong_CheckExact(object o)
    bint PyUnicode_CheckExact(object o)
    bint PyList_CheckExact(object o)
    bint PyDict_CheckExact(object o)
    bint PySet_CheckExact(object o)
    bint PyTuple_CheckExact(object o)
    long long PyLong_AsLongLongAndOverflow(object o, int* overflow) except? -1


# The kinds of step (``Step.kind``); nba.profiles.features names them with the same numbers.
cdef enum:
    PYTHON = 0        # the definition's Python updater
    COUNT_TOTAL = 1
    COUNT_WINDOW = 2
    SUM_TOTAL = 3
    SUM_WINDOW = 4
    DECAYED = 5
    RECENCY = 6
    LAST_VALUE = 7
    CHANNELS = 8
    FIRST_SEEN = 9

KINDS = {
    "python": PYTHON, "count_total": COUNT_TOTAL, "count_window": COUNT_WINDOW, "sum_total": SUM_TOTAL,
    "sum_window": SUM_WINDOW, "decayed": DECAYED, "recency": RECENCY, "last_value": LAST_VALUE,
    "channels": CHANNELS, "first_seen": FIRST_SEEN,
}

# What a step returns to its caller.
cdef enum:
    DONE = 0
    DECLINE = 1       # run the Python updater instead (nothing was changed)


cdef class Step:
    """One definition's update, compiled: see the module docstring. Built by ``Features``."""

    cdef readonly Py_ssize_t index     # the definition's position in the state
    cdef readonly int kind
    cdef readonly Py_ssize_t n         # tiles of a window (0: all-time)
    cdef readonly double bucket        # a window's tile width, seconds
    cdef readonly double k             # a decay rate: log(2) / half_life
    cdef readonly object prop          # the property read (str), or None
    cdef readonly tuple where_keys     # ``where``: keys, values, and whether each value is a bool
    cdef readonly tuple where_values
    cdef readonly tuple where_bools
    cdef readonly object zero          # a window's empty tile (0 or 0.0)
    cdef readonly object update        # the Python updater: update(state_entry, event)
    cdef bint reads_props

    def __init__(self, Py_ssize_t index, int kind, object update, *, Py_ssize_t n=0, double bucket=1.0,
                 double k=0.0, object prop=None, tuple where=(), object zero=0):
        if kind < PYTHON or kind > FIRST_SEEN:
            raise ValueError(f"Step: kind must be one of {sorted(KINDS.values())}, got {kind}")
        if (kind == COUNT_WINDOW or kind == SUM_WINDOW) and (n < 1 or not bucket > 0.0):
            raise ValueError(f"Step: a window needs n >= 1 tiles and a bucket > 0, got n={n}, bucket={bucket}")
        if prop is not None and not PyUnicode_CheckExact(prop):
            raise ValueError(f"Step: prop must be a str or None, got {prop!r}")
        if (kind == SUM_TOTAL or kind == SUM_WINDOW or kind == LAST_VALUE) and prop is None:
            raise ValueError("Step: a sum or a last value reads a prop; pass prop")
        for item in where:
            if not PyTuple_CheckExact(item) or len(item) != 3 or not PyUnicode_CheckExact(item[0]):
                raise ValueError(f"Step: where items must be (key: str, value, is_bool) tuples, got {item!r}")
        self.index = index
        self.kind = kind
        self.n = n
        self.bucket = bucket
        self.k = k
        self.prop = prop
        self.where_keys = tuple([item[0] for item in where])
        self.where_values = tuple([item[1] for item in where])
        self.where_bools = tuple([bool(item[2]) for item in where])
        self.zero = zero
        self.update = update
        self.reads_props = prop is not None or len(where) > 0

    def __repr__(self):
        return f"Step(index={self.index}, kind={self.kind}, prop={self.prop!r})"


cdef inline double _floordiv(double a, double b) noexcept nogil:
    """``a // b`` as Python computes it for floats (floatobject.c's _float_div_mod), so tiles match bit for bit."""
    cdef double mod = fmod(a, b)
    cdef double div = (a - mod) / b
    cdef double fl
    if mod:
        if (b < 0) != (mod < 0):
            mod += b
            div -= 1.0
    if div:
        fl = floor(div)
        if div - fl > 0.5:
            fl += 1.0
    else:
        fl = copysign(0.0, a / b)
    return fl


cdef int _matches(dict props, Step step) except -1:
    """``features._matches``: every ``where`` property present, not None, ``==`` and bool exactly when the value is."""
    cdef Py_ssize_t i
    cdef PyObject* x
    for i in range(PyTuple_GET_SIZE(step.where_keys)):
        x = PyDict_GetItemWithError(props, <object>PyTuple_GET_ITEM(step.where_keys, i))
        if x == NULL or <object>x is None:
            return 0
        if PyObject_RichCompareBool(<object>x, <object>PyTuple_GET_ITEM(step.where_values, i), Py_NE):
            return 0
        if (<object>x is True or <object>x is False) != (<object>PyTuple_GET_ITEM(step.where_bools, i) is True):
            return 0
    return 1


cdef int _weight(PyObject* x, double* w) except -2:
    """``features._weight``: 1 and ``w`` set for a finite float or an int; 0 for what adds nothing (missing,
    None, a bool, NaN, infinite, a str or container); -1 for anything else (a number subclass: decline)."""
    cdef int overflow = 0
    cdef long long v
    if x == NULL:
        return 0
    o = <object>x
    if PyFloat_CheckExact(o):
        w[0] = PyFloat_AS_DOUBLE(o)
        return 1 if isfinite(w[0]) else 0
    if PyLong_CheckExact(o):
        v = PyLong_AsLongLongAndOverflow(o, &overflow)
        if overflow:
            return -1  # float(x) may raise OverflowError: the updater's to raise
        w[0] = <double>v  # round to nearest, as float(int) does
        return 1
    if o is None or o is True or o is False or PyUnicode_CheckExact(o) or PyList_CheckExact(o) or PyDict_CheckExact(o):
        return 0
    return -1


cdef inline bint _float_entry(list s, Py_ssize_t j):
    return PyFloat_CheckExact(<object>PyList_GET_ITEM(s, j))


cdef int _window(list s, Step step, double ts, object add) except -1:
    """Add ``add`` (the Python number to add) to ts's tile of the ring ``s``, moving its head as ``_advance``."""
    cdef int overflow = 0
    cdef Py_ssize_t n = step.n, j
    cdef long long t = <long long>_floordiv(ts, step.bucket)  # exact: Features keeps MAX_TS / bucket < 2**53
    cdef long long head, kk
    if not PyLong_CheckExact(<object>PyList_GET_ITEM(s, 0)):
        return DECLINE
    head = PyLong_AsLongLongAndOverflow(<object>PyList_GET_ITEM(s, 0), &overflow)
    if overflow or head < -1 or head > (1LL << 53):
        return DECLINE
    if t > head:
        zero = step.zero
        if t - head >= n:
            for j in range(2, 2 + n):
                s[j] = zero
        else:
            for kk in range(head + 1, t + 1):
                s[2 + kk % n] = zero
        s[0] = PyLong_FromLongLong(t)
    elif t <= head - n:
        s[1] = <object>PyList_GET_ITEM(s, 1) + 1
        return DONE
    j = 2 + t % n
    s[j] = <object>PyList_GET_ITEM(s, j) + add
    return DONE


cdef int _step(Step step, object entry, object event, double ts, object ts_obj, object props) except -1:
    """Apply one step to the state entry; DECLINE (nothing changed) when the Python updater must."""
    cdef int kind = step.kind, r
    cdef double w = 1.0, s0, s1
    cdef list s
    cdef PyObject* v
    if kind == CHANNELS:
        if not PySet_CheckExact(entry):
            return DECLINE
        PySet_Add(entry, event.channel)
        return DONE
    if kind == PYTHON or not PyList_CheckExact(entry):
        return DECLINE
    s = <list>entry
    if step.reads_props:
        if not PyDict_CheckExact(props):
            return DECLINE
        if PyTuple_GET_SIZE(step.where_keys) and not _matches(<dict>props, step):
            return DONE
    if kind == COUNT_WINDOW:
        if PyList_GET_SIZE(s) != step.n + 2:
            return DECLINE
        return _window(s, step, ts, 1)
    if kind == SUM_WINDOW:
        if PyList_GET_SIZE(s) != step.n + 2:
            return DECLINE
        r = _weight(PyDict_GetItemWithError(<dict>props, step.prop), &w)
        if r <= 0:
            return DONE if r == 0 else DECLINE
        return _window(s, step, ts, PyFloat_FromDouble(w))
    if PyList_GET_SIZE(s) < 1:
        return DECLINE
    if kind == COUNT_TOTAL:
        if PyList_GET_SIZE(s) != 1:
            return DECLINE
        s[0] = <object>PyList_GET_ITEM(s, 0) + 1
        return DONE
    if kind == RECENCY or kind == FIRST_SEEN:
        if PyList_GET_SIZE(s) != 1 or not _float_entry(s, 0):
            return DECLINE
        s0 = PyFloat_AS_DOUBLE(<object>PyList_GET_ITEM(s, 0))
        if (ts > s0) if kind == RECENCY else (ts < s0):
            s[0] = ts_obj
        return DONE
    if kind == SUM_TOTAL:
        if PyList_GET_SIZE(s) != 1 or not _float_entry(s, 0):
            return DECLINE
        r = _weight(PyDict_GetItemWithError(<dict>props, step.prop), &w)
        if r <= 0:
            return DONE if r == 0 else DECLINE
        s[0] = PyFloat_FromDouble(PyFloat_AS_DOUBLE(<object>PyList_GET_ITEM(s, 0)) + w)
        return DONE
    if kind == DECAYED:
        if PyList_GET_SIZE(s) != 2 or not _float_entry(s, 0) or not _float_entry(s, 1):
            return DECLINE
        if step.prop is not None:
            r = _weight(PyDict_GetItemWithError(<dict>props, step.prop), &w)
            if r <= 0:
                return DONE if r == 0 else DECLINE
        s0 = PyFloat_AS_DOUBLE(<object>PyList_GET_ITEM(s, 0))
        s1 = PyFloat_AS_DOUBLE(<object>PyList_GET_ITEM(s, 1))
        # The updater's expressions, operation for operation (no FMA: the default x86-64 build has none).
        if ts >= s1:
            s[0] = PyFloat_FromDouble(s0 * exp((s1 - ts) * step.k) + w)
            s[1] = ts_obj
        else:
            s[0] = PyFloat_FromDouble(s0 + w * exp((ts - s1) * step.k))
        return DONE
    if kind == LAST_VALUE:
        if PyList_GET_SIZE(s) != 3 or not _float_entry(s, 0):
            return DECLINE
        v = PyDict_GetItemWithError(<dict>props, step.prop)
        if v == NULL or <object>v is None:
            return DONE
        if PyFloat_CheckExact(<object>v):
            if not isfinite(PyFloat_AS_DOUBLE(<object>v)):
                return DONE
        elif not (PyUnicode_CheckExact(<object>v) or PyLong_CheckExact(<object>v) or <object>v is True
                  or <object>v is False):
            return DONE
        s0 = PyFloat_AS_DOUBLE(<object>PyList_GET_ITEM(s, 0))
        if ts > s0:
            s[0] = ts_obj
            s[1] = event.seq
            s[2] = <object>v
            return DONE
        return DECLINE if ts == s0 else DONE  # a tie: the updater's (seq, msgpack) rule
    return DECLINE


cdef int _apply(object state, object event, tuple steps) except -1:
    cdef Py_ssize_t i, nsteps = PyTuple_GET_SIZE(steps)
    cdef Step step
    cdef object entry
    cdef bint fast = PyList_CheckExact(state)
    ts_obj = event.ts
    cdef double ts = PyFloat_AS_DOUBLE(ts_obj) if PyFloat_CheckExact(ts_obj) else -1.0
    props = event.properties
    for i in range(nsteps):
        step = <Step>PyTuple_GET_ITEM(steps, i)
        if fast and ts >= 0.0 and step.index < PyList_GET_SIZE(<list>state):
            entry = <object>PyList_GET_ITEM(<list>state, step.index)
            if _step(step, entry, event, ts, ts_obj, props) == DONE:
                continue
        step.update(state[step.index], event)
    return 0


cdef class Tracker:
    """The steps of a Features by event type, tracking events into its states (``Features.track``'s fast path)."""

    cdef dict plans
    cdef tuple every
    cdef object check
    cdef double max_ts

    def __init__(self, dict plans, tuple every, check, double max_ts):
        for steps in (*plans.values(), every):
            if not PyTuple_CheckExact(steps) or not all([isinstance(st, Step) for st in steps]):
                raise ValueError(f"Tracker: plans must map event types to tuples of Steps, got {steps!r}")
        self.plans = plans
        self.every = every
        self.check = check
        self.max_ts = max_ts

    cdef inline int _track(self, object state, object event) except -1:
        ts_obj = event.ts
        if not PyFloat_CheckExact(ts_obj) or not (0.0 <= PyFloat_AS_DOUBLE(ts_obj) < self.max_ts):
            event = self.check(event)
        steps = self.plans.get(event.type, self.every)
        return _apply(state, event, <tuple>steps)

    def track(self, state, event):
        """Apply the steps of ``event``'s type (``every`` for another type) to ``state`` in place, as their
        Python updaters would. An event whose ts is not a float in ``[0, max_ts)`` goes through ``check``
        first (it raises ``SchemaError``, or returns the event with a canonical ts)."""
        self._track(state, event)

    def track_many(self, state, events):
        """``track`` each of ``events`` in turn."""
        for event in events:
            self._track(state, event)
