# One decision in one call.
#
# Scores the eligible arms with a catalogue-bound forest, arbitrates
# (score x value x weight), turns the priorities into the policy's pmf and draws
# the arm for (seed, event id). These are the same kernels in the same order of
# operations as the separate steps (ArmForestCore.scores, Catalog.priorities,
# the policy's pmf, policy.sample), so the decision is identical; fusing them
# saves five round trips through Python and releases the GIL at most once (for
# walks long enough to pay for it).

cimport numpy as cnp
from libc.stdint cimport uint64_t

from nba._core.policy cimport PMF_TOL, check_pmf, epsilon_greedy_pmf, first_nonfinite, pick, softmax_pmf, squarecb_pmf
from nba._core.rng cimport event_id_utf8, seeded_key, stream_uniform
from nba._core.trees cimport _NOGIL_MIN_WORK, ArmForestCore, _f64_vec, _forest_check

cnp.import_array()


# Policy codes of decide_forest (nba.policy's _kernel() returns (code, p1, p2)).
cdef enum:
    _DECIDE_EPSILON_GREEDY = 0   # p1 = epsilon, p2 = tie_rtol (Greedy: epsilon 0)
    _DECIDE_SOFTMAX = 1          # p1 = lambda, p2 = epsilon
    _DECIDE_SQUARECB = 2         # p1 = gamma
DECIDE_EPSILON_GREEDY = _DECIDE_EPSILON_GREEDY
DECIDE_SOFTMAX = _DECIDE_SOFTMAX
DECIDE_SQUARECB = _DECIDE_SQUARECB


def decide_forest(ArmForestCore forest, cnp.ndarray x, cnp.ndarray idx, cnp.ndarray values,
                  cnp.ndarray weights, int policy, double p1, double p2, object event_id, uint64_t seed,
                  cnp.ndarray acc, cnp.ndarray scores, cnp.ndarray pri, cnp.ndarray pmf):
    """Score, arbitrate, explore and draw one decision over arms ``idx``.

    Fills ``scores``, ``pri`` and ``pmf`` [:len(idx)] and returns the position in
    ``idx`` of the drawn arm; ``-1 - j`` when priority j is not finite, ``-1 - len(idx)``
    when the pmf fails sample()'s check (nothing is drawn then). ``values`` and
    ``weights`` are per catalogue arm (pass ones for score-only arbitration);
    ``acc`` is float64 scratch of n_arms. Buffers as ``ArmForestCore.scores``. The GIL
    is released when the walk is long enough to pay for it (as ``TreeEnsembleCore.predict``):
    a few microseconds without it cost less than the hand-over between request threads.
    """
    cdef Py_ssize_t k = _forest_check(forest, x, idx, acc, scores)
    cdef Py_ssize_t chosen
    if k == 0:
        raise ValueError("idx is empty: there must be at least one eligible arm")
    if not (_f64_vec(values, forest.n_arms, False) and _f64_vec(weights, forest.n_arms, False)):
        raise ValueError(f"values and weights must be C-contiguous float64 vectors of length >= {forest.n_arms}")
    if not (_f64_vec(pri, k, True) and _f64_vec(pmf, k, True)):
        raise ValueError(f"pri and pmf must be writable C-contiguous float64 vectors of length >= {k}")
    if policy not in (_DECIDE_EPSILON_GREEDY, _DECIDE_SOFTMAX, _DECIDE_SQUARECB):
        raise ValueError(f"unknown policy code {policy}")
    cdef const double* xp = <const double*>cnp.PyArray_DATA(x)
    cdef const Py_ssize_t* ip = <const Py_ssize_t*>cnp.PyArray_DATA(idx)
    cdef const double* vp = <const double*>cnp.PyArray_DATA(values)
    cdef const double* wp = <const double*>cnp.PyArray_DATA(weights)
    cdef double* ap = <double*>cnp.PyArray_DATA(acc)
    cdef double* sp = <double*>cnp.PyArray_DATA(scores)
    cdef double* rp = <double*>cnp.PyArray_DATA(pri)
    cdef double* pp = <double*>cnp.PyArray_DATA(pmf)
    cdef Py_ssize_t neid = 0
    cdef const unsigned char* eid = <const unsigned char*>event_id_utf8(event_id, &neid)
    if eid == NULL:
        raise TypeError("event_id must be a str or bytes")
    if k * forest._ens._n_trees >= _NOGIL_MIN_WORK:
        with nogil:
            chosen = _decide_run(forest, xp, ip, k, vp, wp, policy, p1, p2, eid, neid, seed, ap, sp, rp, pp)
    else:
        chosen = _decide_run(forest, xp, ip, k, vp, wp, policy, p1, p2, eid, neid, seed, ap, sp, rp, pp)
    return chosen


cdef Py_ssize_t _decide_run(ArmForestCore forest, const double* xp, const Py_ssize_t* ip, Py_ssize_t k,
                            const double* vp, const double* wp, int policy, double p1, double p2,
                            const unsigned char* eid, Py_ssize_t neid, uint64_t seed, double* ap, double* sp,
                            double* rp, double* pp) noexcept nogil:
    """decide_forest's arithmetic; returns as decide_forest."""
    cdef Py_ssize_t j, bad
    cdef double total
    forest._scores(xp, ip, k, ap, sp, False)
    for j in range(k):
        rp[j] = sp[j] * vp[ip[j]]
        rp[j] = rp[j] * wp[ip[j]]
    bad = first_nonfinite(rp, k)
    if bad >= 0:
        return -1 - bad
    if policy == _DECIDE_EPSILON_GREEDY:
        epsilon_greedy_pmf(rp, k, p1, p2, pp)
    elif policy == _DECIDE_SOFTMAX:
        softmax_pmf(rp, k, p1, p2, pp)
    else:
        squarecb_pmf(rp, k, p1, pp)
    if check_pmf(pp, k, PMF_TOL, &total) >= 0:
        return -1 - k
    return pick(pp, k, stream_uniform(seeded_key(eid, neid, seed), 0), total)
