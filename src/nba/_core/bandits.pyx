# Online bandit state and updates: Beta-Bernoulli Thompson sampling, UCB1 and
# disjoint linear models (LinUCB, linear Thompson sampling). Draws are seeded
# from the event key of rng.pxd.
#
# Every object owns its arrays (numpy, allocated once) and one lock. Each
# public method takes the lock with the GIL released and holds it for the
# whole read or update, so a score never sees half an update and two updates
# never interleave. nba.bandits validates arms, shapes and rewards
# before calling in: nothing here checks an index.
#
# Random draws come from the splitmix64 stream of a 64-bit key (see
# rng.pxd): standard normals by the ziggurat method, gammas by
# Marsaglia and Tsang (2000), Beta(a, b) as G_a / (G_a + G_b).

from libc.math cimport exp, sqrt, log, pow, fabs, isfinite, INFINITY
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memset
from libc.stdlib cimport malloc, free

cimport numpy as cnp
import numpy as _bd_np

from nba._core.hashing cimport splitmix64
from nba._core.locks cimport PoliteLock
from nba._core.policy cimport first_nonfinite
from nba._core.rng cimport GOLDEN, TWO_M53

cnp.import_array()

# Score of a UCB1 arm never played: finite (policies reject inf) and above any
# reward scale, so unplayed arms are tried first, ties split evenly.
cdef double _BD_UNPLAYED = 1e300
UNPLAYED_SCORE = _BD_UNPLAYED

# Largest |x_i| a linear model learns from (nba.bandits.MAX_ABS_FEATURE):
# with |reward| <= 1e6 and ridge >= 1e-6 it keeps the state provably finite.
cdef double _BD_MAX_ABS_X = 1e9
MAX_ABS_FEATURE = _BD_MAX_ABS_X
# Largest |(A^-1 x)_i| an update applies (see LinearCore._update).
cdef double _BD_MAX_ABS_U = 1e50

# Salts separating the streams of one event: a posterior sample for score(), the
# draws that estimate P(arm is best), and (in _policy.pxi) the choice itself.
# Thompson pmfs over at most this many offered arms copy what the draws need and
# release the lock before drawing, so concurrent decisions draw in parallel.
cdef enum:
    _BD_LOCAL = 64

cdef uint64_t _BD_SALT_SAMPLE = 0x5448534D504C3031ULL  # "THSMPL01"
cdef uint64_t _BD_SALT_PMF = 0x5448504D46303031ULL     # "THPMF001"


ctypedef struct _BdRng:
    uint64_t state


cdef inline void _bd_rng_init(_BdRng* r, uint64_t key, uint64_t salt) noexcept nogil:
    r.state = splitmix64(key ^ salt)


cdef inline uint64_t _bd_next(_BdRng* r) noexcept nogil:
    """The stream's next 64 bits."""
    cdef uint64_t x = splitmix64(r.state)
    r.state += GOLDEN
    return x


cdef inline double _bd_uniform(_BdRng* r) noexcept nogil:
    """Uniform in [0, 1), 53 bits."""
    return <double><int64_t>(_bd_next(r) >> 11) * TWO_M53


# Ziggurat tables for the standard normal (Marsaglia and Tsang 2000; 128 layers of
# equal area V, base layer with the tail beyond R), built once at import.
cdef enum:
    _BD_ZIG_C = 128
cdef double _BD_ZIG_R = 3.442619855899
cdef double _BD_ZIG_V = 9.91256303526217e-3
cdef double _bd_zig_x[_BD_ZIG_C + 1]
cdef double _bd_zig_ratio[_BD_ZIG_C]


cdef void _bd_zig_init() noexcept nogil:
    cdef int i
    cdef double f = exp(-0.5 * _BD_ZIG_R * _BD_ZIG_R)
    _bd_zig_x[0] = _BD_ZIG_V / f      # the base layer as a box of area V: rectangle plus tail
    _bd_zig_x[1] = _BD_ZIG_R
    _bd_zig_x[_BD_ZIG_C] = 0.0
    for i in range(2, _BD_ZIG_C):
        _bd_zig_x[i] = sqrt(-2.0 * log(_BD_ZIG_V / _bd_zig_x[i - 1] + f))
        f = exp(-0.5 * _bd_zig_x[i] * _bd_zig_x[i])
    for i in range(_BD_ZIG_C):
        _bd_zig_ratio[i] = _bd_zig_x[i + 1] / _bd_zig_x[i]


_bd_zig_init()


cdef inline int _bd_zig_draw(_BdRng* r, double* u) noexcept nogil:
    """One 64-bit draw: the layer (low 7 bits), returned, and the abscissa u in [-1, 1) (top 53 bits)."""
    cdef uint64_t bits = _bd_next(r)
    u[0] = 2.0 * (<double><int64_t>(bits >> 11) * TWO_M53) - 1.0
    return <int>(bits & 0x7F)


cdef double _bd_normal_slow(_BdRng* r, double u, int i) noexcept nogil:
    """The ziggurat's rare paths: the tail (layer 0) or a wedge; loops back to a fresh draw."""
    cdef double x, y, f0, f1
    while True:
        if i == 0:  # tail beyond R (Marsaglia 1964)
            while True:
                x = log(1.0 - _bd_uniform(r)) / _BD_ZIG_R
                y = log(1.0 - _bd_uniform(r))
                if -2.0 * y >= x * x:
                    break
            return x - _BD_ZIG_R if u < 0.0 else _BD_ZIG_R - x
        x = u * _bd_zig_x[i]
        f0 = exp(-0.5 * (_bd_zig_x[i] * _bd_zig_x[i] - x * x))
        f1 = exp(-0.5 * (_bd_zig_x[i + 1] * _bd_zig_x[i + 1] - x * x))
        if f1 + _bd_uniform(r) * (f0 - f1) < 1.0:
            return x
        i = _bd_zig_draw(r, &u)
        if fabs(u) < _bd_zig_ratio[i]:
            return u * _bd_zig_x[i]


cdef inline double _bd_normal(_BdRng* r) noexcept nogil:
    """Standard normal by the ziggurat: one 64-bit draw gives the layer (low 7 bits) and
    the abscissa (top 53 bits); ~99% of draws end in the first test."""
    cdef double u
    cdef int i = _bd_zig_draw(r, &u)
    if fabs(u) < _bd_zig_ratio[i]:
        return u * _bd_zig_x[i]
    return _bd_normal_slow(r, u, i)


ctypedef struct _BdGamma:
    double d       # Marsaglia-Tsang d = a - 1/3 (a + 1 - 1/3 when a < 1)
    double c       # 1 / sqrt(9 d)
    double inv_a   # 1 / a when a < 1 (boost by U^(1/a)), else 0


cdef inline void _bd_gamma_prep(_BdGamma* g, double a) noexcept nogil:
    """Constants of Gamma(a, 1) sampling, computed once per change of a."""
    g.inv_a = 0.0
    if a < 1.0:
        g.inv_a = 1.0 / a
        a += 1.0
    g.d = a - 1.0 / 3.0
    g.c = 1.0 / sqrt(9.0 * g.d)


cdef inline double _bd_gamma(_BdRng* r, const _BdGamma* g) noexcept nogil:
    """Gamma(a, 1) (Marsaglia-Tsang; a < 1 boosted by U^(1/a))."""
    cdef double boost = 1.0, z, v, u
    if g.inv_a != 0.0:
        boost = pow(1.0 - _bd_uniform(r), g.inv_a)  # 1 - U is in (0, 1]
    while True:
        z = _bd_normal(r)
        v = 1.0 + g.c * z
        if v <= 0.0:
            continue
        v = v * v * v
        u = _bd_uniform(r)
        if u < 1.0 - 0.0331 * z * z * z * z:
            return boost * g.d * v
        if u > 0.0 and log(u) < 0.5 * z * z + g.d * (1.0 - v + log(v)):
            return boost * g.d * v


cdef inline double _bd_beta(_BdRng* r, const _BdGamma* ga, const _BdGamma* gb) noexcept nogil:
    cdef double x = _bd_gamma(r, ga)
    cdef double y = _bd_gamma(r, gb)
    return x / (x + y)


cdef inline double _bd_dot(const double* a, const double* b, Py_ssize_t n) noexcept nogil:
    """a . b with four independent partial sums (latency-bound loops run ~3x faster)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t i = 0
    while i + 4 <= n:
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
        i += 4
    while i < n:
        s0 += a[i] * b[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


cdef class _BdLocked:
    """Base of the bandit cores: one lock (a PoliteLock: renewed in a forked child), an update counter.

    Short sections take the lock holding the GIL (``_take``: releasing it for a few
    microseconds of arithmetic costs a thread hand-over whenever another request
    thread waits); the long draw loops take it without (``_acquire``).
    """
    cdef PoliteLock _lk
    cdef uint64_t _version
    cdef readonly Py_ssize_t n_arms

    def __cinit__(self, *args, **kwargs):
        self._lk = PoliteLock()
        self._version = 0

    cdef inline void _acquire(self) noexcept nogil:
        self._lk.take_nogil()

    cdef inline void _take(self):
        self._lk.take()

    cdef inline void _release(self) noexcept nogil:
        self._lk.give()

    @property
    def version(self):
        """Number of updates applied (0 for a fresh model)."""
        return self._version


cdef class BetaBernoulliCore(_BdLocked):
    """Beta(alpha, beta) posterior per arm; reward r in [0, 1] adds r to alpha, 1 - r to beta."""
    cdef object _alpha_arr, _beta_arr, _pulls_arr
    cdef double* _alpha
    cdef double* _beta
    cdef int64_t* _pulls
    cdef _BdGamma* _prep    # 2 per arm: Gamma(alpha) then Gamma(beta) constants

    def __init__(self, Py_ssize_t n_arms, double alpha0, double beta0):
        self.n_arms = n_arms
        self._alpha_arr = _bd_np.full(n_arms, alpha0, dtype=_bd_np.float64)
        self._beta_arr = _bd_np.full(n_arms, beta0, dtype=_bd_np.float64)
        self._pulls_arr = _bd_np.zeros(n_arms, dtype=_bd_np.int64)
        self._prep = <_BdGamma*>malloc(2 * n_arms * sizeof(_BdGamma))
        if self._prep == NULL:
            raise MemoryError()
        self._bind()
        self._prepare_all()

    def __dealloc__(self):
        free(self._prep)

    cdef void _prepare_all(self) noexcept nogil:
        cdef Py_ssize_t i
        for i in range(self.n_arms):
            _bd_gamma_prep(&self._prep[2 * i], self._alpha[i])
            _bd_gamma_prep(&self._prep[2 * i + 1], self._beta[i])

    cdef void _bind(self):
        cdef double[::1] a = self._alpha_arr
        cdef double[::1] b = self._beta_arr
        cdef int64_t[::1] p = self._pulls_arr
        self._alpha = &a[0]
        self._beta = &b[0]
        self._pulls = &p[0]

    def update(self, Py_ssize_t arm, double reward):
        self._take()
        self._alpha[arm] += reward
        self._beta[arm] += 1.0 - reward
        _bd_gamma_prep(&self._prep[2 * arm], self._alpha[arm])
        _bd_gamma_prep(&self._prep[2 * arm + 1], self._beta[arm])
        self._pulls[arm] += 1
        self._version += 1
        self._release()

    def mean(self, double[::1] out):
        """Posterior means alpha / (alpha + beta) into ``out``."""
        cdef Py_ssize_t i
        self._take()
        for i in range(self.n_arms):
            out[i] = self._alpha[i] / (self._alpha[i] + self._beta[i])
        self._release()

    def sample(self, uint64_t key, double[::1] out):
        """One posterior draw per arm into ``out``, from the stream of ``key``."""
        cdef Py_ssize_t i
        cdef _BdRng r
        _bd_rng_init(&r, key, _BD_SALT_SAMPLE)
        self._take()
        for i in range(self.n_arms):
            out[i] = _bd_beta(&r, &self._prep[2 * i], &self._prep[2 * i + 1])
        self._release()

    def best_pmf(self, uint64_t key, Py_ssize_t draws, const int64_t[::1] arms,
                 const double[::1] scale, double[::1] out):
        """Share of ``draws`` posterior draws in which each offered arm is best.

        ``arms`` are the offered arm indices and ``scale`` their multipliers
        (the argmax is over scale[j] * draw of arms[j]); out[j] is for arms[j].
        Ties within a draw go to the first offered arm.
        """
        cdef Py_ssize_t m, j, n = arms.shape[0], best, gi
        cdef double x, y, num, den, top_num, top_den
        cdef bint gt, local = n <= _BD_LOCAL
        cdef _BdGamma copy[2 * _BD_LOCAL]
        cdef const _BdGamma* g
        cdef _BdRng r
        with nogil:
            _bd_rng_init(&r, key, _BD_SALT_PMF)
            memset(&out[0], 0, n * sizeof(double))
            self._acquire()
            if local:  # copy the offered arms' posteriors and let other threads in
                for j in range(n):
                    copy[2 * j] = self._prep[2 * arms[j]]
                    copy[2 * j + 1] = self._prep[2 * arms[j] + 1]
                self._release()
                g = copy
            else:
                g = self._prep
            for m in range(draws):
                # Compare scale * G_a / (G_a + G_b) across arms as fractions (denominators
                # are positive): no division, and branch-free selects for the random order.
                top_num = -1.0
                top_den = 0.0
                best = -1
                for j in range(n):
                    gi = 2 * j if local else 2 * arms[j]
                    x = _bd_gamma(&r, &g[gi])
                    y = _bd_gamma(&r, &g[gi + 1])
                    num = scale[j] * x
                    den = x + y
                    gt = best < 0 or num * top_den > top_num * den
                    top_num = num if gt else top_num
                    top_den = den if gt else top_den
                    best = j if gt else best
                out[best] += 1.0
            if not local:
                self._release()
            for j in range(n):
                out[j] /= <double>draws

    def get_state(self):
        """(alpha, beta, pulls, version), copied under the lock."""
        self._take()
        try:
            return self._alpha_arr.copy(), self._beta_arr.copy(), self._pulls_arr.copy(), self._version
        finally:
            self._release()

    def set_state(self, alpha, beta, pulls, uint64_t version):
        """Replace the state with validated arrays of length n_arms."""
        self._take()
        try:
            self._alpha_arr[:] = alpha
            self._beta_arr[:] = beta
            self._pulls_arr[:] = pulls
            self._version = version
            self._prepare_all()
        finally:
            self._release()


cdef class UCB1Core(_BdLocked):
    """Pull counts and reward sums per arm; UCB1 index mean + sqrt(2 ln t / n_a)."""
    cdef object _sums_arr, _pulls_arr
    cdef double* _sums
    cdef int64_t* _pulls
    cdef int64_t _total

    def __init__(self, Py_ssize_t n_arms):
        self.n_arms = n_arms
        self._sums_arr = _bd_np.zeros(n_arms, dtype=_bd_np.float64)
        self._pulls_arr = _bd_np.zeros(n_arms, dtype=_bd_np.int64)
        self._total = 0
        cdef double[::1] s = self._sums_arr
        cdef int64_t[::1] p = self._pulls_arr
        self._sums = &s[0]
        self._pulls = &p[0]

    def update(self, Py_ssize_t arm, double reward):
        self._take()
        self._sums[arm] += reward
        self._pulls[arm] += 1
        self._total += 1
        self._version += 1
        self._release()

    def ucb(self, double[::1] out):
        """UCB1 indices into ``out``; arms never played get UNPLAYED_SCORE."""
        cdef Py_ssize_t i
        cdef double lt
        self._take()
        lt = 2.0 * log(<double>self._total) if self._total > 0 else 0.0
        for i in range(self.n_arms):
            if self._pulls[i] == 0:
                out[i] = _BD_UNPLAYED
            else:
                out[i] = self._sums[i] / <double>self._pulls[i] + sqrt(lt / <double>self._pulls[i])
        self._release()

    def mean(self, double[::1] out):
        """Mean reward per arm (0 for arms never played)."""
        cdef Py_ssize_t i
        self._take()
        for i in range(self.n_arms):
            out[i] = self._sums[i] / <double>self._pulls[i] if self._pulls[i] > 0 else 0.0
        self._release()

    def get_state(self):
        self._take()
        try:
            return self._sums_arr.copy(), self._pulls_arr.copy(), self._version
        finally:
            self._release()

    def set_state(self, sums, pulls, uint64_t version):
        self._take()
        try:
            self._sums_arr[:] = sums
            self._pulls_arr[:] = pulls
            self._total = int(self._pulls_arr.sum())
            self._version = version
        finally:
            self._release()


cdef class LinearCore(_BdLocked):
    """Disjoint ridge regressions, one per arm: A_a = ridge I + sum x x^T, b_a = sum r x.

    Keeps A_a^-1 (Sherman-Morrison rank-one updates, O(d^2) per update) and
    theta_a = A_a^-1 b_a. Scores for a context x: mean theta_a . x and width
    sqrt(x^T A_a^-1 x); LinUCB adds alpha * width, linear Thompson sampling
    draws theta_a . x ~ N(mean, (v * width)^2), which is the law of x . theta~
    for theta~ ~ N(theta_a, v^2 A_a^-1), without a Cholesky factor.
    """
    cdef readonly Py_ssize_t n_features
    cdef object _ainv_arr, _b_arr, _theta_arr, _pulls_arr, _tmp_arr
    cdef double* _ainv
    cdef double* _b
    cdef double* _theta
    cdef int64_t* _pulls
    cdef double* _tmp    # d scratch (update) then 2 * n_arms scratch (mean, width); under the lock

    def __init__(self, Py_ssize_t n_arms, Py_ssize_t n_features, double ridge):
        self.n_arms = n_arms
        self.n_features = n_features
        eye = _bd_np.eye(n_features, dtype=_bd_np.float64) / ridge
        self._ainv_arr = _bd_np.broadcast_to(eye, (n_arms, n_features, n_features)).copy()  # C order, writable, even for one arm
        self._b_arr = _bd_np.zeros((n_arms, n_features), dtype=_bd_np.float64)
        self._theta_arr = _bd_np.zeros((n_arms, n_features), dtype=_bd_np.float64)
        self._pulls_arr = _bd_np.zeros(n_arms, dtype=_bd_np.int64)
        self._tmp_arr = _bd_np.zeros(max(n_features, 2 * n_arms), dtype=_bd_np.float64)
        self._bind()

    cdef void _bind(self):
        cdef double[:, :, ::1] ai = self._ainv_arr
        cdef double[:, ::1] b = self._b_arr
        cdef double[:, ::1] t = self._theta_arr
        cdef int64_t[::1] p = self._pulls_arr
        cdef double[::1] tmp = self._tmp_arr
        self._ainv = &ai[0, 0, 0]
        self._b = &b[0, 0]
        self._theta = &t[0, 0]
        self._pulls = &p[0]
        self._tmp = &tmp[0]

    cdef bint _update(self, Py_ssize_t arm, const double* x, double reward) noexcept nogil:
        """Sherman-Morrison update of arm ``arm``; False (nothing written) when rounding has made it unsafe.

        In exact arithmetic A^-1 is positive definite, so q = x^T A^-1 x >= 0 and
        f = 1 / (1 + q) lies in (0, 1]. Rounding can make A^-1 indefinite when
        features are scaled very differently (|x_i| of 1e8 next to 1); the update
        is applied only while q >= -1/2 (f <= 2) and every |u_i| <= 1e50 (exact
        arithmetic gives at most 7e16), which bounds what one update adds to A^-1
        by 2e100 and keeps the state finite (the bound is in nba.bandits.LinUCB).
        """
        cdef Py_ssize_t d = self.n_features, i, j
        cdef double* ai = self._ainv + arm * d * d
        cdef double* b = self._b + arm * d
        cdef double* th = self._theta + arm * d
        cdef double* u = self._tmp
        cdef double f, q
        cdef bint ok = True
        for i in range(d):          # u = A^-1 x (A^-1 is symmetric)
            u[i] = _bd_dot(ai + i * d, x, d)
            ok = ok & (fabs(u[i]) <= _BD_MAX_ABS_U)
        q = _bd_dot(x, u, d)        # x^T A^-1 x >= 0 in exact arithmetic
        if not (ok and q >= -0.5):
            return False
        f = 1.0 / (1.0 + q)
        for i in range(d):          # A^-1 -= u u^T / (1 + x^T A^-1 x)
            for j in range(d):
                ai[i * d + j] -= (u[i] * f) * u[j]
        for i in range(d):
            b[i] += reward * x[i]
        for i in range(d):          # theta = A^-1 b
            th[i] = _bd_dot(ai + i * d, b, d)
        return True

    def update(self, Py_ssize_t arm, const double[::1] x, double reward):
        """Learn ``reward`` for ``arm`` in context ``x``; returns -1, the index of the first
        feature that is non-finite or beyond MAX_ABS_FEATURE, or -2 when rounding has
        made the update unsafe (see _update); nothing is learned unless -1."""
        cdef Py_ssize_t bad = -1, i
        for i in range(x.shape[0]):
            if not fabs(x[i]) <= _BD_MAX_ABS_X:  # NaN fails too
                bad = i
                break
        if bad < 0:
            self._take()
            if self._update(arm, &x[0], reward):
                self._pulls[arm] += 1
                self._version += 1
            else:
                bad = -2
            self._release()
        return bad

    cdef inline void _mean_width(self, Py_ssize_t arm, const double* x, double* mean, double* width) noexcept nogil:
        cdef Py_ssize_t d = self.n_features, i
        cdef const double* ai = self._ainv + arm * d * d
        cdef double q = 0.0
        for i in range(d):
            q += x[i] * _bd_dot(ai + i * d, x, d)
        mean[0] = _bd_dot(self._theta + arm * d, x, d)
        width[0] = sqrt(q) if q > 0.0 else 0.0

    def ucb(self, const double[::1] x, double alpha, double[::1] out):
        """theta_a . x + alpha * sqrt(x^T A_a^-1 x) per arm into ``out``; returns the index
        of the first non-finite feature or -1. With alpha 0 (the posterior mean) the
        O(d^2) width is not computed: m + 0.0 is what m + 0.0 * w gives."""
        cdef Py_ssize_t a, bad
        cdef Py_ssize_t d = self.n_features
        cdef double m, w
        bad = first_nonfinite(&x[0], x.shape[0])
        if bad < 0:
            self._take()
            if alpha == 0.0:
                for a in range(self.n_arms):
                    out[a] = _bd_dot(self._theta + a * d, &x[0], d) + 0.0
            else:
                for a in range(self.n_arms):
                    self._mean_width(a, &x[0], &m, &w)
                    out[a] = m + alpha * w
            self._release()
        return bad

    def mean_width(self, const double[::1] x, double[::1] mean, double[::1] width):
        """Mean theta_a . x and width sqrt(x^T A_a^-1 x) per arm; returns the index of the
        first non-finite feature or -1."""
        cdef Py_ssize_t a, bad
        bad = first_nonfinite(&x[0], x.shape[0])
        if bad < 0:
            self._take()
            for a in range(self.n_arms):
                self._mean_width(a, &x[0], &mean[a], &width[a])
            self._release()
        return bad

    def sample(self, const double[::1] x, double v, uint64_t key, double[::1] out):
        """One posterior draw of theta_a . x per arm into ``out``, from the stream of ``key``;
        returns the index of the first non-finite feature or -1."""
        cdef Py_ssize_t a, bad
        cdef double m, w
        cdef _BdRng r
        bad = first_nonfinite(&x[0], x.shape[0])
        if bad < 0:
            _bd_rng_init(&r, key, _BD_SALT_SAMPLE)
            self._take()
            for a in range(self.n_arms):
                self._mean_width(a, &x[0], &m, &w)
                out[a] = m + v * w * _bd_normal(&r)
            self._release()
        return bad

    def best_pmf(self, const double[::1] x, double v, uint64_t key, Py_ssize_t draws,
                 const int64_t[::1] arms, const double[::1] scale, double[::1] out):
        """Share of ``draws`` posterior draws in which each offered arm is best (see
        BetaBernoulliCore.best_pmf for ``arms`` and ``scale``); returns the index of the
        first non-finite feature or -1."""
        cdef Py_ssize_t m, j, n = arms.shape[0], best, bad
        cdef double top, val
        cdef bint gt, local = n <= _BD_LOCAL
        cdef double lmu[_BD_LOCAL]
        cdef double lsd[_BD_LOCAL]
        cdef double* mu
        cdef double* sd
        cdef _BdRng r
        with nogil:
            bad = first_nonfinite(&x[0], x.shape[0])
            if bad < 0:
                _bd_rng_init(&r, key, _BD_SALT_PMF)
                memset(&out[0], 0, n * sizeof(double))
                self._acquire()
                if local:
                    mu = &lmu[0]
                    sd = &lsd[0]
                else:
                    mu = self._tmp
                    sd = self._tmp + self.n_arms
                for j in range(n):  # the draws only need each arm's mean and sd for this x
                    self._mean_width(arms[j], &x[0], &mu[j], &sd[j])
                    mu[j] *= scale[j]
                    sd[j] *= v * scale[j]
                if local:  # the draws read only the local copies: let other threads in
                    self._release()
                for m in range(draws):
                    top = -INFINITY
                    best = 0
                    for j in range(n):
                        val = mu[j] + sd[j] * _bd_normal(&r)
                        gt = val > top
                        top = val if gt else top
                        best = j if gt else best
                    out[best] += 1.0
                if not local:
                    self._release()
                for j in range(n):
                    out[j] /= <double>draws
        return bad

    def get_state(self):
        """(A^-1, b, theta, pulls, version), copied under the lock."""
        self._take()
        try:
            return (self._ainv_arr.copy(), self._b_arr.copy(), self._theta_arr.copy(),
                    self._pulls_arr.copy(), self._version)
        finally:
            self._release()

    def set_state(self, ainv, b, theta, pulls, uint64_t version):
        self._take()
        try:
            self._ainv_arr[...] = ainv
            self._b_arr[...] = b
            self._theta_arr[...] = theta
            self._pulls_arr[...] = pulls
            self._version = version
        finally:
            self._release()
