# Exploration kernels: a score vector (higher is better) -> pmf, and seeded sampling
# from a pmf (the stream: rng.pxd).
#
# The pmf kernels reproduce Vowpal Wabbit's cb_explore_adf reductions on negated
# costs (VW 9.x: cb_explore_adf_greedy, cb_explore_adf_softmax,
# cb_explore_adf_squarecb and exploration::enforce_minimum_probability), in
# float64. nba.policy validates parameters and shapes; the kernels only report
# the first non-finite score (as an index, -1 when all are finite) so that the
# caller can raise SchemaError without a separate pass over the scores.

cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t
from nba._core.rng cimport event_id_utf8, seeded_key, stream_uniform

cnp.import_array()

PMF_TOLERANCE = PMF_TOL  # nba.policy.PMF_TOLERANCE, shared with the fused decision kernel

from libc.math cimport exp, sqrt, log, pow, fabs, isfinite, INFINITY
from libc.float cimport DBL_MAX
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize

cdef inline bint _same_rel(double a, double b, double rtol) noexcept nogil:
    """VW::math::are_same_rel: |a - b| <= rtol * (|a| + |b|).

    Near the float64 limit |a| + |b| overflows (and 0 x inf is NaN): the bound is
    then taken term by term, which cannot overflow.
    """
    cdef double t = fabs(a) + fabs(b)
    if t > DBL_MAX:
        return fabs(a - b) <= rtol * fabs(a) + rtol * fabs(b)
    return fabs(a - b) <= rtol * t


cdef void epsilon_greedy_pmf(const double* s, Py_ssize_t n, double eps, double rtol,
                              double* out) noexcept nogil:
    """epsilon / n everywhere, plus (1 - epsilon) split evenly over the top-tied actions.

    VW sorts actions by cost and counts as tied the leading run whose cost is
    are_same_rel to the best one (fill_tied). Without sorting: the run stops at
    the best score that is not tied, so an action is in it iff it is tied with
    the top and scores strictly above every untied action.
    """
    cdef Py_ssize_t i, tied = 0
    cdef double top = s[0]
    cdef double below = -INFINITY
    for i in range(1, n):
        if s[i] > top:
            top = s[i]
    for i in range(n):
        if not _same_rel(s[i], top, rtol) and s[i] > below:
            below = s[i]
    for i in range(n):
        if s[i] > below and _same_rel(s[i], top, rtol):
            tied += 1
    cdef double base = eps / <double>n
    cdef double share = (1.0 - eps) / <double>tied
    for i in range(n):
        out[i] = base + share if (s[i] > below and _same_rel(s[i], top, rtol)) else base


cdef void _minimum_probability(double* p, Py_ssize_t n, double eps) noexcept nogil:
    """VW's enforce_minimum_probability(eps, consider_zero_valued_elements=true).

    The Euclidean projection of p onto {q : q_i >= eps / n, sum q = 1}, i.e.
    q_i = max(p_i - tau, eps / n). VW finds tau by sorting; here Michelot's
    fixed point finds the same tau without scratch memory: the active set
    {p_i - tau > eps / n} only shrinks as tau grows, so it is recomputed from
    tau alone, and it stops as soon as the set no longer changes.
    """
    cdef Py_ssize_t i, cnt, newcnt
    cdef double m, tau, total, newtotal
    if eps == 0.0:
        return
    if eps > 0.999:  # VW: uniform exploration
        for i in range(n):
            p[i] = 1.0 / <double>n
        return
    m = eps / <double>n
    cnt = n
    total = 0.0
    for i in range(n):
        total += p[i]
    tau = (total + <double>(n - cnt) * m - 1.0) / <double>cnt
    while True:
        newcnt = 0
        newtotal = 0.0
        for i in range(n):
            if p[i] - tau > m:
                newcnt += 1
                newtotal += p[i]
        if newcnt == cnt or newcnt == 0:
            break
        cnt = newcnt
        total = newtotal
        tau = (total + <double>(n - cnt) * m - 1.0) / <double>cnt
    for i in range(n):
        p[i] = p[i] - tau if p[i] - tau > m else m


cdef void softmax_pmf(const double* s, Py_ssize_t n, double lam, double eps, double* out) noexcept nogil:
    """p_i proportional to exp(lam * (s_i - max s)), then VW's minimum probability eps / n.

    VW's softmax runs generate_softmax(-lambda, costs) = exp(-|lambda| (c_i - min c)),
    which is this on s = -c.
    """
    cdef Py_ssize_t i
    cdef double top = s[0]
    cdef double norm = 0.0
    for i in range(1, n):
        if s[i] > top:
            top = s[i]
    for i in range(n):
        out[i] = exp(lam * (s[i] - top))
        norm += out[i]
    for i in range(n):
        out[i] /= norm
    _minimum_probability(out, n, eps)


cdef void squarecb_pmf(const double* s, Py_ssize_t n, double gamma, double* out) noexcept nogil:
    """SquareCB (Foster and Rakhlin 2020) as VW computes it.

    Every action but the best gets 1 / (n + gamma * (best - s_i)); the best one
    (the first of exactly tied maxima, as VW's stable cost order leaves it)
    gets the rest.
    """
    cdef Py_ssize_t i, a = 0
    cdef double total = 0.0
    for i in range(1, n):
        if s[i] > s[a]:
            a = i
    for i in range(n):
        if i == a:
            continue
        out[i] = 1.0 / (<double>n + gamma * (s[a] - s[i]))
        total += out[i]
    out[a] = 1.0 - total


cdef inline bint _taken(const int64_t* chosen, Py_ssize_t k, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(k):
        if chosen[j] == i:
            return True
    return False


cdef void _slate(const double* p, Py_ssize_t n, Py_ssize_t k, uint64_t key, int64_t* chosen) noexcept nogil:
    """k distinct indices by successive draws without replacement; slot j uses u_j."""
    cdef Py_ssize_t j, i, last
    cdef double total, cum, draw
    for j in range(k):
        total = 0.0
        for i in range(n):
            if p[i] > 0.0 and not _taken(chosen, j, i):
                total += p[i]
        if total <= 0.0:  # only zero-probability actions are left: take them in pmf order
            for i in range(n):
                if not _taken(chosen, j, i):
                    chosen[j] = i
                    break
            continue
        draw = stream_uniform(key, <uint64_t>j) * total
        cum = 0.0
        last = -1
        for i in range(n):
            if p[i] > 0.0 and not _taken(chosen, j, i):
                cum += p[i]
                last = i
                if cum > draw:
                    break
        chosen[j] = last


cdef inline Py_ssize_t _pair(object scores, object out):
    """n when ``scores`` and ``out`` are float64 C-contiguous 1-D ndarrays of the same length n >= 1
    and ``out`` is writable; else -1 (the caller converts and validates, then calls again)."""
    cdef cnp.ndarray s, o
    if type(scores) is not cnp.ndarray or type(out) is not cnp.ndarray:
        return -1
    s = <cnp.ndarray>scores
    o = <cnp.ndarray>out
    if (cnp.PyArray_TYPE(s) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(s) != 1 or not cnp.PyArray_IS_C_CONTIGUOUS(s)
            or cnp.PyArray_TYPE(o) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(o) != 1
            or not cnp.PyArray_IS_C_CONTIGUOUS(o) or not cnp.PyArray_ISWRITEABLE(o)
            or cnp.PyArray_DIM(s, 0) != cnp.PyArray_DIM(o, 0) or cnp.PyArray_DIM(s, 0) < 1):
        return -1
    return cnp.PyArray_DIM(s, 0)


def pmf_epsilon_greedy(object scores, double epsilon, double tie_rtol, object out):
    """Epsilon-greedy pmf of ``scores`` into ``out``: -1 when done, j when score j is not
    finite, -2 when the arrays are not float64 C-contiguous vectors of one length >= 1
    (``out`` writable)."""
    cdef Py_ssize_t n = _pair(scores, out), bad
    if n < 0:
        return -2
    cdef const double* sp = <const double*>cnp.PyArray_DATA(<cnp.ndarray>scores)
    cdef double* op = <double*>cnp.PyArray_DATA(<cnp.ndarray>out)
    bad = first_nonfinite(sp, n)
    if bad < 0:
        epsilon_greedy_pmf(sp, n, epsilon, tie_rtol, op)
    return bad


def pmf_softmax(object scores, double lambda_, double epsilon, object out):
    """Softmax pmf (with VW's minimum probability ``epsilon / n``) into ``out``; returns
    as ``pmf_epsilon_greedy``."""
    cdef Py_ssize_t n = _pair(scores, out), bad
    if n < 0:
        return -2
    cdef const double* sp = <const double*>cnp.PyArray_DATA(<cnp.ndarray>scores)
    cdef double* op = <double*>cnp.PyArray_DATA(<cnp.ndarray>out)
    bad = first_nonfinite(sp, n)
    if bad < 0:
        softmax_pmf(sp, n, lambda_, epsilon, op)
    return bad


def pmf_squarecb(object scores, double gamma, object out):
    """SquareCB pmf with greediness ``gamma`` into ``out``; returns as ``pmf_epsilon_greedy``."""
    cdef Py_ssize_t n = _pair(scores, out), bad
    if n < 0:
        return -2
    cdef const double* sp = <const double*>cnp.PyArray_DATA(<cnp.ndarray>scores)
    cdef double* op = <double*>cnp.PyArray_DATA(<cnp.ndarray>out)
    bad = first_nonfinite(sp, n)
    if bad < 0:
        squarecb_pmf(sp, n, gamma, op)
    return bad


def event_key(const unsigned char[::1] event_id, uint64_t seed):
    """64-bit sampling key of (``seed``, ``event_id`` UTF-8 bytes)."""
    cdef uint64_t key
    with nogil:
        key = seeded_key(&event_id[0] if event_id.shape[0] > 0 else NULL, event_id.shape[0], seed)
    return key


def uniform(uint64_t key, uint64_t j):
    """The j-th uniform in [0, 1) of the stream of ``key``."""
    return stream_uniform(key, j)


def sample_index(object pmf, object event_id, uint64_t seed, double tol):
    """Index drawn from ``pmf`` with u_0 of the event's stream, ``-1 - j`` when the check
    fails (``check_pmf`` returned j: a bad entry, or n for a bad sum), or None when
    ``pmf`` is not a float64 C-contiguous vector of length >= 1 or ``event_id`` not a
    str or bytes (the caller converts and calls again)."""
    cdef Py_ssize_t i, bad, n, m
    cdef const char* eid
    cdef const double* p
    cdef double total
    if (type(pmf) is not cnp.ndarray or cnp.PyArray_TYPE(<cnp.ndarray>pmf) != cnp.NPY_DOUBLE
            or cnp.PyArray_NDIM(<cnp.ndarray>pmf) != 1 or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>pmf)
            or cnp.PyArray_DIM(<cnp.ndarray>pmf, 0) < 1):
        return None
    eid = event_id_utf8(event_id, &m)
    if eid == NULL:
        return None
    n = cnp.PyArray_DIM(<cnp.ndarray>pmf, 0)
    p = <const double*>cnp.PyArray_DATA(<cnp.ndarray>pmf)
    bad = check_pmf(p, n, tol, &total)
    if bad >= 0:
        return -1 - bad
    return pick(p, n, stream_uniform(seeded_key(<const unsigned char*>eid, m, seed), 0), total)


def sample_slate(const double[::1] pmf, const unsigned char[::1] event_id, uint64_t seed, double tol,
                 int64_t[::1] out):
    """``out.shape[0]`` distinct indices drawn from ``pmf`` without replacement, slot j with
    u_j of the event's stream (slot 0 is ``sample_index``); returns -1, or j as
    ``check_pmf`` when the check fails (nothing drawn)."""
    cdef Py_ssize_t bad
    cdef uint64_t key
    cdef double total
    with nogil:
        bad = check_pmf(&pmf[0], pmf.shape[0], tol, &total)
        if bad < 0:
            key = seeded_key(&event_id[0] if event_id.shape[0] > 0 else NULL, event_id.shape[0], seed)
            _slate(&pmf[0], pmf.shape[0], out.shape[0], key, &out[0])
    return bad
