# The exploration kernels' contract, as the fused decision kernel (decide.pyx) and the
# bandit cores (bandits.pyx) use them: score vector -> pmf, and the pmf check and pick.

from libc.math cimport fabs, isfinite

cdef extern from *:
    """
    #define NBA_PMF_TOL 1e-6
    """
    const double PMF_TOL "NBA_PMF_TOL"  # how far from 1 a pmf may sum before sample() refuses it


cdef inline Py_ssize_t first_nonfinite(const double* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if not isfinite(s[i]):
            return i
    return -1


cdef void epsilon_greedy_pmf(const double* s, Py_ssize_t n, double eps, double rtol,
                             double* out) noexcept nogil
cdef void softmax_pmf(const double* s, Py_ssize_t n, double lam, double eps, double* out) noexcept nogil
cdef void squarecb_pmf(const double* s, Py_ssize_t n, double gamma, double* out) noexcept nogil


cdef inline Py_ssize_t check_pmf(const double* p, Py_ssize_t n, double tol,
                                      double* total) noexcept nogil:
    """-1 if p is a pmf (finite, >= 0, sums to 1 within tol), with its sum in total; j if
    p[j] is negative or not finite; n if the sum is off."""
    cdef Py_ssize_t i
    cdef double t = 0.0
    for i in range(n):
        if not (p[i] >= 0.0 and isfinite(p[i])):
            return i
        t += p[i]
    total[0] = t
    if fabs(t - 1.0) > tol:
        return n
    return -1


cdef inline Py_ssize_t pick(const double* p, Py_ssize_t n, double u, double total) noexcept nogil:
    """Inverse-CDF pick with uniform u: the first index whose running sum exceeds u * total,
    where total is sum(p) as ``check_pmf`` adds it up.

    Zero-probability entries can never be picked.
    """
    cdef Py_ssize_t i, last = 0
    cdef double cum = 0.0
    cdef double draw = u * total
    for i in range(n):
        if p[i] > 0.0:
            cum += p[i]
            last = i
            if cum > draw:
                return i
    return last
