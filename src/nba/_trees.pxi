# Tree-ensemble kernels (LightGBM semantics): included from _core.pyx.
#
# nba.models.lightgbm parses and validates a model, lays every tree out in
# preorder (a node's left child is the next node) and hands the flat arrays to
# TreeEnsembleCore. Nothing here checks a child index or a feature index: the
# loader has proved them in range, once.

cimport numpy as cnp
from libc.math cimport exp, log1p, fabs
from libc.stdlib cimport malloc, free
from libc.string cimport memset

cnp.import_array()

cimport cython

# Node kinds, stored in the two low bits of TNode.fx (the feature index is fx >> 2).
cdef enum:
    _K_NAN_RIGHT = 0   # numerical split, NaN goes right: left iff x <= threshold
    _K_NAN_LEFT = 1    # numerical split, NaN goes left
    _K_COMPLEX = 2     # categorical, zero-as-missing, or a threshold inside the zero band
    _K_LEAF = 3        # leaf: thr holds the leaf value

# Output transforms (LightGBM's ObjectiveFunction::ConvertOutput).
cdef enum:
    _T_IDENTITY = 0
    _T_SIGMOID = 1     # 1 / (1 + exp(-s * x)), per class (binary, multiclassova, cross_entropy)
    _T_SOFTMAX = 2
    _T_EXP = 3         # poisson, gamma, tweedie
    _T_SOFTPLUS = 4    # cross_entropy_lambda: log(1 + exp(x))
    _T_SQUARE = 5      # reg_sqrt: sign(x) * x * x

cdef extern from *:
    """
    #define NBA_KZERO 1e-35  /* LightGBM's kZeroThreshold */
    """
    const double NBA_KZERO

ctypedef struct TNode:
    double thr          # threshold (numerical), bitset slot (categorical) or leaf value
    uint32_t fx         # feature << 2 | kind
    int32_t right       # index of the right child; the left child is the next node


cdef inline bint _complex_left(double v, double thr, uint8_t dt,
                               const uint32_t* bits, int32_t nwords) noexcept nogil:
    """Tree::Decision for the nodes the fast path does not cover."""
    cdef int32_t iv
    cdef int mt
    if dt & 1:
        # CategoricalDecision: NaN and negative ints go right; static_cast<int>
        # truncates toward zero, and out-of-range doubles become INT_MIN on x86.
        if not (v > -1.0 and v < 2147483648.0):
            return False
        iv = <int32_t>v
        if (iv >> 5) >= nwords:
            return False
        return (bits[iv >> 5] >> (iv & 31)) & 1
    mt = (dt >> 2) & 3
    if v != v:
        if mt == 2:
            return (dt & 2) != 0
        v = 0.0
    if -NBA_KZERO <= v <= NBA_KZERO:
        if mt == 1:
            return (dt & 2) != 0
        v = 0.0  # LightGBM drops |x| <= kZeroThreshold from dense rows: it reads 0
    return v <= thr


cdef inline double _tree_value(const TNode* nodes, int32_t root, const double* x,
                               const uint8_t* dts, const int32_t* cat_off,
                               const int32_t* cat_len, const uint32_t* bits) noexcept nogil:
    """Leaf value reached by row x in the tree rooted at nodes[root]."""
    cdef const TNode* nd = nodes + root
    cdef uint32_t fx, k
    cdef double v
    cdef bint left
    cdef Py_ssize_t j
    while True:
        fx = nd.fx
        k = fx & 3
        if k < 2:
            v = x[fx >> 2]
            left = (v <= nd.thr) | ((v != v) & <int>k)
        elif k == _K_LEAF:
            return nd.thr
        else:
            j = nd - nodes
            left = _complex_left(x[fx >> 2], nd.thr, dts[j], bits + cat_off[j], cat_len[j])
        if left:
            nd = nd + 1
        else:
            nd = nodes + nd.right


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
    """Flattened LightGBM ensemble: preorder nodes, categorical bitsets, per-tree roots.

    Built by ``nba.models.lightgbm`` from validated arrays; scores rows exactly as
    LightGBM's ``GBDT::Predict`` does (same summation order, same missing rules).
    """

    cdef TNode* _nodes
    cdef uint8_t* _dts
    cdef int32_t* _cat_off
    cdef int32_t* _cat_len
    cdef uint32_t* _bits
    cdef int32_t* _roots
    cdef Py_ssize_t _n_nodes
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
        self._dts = NULL
        self._cat_off = NULL
        self._cat_len = NULL
        self._bits = NULL
        self._roots = NULL

    def __init__(self, const double[::1] thr, const uint32_t[::1] fx, const int32_t[::1] right,
                 const uint8_t[::1] decision_type, const int32_t[::1] cat_off, const int32_t[::1] cat_len,
                 const uint32_t[::1] cat_bits, const int32_t[::1] roots, int num_features,
                 int num_tree_per_iteration, int transform, double transform_param,
                 bint average_output, coerce_row):
        """Copy the validated arrays into one allocation each (see nba.models.lightgbm)."""
        cdef Py_ssize_t n = thr.shape[0]
        cdef Py_ssize_t i
        if (fx.shape[0] != n or right.shape[0] != n or decision_type.shape[0] != n
                or cat_off.shape[0] != n or cat_len.shape[0] != n):
            raise ValueError("node arrays must all have the same length")
        if num_tree_per_iteration < 1 or roots.shape[0] % num_tree_per_iteration != 0:
            raise ValueError("the number of trees must be a multiple of num_tree_per_iteration")
        if self._nodes != NULL:
            raise ValueError("TreeEnsembleCore is already initialised")
        self._n_nodes = n
        self._n_trees = roots.shape[0]
        self._nodes = <TNode*>malloc(max(n, 1) * sizeof(TNode))
        self._dts = <uint8_t*>malloc(max(n, 1) * sizeof(uint8_t))
        self._cat_off = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
        self._cat_len = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
        self._bits = <uint32_t*>malloc(max(cat_bits.shape[0], 1) * sizeof(uint32_t))
        self._roots = <int32_t*>malloc(max(self._n_trees, 1) * sizeof(int32_t))
        if (self._nodes == NULL or self._dts == NULL or self._cat_off == NULL or self._cat_len == NULL
                or self._bits == NULL or self._roots == NULL):
            raise MemoryError()
        for i in range(n):
            self._nodes[i].thr = thr[i]
            self._nodes[i].fx = fx[i]
            self._nodes[i].right = right[i]
            self._dts[i] = decision_type[i]
            self._cat_off[i] = cat_off[i]
            self._cat_len[i] = cat_len[i]
        for i in range(cat_bits.shape[0]):
            self._bits[i] = cat_bits[i]
        for i in range(self._n_trees):
            self._roots[i] = roots[i]
        self.num_features = num_features
        self.num_tree_per_iteration = num_tree_per_iteration
        self.num_iterations = <int>(self._n_trees // num_tree_per_iteration)
        self.transform = transform
        self.transform_param = transform_param
        self.average_output = average_output
        self._coerce_row = coerce_row

    def __dealloc__(self):
        free(self._nodes)
        free(self._dts)
        free(self._cat_off)
        free(self._cat_len)
        free(self._bits)
        free(self._roots)

    cdef inline void _row_raw(self, const double* x, double* out, int it0, int n_it) noexcept nogil:
        """Raw scores of one row: per class, trees in iteration order, summed from 0.0."""
        cdef int ntpi = self.num_tree_per_iteration
        cdef int it, k
        cdef Py_ssize_t t
        cdef double acc
        if ntpi == 1:
            acc = 0.0
            for it in range(it0, it0 + n_it):
                acc += _tree_value(self._nodes, self._roots[it], x, self._dts,
                                   self._cat_off, self._cat_len, self._bits)
            out[0] = acc
            return
        for k in range(ntpi):
            out[k] = 0.0
        for it in range(it0, it0 + n_it):
            t = <Py_ssize_t>it * ntpi
            for k in range(ntpi):
                out[k] += _tree_value(self._nodes, self._roots[t + k], x, self._dts,
                                      self._cat_off, self._cat_len, self._bits)

    cdef inline void _row(self, const double* x, double* out, int it0, int n_it, bint raw) noexcept nogil:
        """One row: raw sum; unless raw, average_output division then the objective's transform.

        As in GBDT::Predict: raw scores of an averaged (random forest) model are the plain sum.
        """
        cdef int k
        cdef int ntpi = self.num_tree_per_iteration
        self._row_raw(x, out, it0, n_it)
        if raw:
            return
        if self.average_output:
            for k in range(ntpi):
                out[k] /= n_it
        _transform(out, ntpi, self.transform, self.transform_param)

    def predict(self, cnp.ndarray X, cnp.ndarray out, int start_iteration, int num_iteration, bint raw_score):
        """Score C-contiguous float64 rows ``X`` (n, num_features) into ``out`` (n * classes float64).

        ``start_iteration``/``num_iteration`` are already resolved (0 <= start, start + num <= total).
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
        with nogil:
            for i in range(n):
                self._row(xp + i * nf, op + i * ntpi, start_iteration, num_iteration, raw_score)
        return out

    def predict_row(self, x, bint raw_score=False):
        """Score one row (num_features values); a float, or an array of class scores."""
        cdef cnp.ndarray a
        if (type(x) is cnp.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_DOUBLE
                and cnp.PyArray_NDIM(<cnp.ndarray>x) == 1
                and cnp.PyArray_DIM(<cnp.ndarray>x, 0) == self.num_features
                and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>x)):
            a = <cnp.ndarray>x
        else:
            a = self._coerce_row(x)
        cdef const double* xp = <const double*>cnp.PyArray_DATA(a)
        cdef double r
        cdef cnp.ndarray res
        cdef cnp.npy_intp dim
        if self.num_tree_per_iteration == 1:
            with nogil:
                self._row(xp, &r, 0, self.num_iterations, raw_score)
            return r
        dim = self.num_tree_per_iteration
        res = cnp.PyArray_EMPTY(1, &dim, cnp.NPY_DOUBLE, 0)
        with nogil:
            self._row(xp, <double*>cnp.PyArray_DATA(res), 0, self.num_iterations, raw_score)
        return res
