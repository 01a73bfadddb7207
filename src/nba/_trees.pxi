# Tree-ensemble kernels (LightGBM semantics): included from _core.pyx.
#
# nba.models.lightgbm parses and validates a model and lays every tree out with
# sibling pairs adjacent (a node's right child directly follows its left child)
# and every leaf pointing at itself. A step from node i is then branch free:
#     i = child[i] + (x goes right)
# and a leaf is a fixed point, so several trees are walked side by side for a
# fixed number of steps (their depth) without a data-dependent branch. Nothing
# here checks a child or feature index: the loader has proved them in range.

cimport cython
cimport numpy as cnp
from libc.math cimport exp, log1p
from libc.stdlib cimport malloc, free

cnp.import_array()

# Node kinds, in the two low bits of TNode.fx (the feature index is fx >> 2).
cdef enum:
    _K_NAN_LEFT = 0    # numerical split: right iff x > threshold (NaN goes left)
    _K_NAN_RIGHT = 1   # numerical split: right iff not x <= threshold (NaN goes right)
    _K_LEAF = 2        # leaf: threshold +inf, child = itself, so it never moves
    _K_COMPLEX = 3     # categorical, zero-as-missing, or a threshold inside the zero band

# Output transforms (LightGBM's ObjectiveFunction::ConvertOutput).
cdef enum:
    _T_IDENTITY = 0
    _T_SIGMOID = 1     # 1 / (1 + exp(-s * x)), per class (binary, multiclassova, cross_entropy)
    _T_SOFTMAX = 2
    _T_EXP = 3         # poisson, gamma, tweedie
    _T_SOFTPLUS = 4    # cross_entropy_lambda: log(1 + exp(x))
    _T_SQUARE = 5      # reg_sqrt: sign(x) * x * x

# Trees deeper than this are walked until their leaf instead of for a fixed depth.
cdef enum:
    _DEEP_TREE = 20
    # Below this many tree evaluations per call the GIL is kept: releasing and
    # retaking it costs more than the work, and under contention can wait a switch interval.
    _NOGIL_MIN_WORK = 4096

cdef extern from *:
    """
    #define NBA_KZERO ((double)1e-35f)  /* LightGBM's kZeroThreshold: a float constant */
    """
    const double NBA_KZERO

ctypedef struct TNode:
    double thr          # threshold; categorical: bitset slot; leaf: +inf
    uint32_t fx         # feature << 2 | kind
    int32_t child       # left child (the right child is child + 1); leaf: itself


ctypedef struct _Ens:
    const TNode* nodes
    const double* leafval     # value of leaf nodes, indexed like nodes
    const uint8_t* dts        # LightGBM decision_type per node (complex nodes only)
    const int32_t* cat_off    # first bitset word per categorical node
    const int32_t* cat_len    # bitset words per categorical node
    const uint32_t* bits
    const int32_t* roots
    const int32_t* depth
    int ntpi


cdef inline bint _complex_right(double v, double thr, uint8_t dt,
                                const uint32_t* bits, int32_t nwords) noexcept nogil:
    """Tree::Decision (true = right) for the nodes the fast step does not cover."""
    cdef int32_t iv
    cdef int mt
    if dt & 1:
        # CategoricalDecision: NaN and negative ints go right; static_cast<int>
        # truncates toward zero, and out-of-range doubles become INT_MIN on x86.
        if not (v > -1.0 and v < 2147483648.0):
            return True
        iv = <int32_t>v
        if (iv >> 5) >= nwords:
            return True
        return not ((bits[iv >> 5] >> (iv & 31)) & 1)
    mt = (dt >> 2) & 3
    if v != v:
        if mt == 2:
            return (dt & 2) == 0
        v = 0.0
    if -NBA_KZERO <= v <= NBA_KZERO:
        if mt == 1:
            return (dt & 2) == 0
        v = 0.0  # LightGBM drops |x| <= kZeroThreshold from dense rows: it reads 0
    return not (v <= thr)


cdef inline int32_t _step(const _Ens* e, int32_t i, const double* x) noexcept nogil:
    """One step down from node i (a leaf stays put)."""
    cdef const TNode* nd = e.nodes + i
    cdef uint32_t fx = nd.fx
    cdef double v = x[fx >> 2]
    if (fx & 3) == _K_COMPLEX:
        return nd.child + <int32_t>_complex_right(v, nd.thr, e.dts[i], e.bits + e.cat_off[i], e.cat_len[i])
    return nd.child + <int32_t>((v > nd.thr) | ((v != v) & <int>(fx & 1)))


cdef inline double _tree(const _Ens* e, Py_ssize_t t, const double* x) noexcept nogil:
    """Leaf value of tree t for row x."""
    cdef int32_t i = e.roots[t]
    cdef int32_t d = e.depth[t]
    cdef int32_t s
    if d <= _DEEP_TREE:
        for s in range(d):
            i = _step(e, i, x)
    else:
        while (e.nodes[i].fx & 3) != _K_LEAF:
            i = _step(e, i, x)
    return e.leafval[i]


cdef inline void _raw_row(const _Ens* e, const double* x, double* out, Py_ssize_t t0, Py_ssize_t t1) noexcept nogil:
    """Raw scores of trees [t0, t1) for row x into out[0:ntpi].

    Exactly GBDT::PredictRaw: out[k] starts at 0.0 and adds each tree of class k in
    iteration order. Four trees are walked side by side; their sums stay in order.
    """
    cdef int ntpi = e.ntpi
    cdef Py_ssize_t t = t0
    cdef int32_t i0, i1, i2, i3, d, s
    cdef double v0, v1, v2, v3, acc = 0.0
    cdef int k = 0
    if ntpi > 1:
        for k in range(ntpi):
            out[k] = 0.0
        k = 0
    while t + 4 <= t1:
        d = e.depth[t]
        if e.depth[t + 1] > d:
            d = e.depth[t + 1]
        if e.depth[t + 2] > d:
            d = e.depth[t + 2]
        if e.depth[t + 3] > d:
            d = e.depth[t + 3]
        if d <= _DEEP_TREE:
            i0 = e.roots[t]
            i1 = e.roots[t + 1]
            i2 = e.roots[t + 2]
            i3 = e.roots[t + 3]
            for s in range(d):
                i0 = _step(e, i0, x)
                i1 = _step(e, i1, x)
                i2 = _step(e, i2, x)
                i3 = _step(e, i3, x)
            v0 = e.leafval[i0]
            v1 = e.leafval[i1]
            v2 = e.leafval[i2]
            v3 = e.leafval[i3]
        else:
            v0 = _tree(e, t, x)
            v1 = _tree(e, t + 1, x)
            v2 = _tree(e, t + 2, x)
            v3 = _tree(e, t + 3, x)
        if ntpi == 1:
            acc += v0
            acc += v1
            acc += v2
            acc += v3
        else:
            out[k] += v0
            k += 1
            if k == ntpi:
                k = 0
            out[k] += v1
            k += 1
            if k == ntpi:
                k = 0
            out[k] += v2
            k += 1
            if k == ntpi:
                k = 0
            out[k] += v3
            k += 1
            if k == ntpi:
                k = 0
        t += 4
    while t < t1:
        v0 = _tree(e, t, x)
        if ntpi == 1:
            acc += v0
        else:
            out[k] += v0
            k += 1
            if k == ntpi:
                k = 0
        t += 1
    if ntpi == 1:
        out[0] = acc


cdef inline void _transform(double* out, int ncls, int code, double param) noexcept nogil:
    """ConvertOutput of LightGBM's objective, in place on one row of ncls raw scores."""
    cdef int k
    cdef double wmax, wsum
    if code == _T_IDENTITY:
        return
    if code == _T_SIGMOID:
        for k in range(ncls):
            out[k] = 1.0 / (1.0 + exp(-param * out[k]))
    elif code == _T_SOFTMAX:
        wmax = out[0]
        for k in range(1, ncls):
            if out[k] > wmax:
                wmax = out[k]
        wsum = 0.0
        for k in range(ncls):
            out[k] = exp(out[k] - wmax)
            wsum += out[k]
        for k in range(ncls):
            out[k] /= wsum
    elif code == _T_EXP:
        for k in range(ncls):
            out[k] = exp(out[k])
    elif code == _T_SOFTPLUS:
        for k in range(ncls):
            out[k] = log1p(exp(out[k]))
    elif code == _T_SQUARE:
        for k in range(ncls):
            out[k] = (-1.0 if out[k] < 0.0 else (1.0 if out[k] > 0.0 else 0.0)) * out[k] * out[k]


@cython.final
cdef class TreeEnsembleCore:
    """Flattened LightGBM ensemble: paired-sibling nodes, leaf values, bitsets, per-tree roots.

    Built by ``nba.models.lightgbm`` from validated arrays; scores rows exactly as
    LightGBM's ``GBDT::Predict`` does (same summation order, same missing rules).
    """

    cdef _Ens _e
    cdef TNode* _nodes
    cdef double* _leafval
    cdef uint8_t* _dts
    cdef int32_t* _cat_off
    cdef int32_t* _cat_len
    cdef uint32_t* _bits
    cdef int32_t* _roots
    cdef int32_t* _depth
    cdef Py_ssize_t _n_trees
    cdef readonly int num_features
    cdef readonly int num_tree_per_iteration
    cdef readonly int num_iterations
    cdef readonly int transform
    cdef readonly double transform_param
    cdef readonly bint average_output
    cdef object _coerce_row

    def __cinit__(self):
        self._nodes = NULL
        self._leafval = NULL
        self._dts = NULL
        self._cat_off = NULL
        self._cat_len = NULL
        self._bits = NULL
        self._roots = NULL
        self._depth = NULL

    def __init__(self, const double[::1] thr, const uint32_t[::1] fx, const int32_t[::1] child,
                 const double[::1] leafval, const uint8_t[::1] decision_type, const int32_t[::1] cat_off,
                 const int32_t[::1] cat_len, const uint32_t[::1] cat_bits, const int32_t[::1] roots,
                 const int32_t[::1] depth, int num_features, int num_tree_per_iteration, int transform,
                 double transform_param, bint average_output, coerce_row):
        """Copy the validated arrays into one allocation each (see nba.models.lightgbm)."""
        cdef Py_ssize_t n = thr.shape[0]
        cdef Py_ssize_t i
        if (fx.shape[0] != n or child.shape[0] != n or leafval.shape[0] != n or decision_type.shape[0] != n
                or cat_off.shape[0] != n or cat_len.shape[0] != n or depth.shape[0] != roots.shape[0]):
            raise ValueError("node arrays (and roots/depth) must have matching lengths")
        if num_tree_per_iteration < 1 or roots.shape[0] % num_tree_per_iteration != 0:
            raise ValueError("the number of trees must be a multiple of num_tree_per_iteration")
        if self._nodes != NULL:
            raise ValueError("TreeEnsembleCore is already initialised")
        self._n_trees = roots.shape[0]
        self._nodes = <TNode*>malloc(max(n, 1) * sizeof(TNode))
        self._leafval = <double*>malloc(max(n, 1) * sizeof(double))
        self._dts = <uint8_t*>malloc(max(n, 1) * sizeof(uint8_t))
        self._cat_off = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
        self._cat_len = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
        self._bits = <uint32_t*>malloc(max(cat_bits.shape[0], 1) * sizeof(uint32_t))
        self._roots = <int32_t*>malloc(max(self._n_trees, 1) * sizeof(int32_t))
        self._depth = <int32_t*>malloc(max(self._n_trees, 1) * sizeof(int32_t))
        if (self._nodes == NULL or self._leafval == NULL or self._dts == NULL or self._cat_off == NULL
                or self._cat_len == NULL or self._bits == NULL or self._roots == NULL or self._depth == NULL):
            raise MemoryError()
        for i in range(n):
            self._nodes[i].thr = thr[i]
            self._nodes[i].fx = fx[i]
            self._nodes[i].child = child[i]
            self._leafval[i] = leafval[i]
            self._dts[i] = decision_type[i]
            self._cat_off[i] = cat_off[i]
            self._cat_len[i] = cat_len[i]
        for i in range(cat_bits.shape[0]):
            self._bits[i] = cat_bits[i]
        for i in range(self._n_trees):
            self._roots[i] = roots[i]
            self._depth[i] = depth[i]
        self._e.nodes = self._nodes
        self._e.leafval = self._leafval
        self._e.dts = self._dts
        self._e.cat_off = self._cat_off
        self._e.cat_len = self._cat_len
        self._e.bits = self._bits
        self._e.roots = self._roots
        self._e.depth = self._depth
        self._e.ntpi = num_tree_per_iteration
        self.num_features = num_features
        self.num_tree_per_iteration = num_tree_per_iteration
        self.num_iterations = <int>(self._n_trees // num_tree_per_iteration)
        self.transform = transform
        self.transform_param = transform_param
        self.average_output = average_output
        self._coerce_row = coerce_row

    def __dealloc__(self):
        free(self._nodes)
        free(self._leafval)
        free(self._dts)
        free(self._cat_off)
        free(self._cat_len)
        free(self._bits)
        free(self._roots)
        free(self._depth)

    cdef inline void _row(self, const double* x, double* out, int it0, int n_it, bint raw) noexcept nogil:
        """One row: raw sum; unless raw, average_output division then the objective's transform.

        As in GBDT::Predict: raw scores of an averaged (random forest) model are the plain sum.
        """
        cdef int k
        cdef int ntpi = self._e.ntpi
        _raw_row(&self._e, x, out, <Py_ssize_t>it0 * ntpi, <Py_ssize_t>(it0 + n_it) * ntpi)
        if raw:
            return
        if self.average_output:
            for k in range(ntpi):
                out[k] /= n_it
        _transform(out, ntpi, self.transform, self.transform_param)

    def predict(self, cnp.ndarray X, cnp.ndarray out, int start_iteration, int num_iteration, bint raw_score):
        """Score C-contiguous float64 rows ``X`` (n, num_features) into ``out`` (n * classes float64).

        ``start_iteration``/``num_iteration`` are already resolved (0 <= start, start + num <= total).
        The GIL is released unless the call is too small for that to pay.
        """
        if (cnp.PyArray_TYPE(X) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(X) != 2
                or not cnp.PyArray_IS_C_CONTIGUOUS(X) or X.shape[1] != self.num_features):
            raise ValueError("X must be a C-contiguous float64 array of shape (n, num_features)")
        if (cnp.PyArray_TYPE(out) != cnp.NPY_DOUBLE or not cnp.PyArray_IS_C_CONTIGUOUS(out)
                or not cnp.PyArray_ISWRITEABLE(out)
                or cnp.PyArray_SIZE(out) != X.shape[0] * self.num_tree_per_iteration):
            raise ValueError("out must be a writable C-contiguous float64 array of n * classes")
        if start_iteration < 0 or num_iteration < 0 or start_iteration + num_iteration > self.num_iterations:
            raise ValueError("iteration range out of bounds")
        cdef Py_ssize_t n = X.shape[0]
        cdef Py_ssize_t nf = self.num_features
        cdef int ntpi = self.num_tree_per_iteration
        cdef const double* xp = <const double*>cnp.PyArray_DATA(X)
        cdef double* op = <double*>cnp.PyArray_DATA(out)
        cdef Py_ssize_t i
        if n * num_iteration * ntpi >= _NOGIL_MIN_WORK:
            with nogil:
                for i in range(n):
                    self._row(xp + i * nf, op + i * ntpi, start_iteration, num_iteration, raw_score)
        else:
            for i in range(n):
                self._row(xp + i * nf, op + i * ntpi, start_iteration, num_iteration, raw_score)
        return out

    def predict_row(self, x, bint raw_score=False):
        """Score one row (num_features values): a float, or a new array of class scores."""
        cdef cnp.ndarray a
        if (type(x) is cnp.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_DOUBLE
                and cnp.PyArray_NDIM(<cnp.ndarray>x) == 1
                and cnp.PyArray_DIM(<cnp.ndarray>x, 0) == self.num_features
                and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>x)):
            a = <cnp.ndarray>x
        else:
            a = self._coerce_row(x)
        cdef const double* xp = <const double*>cnp.PyArray_DATA(a)
        cdef double r[1]
        cdef cnp.ndarray res
        cdef cnp.npy_intp dim
        cdef bint release = self._n_trees >= _NOGIL_MIN_WORK
        if self.num_tree_per_iteration == 1:
            if release:
                with nogil:
                    self._row(xp, r, 0, self.num_iterations, raw_score)
            else:
                self._row(xp, r, 0, self.num_iterations, raw_score)
            return r[0]
        dim = self.num_tree_per_iteration
        res = cnp.PyArray_EMPTY(1, &dim, cnp.NPY_DOUBLE, 0)
        if release:
            with nogil:
                self._row(xp, <double*>cnp.PyArray_DATA(res), 0, self.num_iterations, raw_score)
        else:
            self._row(xp, <double*>cnp.PyArray_DATA(res), 0, self.num_iterations, raw_score)
        return res
