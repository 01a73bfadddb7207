# Tree-ensemble kernels (LightGBM semantics); the contract other modules cimport is trees.pxd.
#
# nba.models.lightgbm parses and validates a model and lays every tree out with
# sibling pairs adjacent (a node's right child directly follows its left child)
# and every leaf pointing at itself. A step from node i is then branch free:
#     i = child[i] + (x goes right)
# and a leaf is a fixed point, so walks need no data-dependent branch: a batch
# walks blocks of rows through each tree for the tree's depth; one row walks ten
# "lane chains" side by side (see below), or, for models those cannot serve,
# eight trees at a time until all reach a leaf. Independent walks overlap their
# memory loads, which is what bounds tree traversal. Nothing here checks a child
# or feature index: the loader has proved them in range.

cimport cython
cimport numpy as cnp
from libc.math cimport exp, log1p, INFINITY, NAN
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t
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

# The same numbers for nba.models.lightgbm, which builds the node arrays: defined once, here.
NODE_NAN_LEFT, NODE_NAN_RIGHT, NODE_LEAF, NODE_COMPLEX = _K_NAN_LEFT, _K_NAN_RIGHT, _K_LEAF, _K_COMPLEX
TRANSFORM_IDENTITY, TRANSFORM_SIGMOID, TRANSFORM_SOFTMAX = _T_IDENTITY, _T_SIGMOID, _T_SOFTMAX
TRANSFORM_EXP, TRANSFORM_SOFTPLUS, TRANSFORM_SQUARE = _T_EXP, _T_SOFTPLUS, _T_SQUARE

cdef enum:
    # Batches walk a tree for a fixed number of steps (its depth) unless it is this
    # deep; then each row walks until its leaf.
    _DEEP_TREE = 32
    # Rows walked side by side through each tree in a batch.
    _BLOCK = 16
    # A batch block is transposed (feature-major) on the stack when its rows are at
    # most this wide: _BLOCK x 256 doubles = 32 KiB.
    _XT_MAX_FEATURES = 256

cdef extern from *:
    """
    #define NBA_KZERO ((double)1e-35f)  /* LightGBM's kZeroThreshold: a float constant */
    """
    const double NBA_KZERO

cdef inline bint _complex_right(double v, double thr, uint8_t dt,
                                const uint32_t* bits, int32_t nwords) noexcept nogil:
    """Tree::Decision (true = right) for the nodes the fast steps do not cover."""
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


# One step down from node i, in three flavours; a leaf (threshold +inf, its own child) stays put.
# _step_plain: the row has no NaN and the tree no complex node, so right iff x > threshold.
# _step_nan: numerical nodes only, NaN routed by the node kind.
# _step_full: any node.

cdef inline int32_t _step_plain(const TNode* nodes, int32_t i, const double* x) noexcept nogil:
    cdef const TNode* nd = nodes + i
    return nd.child + <int32_t>(x[nd.fx >> 2] > nd.thr)


cdef inline int32_t _step_nan(const TNode* nodes, int32_t i, const double* x) noexcept nogil:
    cdef const TNode* nd = nodes + i
    cdef uint32_t fx = nd.fx
    cdef double v = x[fx >> 2]
    return nd.child + <int32_t>((v > nd.thr) | ((v != v) & <int>(fx & 1)))


cdef inline int32_t _step_full(const _Ens* e, int32_t i, const double* x) noexcept nogil:
    cdef const TNode* nd = e.nodes + i
    cdef uint32_t fx = nd.fx
    cdef double v = x[fx >> 2]
    if (fx & 3) == _K_COMPLEX:
        return nd.child + <int32_t>_complex_right(v, nd.thr, e.dts[i], e.bits + e.cat_off[i],
                                                  e.cat_len[i])
    return nd.child + <int32_t>((v > nd.thr) | ((v != v) & <int>(fx & 1)))


cdef inline bint _is_leaf(const TNode* nodes, int32_t i) noexcept nogil:
    return (nodes[i].fx & 3) == _K_LEAF


cdef inline bint _has_nan(const double* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef bint nan = False
    for j in range(n):
        nan |= x[j] != x[j]
    return nan


cdef inline double _tree_deep(const _Ens* e, Py_ssize_t t, const double* x) noexcept nogil:
    """Leaf value of tree t for row x, walking until the leaf."""
    cdef int32_t i = e.roots[t]
    while not _is_leaf(e.nodes, i):
        i = _step_full(e, i, x)
    return e.leafval[i]


cdef inline void _eight_trees(const _Ens* e, Py_ssize_t t, const double* x, bint nan,
                              double* v) noexcept nogil:
    """Leaf values of trees t..t+7 for row x, walked side by side until all eight reach a leaf."""
    cdef const TNode* nodes = e.nodes
    cdef int32_t i0 = e.roots[t]
    cdef int32_t i1 = e.roots[t + 1]
    cdef int32_t i2 = e.roots[t + 2]
    cdef int32_t i3 = e.roots[t + 3]
    cdef int32_t i4 = e.roots[t + 4]
    cdef int32_t i5 = e.roots[t + 5]
    cdef int32_t i6 = e.roots[t + 6]
    cdef int32_t i7 = e.roots[t + 7]
    if (e.mixed[t] | e.mixed[t + 1] | e.mixed[t + 2] | e.mixed[t + 3]
            | e.mixed[t + 4] | e.mixed[t + 5] | e.mixed[t + 6] | e.mixed[t + 7]):
        while True:
            i0 = _step_full(e, i0, x)
            i1 = _step_full(e, i1, x)
            i2 = _step_full(e, i2, x)
            i3 = _step_full(e, i3, x)
            i4 = _step_full(e, i4, x)
            i5 = _step_full(e, i5, x)
            i6 = _step_full(e, i6, x)
            i7 = _step_full(e, i7, x)
            if (_is_leaf(nodes, i0) & _is_leaf(nodes, i1) & _is_leaf(nodes, i2) & _is_leaf(nodes, i3)
                    & _is_leaf(nodes, i4) & _is_leaf(nodes, i5) & _is_leaf(nodes, i6) & _is_leaf(nodes, i7)):
                break
    elif nan:
        while True:
            i0 = _step_nan(nodes, i0, x)
            i1 = _step_nan(nodes, i1, x)
            i2 = _step_nan(nodes, i2, x)
            i3 = _step_nan(nodes, i3, x)
            i4 = _step_nan(nodes, i4, x)
            i5 = _step_nan(nodes, i5, x)
            i6 = _step_nan(nodes, i6, x)
            i7 = _step_nan(nodes, i7, x)
            if (_is_leaf(nodes, i0) & _is_leaf(nodes, i1) & _is_leaf(nodes, i2) & _is_leaf(nodes, i3)
                    & _is_leaf(nodes, i4) & _is_leaf(nodes, i5) & _is_leaf(nodes, i6) & _is_leaf(nodes, i7)):
                break
    else:
        while True:
            i0 = _step_plain(nodes, i0, x)
            i1 = _step_plain(nodes, i1, x)
            i2 = _step_plain(nodes, i2, x)
            i3 = _step_plain(nodes, i3, x)
            i4 = _step_plain(nodes, i4, x)
            i5 = _step_plain(nodes, i5, x)
            i6 = _step_plain(nodes, i6, x)
            i7 = _step_plain(nodes, i7, x)
            if (_is_leaf(nodes, i0) & _is_leaf(nodes, i1) & _is_leaf(nodes, i2) & _is_leaf(nodes, i3)
                    & _is_leaf(nodes, i4) & _is_leaf(nodes, i5) & _is_leaf(nodes, i6) & _is_leaf(nodes, i7)):
                break
    v[0] = e.leafval[i0]
    v[1] = e.leafval[i1]
    v[2] = e.leafval[i2]
    v[3] = e.leafval[i3]
    v[4] = e.leafval[i4]
    v[5] = e.leafval[i5]
    v[6] = e.leafval[i6]
    v[7] = e.leafval[i7]


cdef inline void _raw_row(const _Ens* e, const double* x, Py_ssize_t nf, double* out,
                          Py_ssize_t t0, Py_ssize_t t1) noexcept nogil:
    """Raw scores of trees [t0, t1) for one row x into out[0:ntpi].

    Exactly GBDT::PredictRaw: out[k] starts at 0.0 and adds each tree of class k in
    iteration order. Trees are walked eight at a time (the "lockstep" row_kernel); their
    values are added in order.
    """
    cdef int ntpi = e.ntpi
    cdef Py_ssize_t t = t0
    cdef double v[8]
    cdef double acc = 0.0
    cdef int k = 0
    cdef int g
    cdef bint nan = _has_nan(x, nf)
    if ntpi > 1:
        for k in range(ntpi):
            out[k] = 0.0
        k = 0
    while t + 8 <= t1:
        _eight_trees(e, t, x, nan, v)
        if ntpi == 1:
            for g in range(8):
                acc += v[g]
        else:
            for g in range(8):
                out[k] += v[g]
                k += 1
                if k == ntpi:
                    k = 0
        t += 8
    while t < t1:
        v[0] = _tree_deep(e, t, x)
        if ntpi == 1:
            acc += v[0]
        else:
            out[k] += v[0]
            k += 1
            if k == ntpi:
                k = 0
        t += 1
    if ntpi == 1:
        out[0] = acc


# Steps on a transposed block: feature f of the walk's row is xt[f * _BLOCK].

cdef inline int32_t _tstep_plain(const TNode* nodes, int32_t i, const double* xt) noexcept nogil:
    cdef const TNode* nd = nodes + i
    return nd.child + <int32_t>(xt[(nd.fx >> 2) * _BLOCK] > nd.thr)


cdef inline int32_t _tstep_nan(const TNode* nodes, int32_t i, const double* xt) noexcept nogil:
    cdef const TNode* nd = nodes + i
    cdef uint32_t fx = nd.fx
    cdef double v = xt[(fx >> 2) * _BLOCK]
    return nd.child + <int32_t>((v > nd.thr) | ((v != v) & <int>(fx & 1)))


cdef inline void _walk8(const TNode* nodes, int32_t root, int32_t d, const double* xt, bint nan,
                        int32_t* ii) noexcept nogil:
    """Eight rows of a transposed block (xt[0..7]) d steps down one numerical tree, in registers."""
    cdef int32_t i0 = root, i1 = root, i2 = root, i3 = root, i4 = root, i5 = root, i6 = root, i7 = root
    cdef int32_t s
    if nan:
        for s in range(d):
            i0 = _tstep_nan(nodes, i0, xt)
            i1 = _tstep_nan(nodes, i1, xt + 1)
            i2 = _tstep_nan(nodes, i2, xt + 2)
            i3 = _tstep_nan(nodes, i3, xt + 3)
            i4 = _tstep_nan(nodes, i4, xt + 4)
            i5 = _tstep_nan(nodes, i5, xt + 5)
            i6 = _tstep_nan(nodes, i6, xt + 6)
            i7 = _tstep_nan(nodes, i7, xt + 7)
    else:
        for s in range(d):
            i0 = _tstep_plain(nodes, i0, xt)
            i1 = _tstep_plain(nodes, i1, xt + 1)
            i2 = _tstep_plain(nodes, i2, xt + 2)
            i3 = _tstep_plain(nodes, i3, xt + 3)
            i4 = _tstep_plain(nodes, i4, xt + 4)
            i5 = _tstep_plain(nodes, i5, xt + 5)
            i6 = _tstep_plain(nodes, i6, xt + 6)
            i7 = _tstep_plain(nodes, i7, xt + 7)
    ii[0] = i0
    ii[1] = i1
    ii[2] = i2
    ii[3] = i3
    ii[4] = i4
    ii[5] = i5
    ii[6] = i6
    ii[7] = i7


cdef void _raw_block(const _Ens* e, const double* X, Py_ssize_t nf, Py_ssize_t nb, double* out,
                     Py_ssize_t t0, Py_ssize_t t1) noexcept nogil:
    """Raw scores of nb <= _BLOCK consecutive rows into out[nb * ntpi], trees [t0, t1).

    Each tree walks all rows of the block side by side for its depth (a leaf stays
    put), so its nodes stay in L1 and the rows' chains overlap. Rows of at most
    _XT_MAX_FEATURES features are first transposed (a short block repeats its last
    row), so numerical trees walk eight rows at a time in registers. Per row the
    sums are still per class, in iteration order, from 0.0, as LightGBM adds them.
    """
    cdef int32_t ii[_BLOCK]
    cdef double xt[_BLOCK * _XT_MAX_FEATURES]
    cdef const TNode* nodes = e.nodes
    cdef int ntpi = e.ntpi
    cdef Py_ssize_t t, r, f
    cdef const double* src
    cdef int32_t d, s, root
    cdef int k = 0
    cdef bint nan = _has_nan(X, nb * nf)
    cdef bint transposed = nf <= _XT_MAX_FEATURES
    for r in range(nb * ntpi):
        out[r] = 0.0
    if transposed:
        for r in range(_BLOCK):
            src = X + min(r, nb - 1) * nf
            for f in range(nf):
                xt[f * _BLOCK + r] = src[f]
    for t in range(t0, t1):
        d = e.depth[t]
        root = e.roots[t]
        for r in range(nb):
            ii[r] = root
        if transposed and d < _DEEP_TREE and not e.mixed[t]:
            _walk8(nodes, root, d, xt, nan, ii)
            if nb > 8:
                _walk8(nodes, root, d, xt + 8, nan, ii + 8)
        elif d >= _DEEP_TREE:
            for r in range(nb):
                while not _is_leaf(nodes, ii[r]):
                    ii[r] = _step_full(e, ii[r], X + r * nf)
        elif e.mixed[t]:
            for s in range(d):
                for r in range(nb):
                    ii[r] = _step_full(e, ii[r], X + r * nf)
        elif nan:
            for s in range(d):
                for r in range(nb):
                    ii[r] = _step_nan(nodes, ii[r], X + r * nf)
        else:
            for s in range(d):
                for r in range(nb):
                    ii[r] = _step_plain(nodes, ii[r], X + r * nf)
        for r in range(nb):
            out[r * ntpi + k] += e.leafval[ii[r]]
        k += 1
        if k == ntpi:
            k = 0



# --------------------------------------------------------------------------- one row: lane chains
#
# A single row is scored by _LANES independent walks ("lanes"). Lane k visits
# trees k, k + _LANES, k + 2 * _LANES, ... in one unbroken chain: each leaf is a
# node whose step always goes right, to the root of the lane's next tree, and the
# last leaf leads to the sentinel node 0, which leads to itself. So a lane never
# waits for the others' deeper trees (lockstep groups waste ~40% of their steps),
# and the only data-dependent branch is the loop's end. Every step stores its
# node's threshold into rec[slot]; slots of internal nodes are one scratch cell
# and a leaf's slot is its tree, so afterwards rec[t] holds tree t's value and the
# trees are added in iteration order, exactly as LightGBM does.
#
# Missing values cost nothing per step: each feature is read through one of five
# "views" computed once per row (below), chosen per node by its missing type and
# default direction, and a node goes right iff not (view <= threshold).

cdef enum:
    _VIEWS = 5          # per feature: missing None / NaN left / NaN right / Zero left / Zero right
    # Views plus one record cell per tree (and the scratch cell) live on the stack:
    # 32 KiB. Larger models are walked by the lockstep kernel instead.
    _CHAIN_CELLS = 4096


cdef inline int _view_of(uint8_t dt) noexcept nogil:
    """Which of a feature's views a numerical node reads (LightGBM decision_type bits)."""
    cdef int mt = (dt >> 2) & 3
    cdef bint default_left = (dt & 2) != 0
    if mt == 2:
        return 1 if default_left else 2
    if mt == 1:
        return 3 if default_left else 4
    return 0


cdef inline void _row_views(const double* x, Py_ssize_t nf, int vpf, double* xv) noexcept nogil:
    """The views of every feature of row x (vpf = 1: the first only; else all five), then
    the always-NaN view.

    As in Tree::NumericalDecision on a dense row: |x| <= kZeroThreshold reads 0.0;
    missing None reads NaN as 0.0; NaN (or, for missing Zero, NaN and zero) goes
    the default way: left as -inf (never > threshold), right as NaN (never <=).
    """
    cdef Py_ssize_t f
    cdef double v, w
    cdef bint nan, zero
    if vpf == 1:  # a model without missing-value splits: one view, a loop the compiler vectorizes
        for f in range(nf):
            v = x[f]
            xv[f] = 0.0 if (v != v or -NBA_KZERO <= v <= NBA_KZERO) else v
        xv[nf] = NAN
        return
    for f in range(nf):
        v = x[f]
        nan = v != v
        zero = -NBA_KZERO <= v <= NBA_KZERO
        w = 0.0 if zero else v
        xv[0] = 0.0 if nan else w
        xv[1] = -INFINITY if nan else w
        xv[2] = w
        xv[3] = -INFINITY if (nan or zero) else v
        xv[4] = NAN if (nan or zero) else v
        xv += _VIEWS
    xv[0] = NAN


cdef inline int32_t _chain_step(const CNode* nodes, int32_t i, const double* xv,
                                double* rec) noexcept nogil:
    cdef const CNode* nd = nodes + i
    cdef double thr = nd.thr
    rec[nd.slot] = thr
    return nd.child + <int32_t>(not (xv[nd.view] <= thr))


cdef void _chain_row(const CNode* nodes, const int32_t* starts, Py_ssize_t nf, int vpf,
                     Py_ssize_t n_trees, int ntpi, const double* x, double* out) noexcept nogil:
    """Raw scores of all trees for row x into out[0:ntpi] (see the section comment)."""
    cdef double cells[_CHAIN_CELLS]
    cdef double* xv = cells
    cdef double* rec = cells + nf * vpf + 1
    cdef int32_t i0 = starts[0], i1 = starts[1], i2 = starts[2], i3 = starts[3], i4 = starts[4]
    cdef int32_t i5 = starts[5], i6 = starts[6], i7 = starts[7], i8 = starts[8], i9 = starts[9]
    cdef Py_ssize_t t
    cdef int k = 0
    cdef double acc = 0.0
    _row_views(x, nf, vpf, xv)
    while True:
        i0 = _chain_step(nodes, i0, xv, rec)
        i1 = _chain_step(nodes, i1, xv, rec)
        i2 = _chain_step(nodes, i2, xv, rec)
        i3 = _chain_step(nodes, i3, xv, rec)
        i4 = _chain_step(nodes, i4, xv, rec)
        i5 = _chain_step(nodes, i5, xv, rec)
        i6 = _chain_step(nodes, i6, xv, rec)
        i7 = _chain_step(nodes, i7, xv, rec)
        i8 = _chain_step(nodes, i8, xv, rec)
        i9 = _chain_step(nodes, i9, xv, rec)
        if (i0 | i1 | i2 | i3 | i4 | i5 | i6 | i7 | i8 | i9) == 0:
            break
    if ntpi == 1:
        for t in range(n_trees):
            acc += rec[t]
        out[0] = acc
        return
    for k in range(ntpi):
        out[k] = 0.0
    k = 0
    for t in range(n_trees):
        out[k] += rec[t]
        k += 1
        if k == ntpi:
            k = 0


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

    def __cinit__(self):
        self._nodes = NULL
        self._leafval = NULL
        self._dts = NULL
        self._cat_off = NULL
        self._cat_len = NULL
        self._bits = NULL
        self._roots = NULL
        self._depth = NULL
        self._mixed = NULL
        self._chain = NULL

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
        self._n_nodes = n
        self._nodes = <TNode*>malloc(max(n, 1) * sizeof(TNode))
        self._leafval = <double*>malloc(max(n, 1) * sizeof(double))
        self._dts = <uint8_t*>malloc(max(n, 1) * sizeof(uint8_t))
        self._cat_off = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
        self._cat_len = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
        self._bits = <uint32_t*>malloc(max(cat_bits.shape[0], 1) * sizeof(uint32_t))
        self._roots = <int32_t*>malloc(max(self._n_trees, 1) * sizeof(int32_t))
        self._depth = <int32_t*>malloc(max(self._n_trees, 1) * sizeof(int32_t))
        self._mixed = <uint8_t*>malloc(max(self._n_trees, 1) * sizeof(uint8_t))
        if (self._nodes == NULL or self._leafval == NULL or self._dts == NULL or self._cat_off == NULL
                or self._cat_len == NULL or self._bits == NULL or self._roots == NULL or self._depth == NULL
                or self._mixed == NULL):
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
        # Each tree's nodes are contiguous, from its root to the next tree's root.
        cdef Py_ssize_t t, end
        for t in range(self._n_trees):
            self._roots[t] = roots[t]
            self._depth[t] = depth[t]
            self._mixed[t] = 0
            end = roots[t + 1] if t + 1 < self._n_trees else n
            for i in range(roots[t], end):
                if (fx[i] & 3) == _K_COMPLEX:
                    self._mixed[t] = 1
        self._e.nodes = self._nodes
        self._e.leafval = self._leafval
        self._e.dts = self._dts
        self._e.cat_off = self._cat_off
        self._e.cat_len = self._cat_len
        self._e.bits = self._bits
        self._e.roots = self._roots
        self._e.depth = self._depth
        self._e.mixed = self._mixed
        self._e.ntpi = num_tree_per_iteration
        self.num_features = num_features
        self.num_tree_per_iteration = num_tree_per_iteration
        self.num_iterations = <int>(self._n_trees // num_tree_per_iteration)
        self.transform = transform
        self.transform_param = transform_param
        self.average_output = average_output
        self._coerce_row = coerce_row
        self._build_chain()

    cdef _build_chain(self):
        """Lay the trees out as lane chains for one-row scoring, unless the model is too
        wide or long for the stack cells or has categorical splits (then lockstep serves)."""
        cdef Py_ssize_t n = self._n_nodes, nt = self._n_trees, nf = self.num_features
        cdef Py_ssize_t i, t, end
        cdef CNode* c
        cdef int vpf = 1
        if nf * _VIEWS + 1 + nt + 1 > _CHAIN_CELLS or n + 1 > 0x7FFFFFFF:
            return
        for i in range(n):
            if (self._nodes[i].fx & 3) == _K_COMPLEX and (self._dts[i] & 1):
                return
            if not _is_leaf(self._nodes, i) and _view_of(self._dts[i]) != 0:
                vpf = _VIEWS
        self._vpf = vpf
        self._chain = <CNode*>malloc((n + 1) * sizeof(CNode))
        if self._chain == NULL:
            raise MemoryError()
        c = self._chain
        c.thr = 0.0
        c.child = -1
        c.view = <uint16_t>(nf * vpf)
        c.slot = <uint16_t>nt
        for t in range(nt):
            end = self._roots[t + 1] if t + 1 < nt else n
            for i in range(self._roots[t], end):
                c = self._chain + i + 1
                if _is_leaf(self._nodes, i):
                    c.thr = self._leafval[i]
                    c.child = self._roots[t + _LANES] if t + _LANES < nt else -1
                    c.view = <uint16_t>(nf * vpf)
                    c.slot = <uint16_t>t
                else:
                    c.thr = self._nodes[i].thr
                    c.child = self._nodes[i].child + 1
                    c.view = <uint16_t>((self._nodes[i].fx >> 2) * vpf + _view_of(self._dts[i]))
                    c.slot = <uint16_t>nt
        for t in range(_LANES):
            self._starts[t] = self._roots[t] + 1 if t < nt else 0

    @property
    def row_kernel(self):
        """The kernel that scores one row over all trees: "lanes" or "lockstep" (see _trees.pxi)."""
        return "lanes" if self._chain != NULL else "lockstep"

    def __dealloc__(self):
        free(self._nodes)
        free(self._leafval)
        free(self._dts)
        free(self._cat_off)
        free(self._cat_len)
        free(self._bits)
        free(self._roots)
        free(self._depth)
        free(self._mixed)
        free(self._chain)

    cdef void _finish(self, double* out, int n_it) noexcept nogil:
        """Unless raw: average_output division (GBDT::Predict), then the objective's transform."""
        cdef int k
        cdef int ntpi = self._e.ntpi
        if self.average_output:
            for k in range(ntpi):
                out[k] /= n_it
        _transform(out, ntpi, self.transform, self.transform_param)

    cdef void _row(self, const double* x, double* out, int it0, int n_it, bint raw) noexcept nogil:
        """One row. As in GBDT::Predict, raw scores of an averaged model are the plain sum."""
        cdef int ntpi = self._e.ntpi
        if self._chain != NULL and it0 == 0 and n_it == self.num_iterations:
            _chain_row(self._chain, self._starts, self.num_features, self._vpf, self._n_trees, ntpi, x, out)
        else:
            _raw_row(&self._e, x, self.num_features, out, <Py_ssize_t>it0 * ntpi,
                     <Py_ssize_t>(it0 + n_it) * ntpi)
        if not raw:
            self._finish(out, n_it)

    cdef void _rows(self, const double* X, Py_ssize_t n, double* out, int it0, int n_it, bint raw) noexcept nogil:
        """n rows, _BLOCK at a time."""
        cdef int ntpi = self._e.ntpi
        cdef Py_ssize_t nf = self.num_features
        cdef Py_ssize_t i = 0, r, nb
        if n == 1:
            self._row(X, out, it0, n_it, raw)
            return
        while i < n:
            nb = min(<Py_ssize_t>_BLOCK, n - i)
            _raw_block(&self._e, X + i * nf, nf, nb, out + i * ntpi,
                       <Py_ssize_t>it0 * ntpi, <Py_ssize_t>(it0 + n_it) * ntpi)
            if not raw:
                for r in range(i, i + nb):
                    self._finish(out + r * ntpi, n_it)
            i += nb

    cdef bint _out_ok(self, object out, Py_ssize_t n):
        """``out`` is a writable C-contiguous float64 array shaped (n,) or (n, classes)."""
        cdef cnp.ndarray o
        if type(out) is not cnp.ndarray:
            return False
        o = <cnp.ndarray>out
        if (cnp.PyArray_TYPE(o) != cnp.NPY_DOUBLE or not cnp.PyArray_IS_C_CONTIGUOUS(o)
                or not cnp.PyArray_ISWRITEABLE(o) or cnp.PyArray_DIM(o, 0) != n):
            return False
        if self.num_tree_per_iteration == 1:
            return cnp.PyArray_NDIM(o) == 1
        return cnp.PyArray_NDIM(o) == 2 and cnp.PyArray_DIM(o, 1) == self.num_tree_per_iteration

    def predict(self, X, out, int start_iteration, int num_iteration, bint raw_score):
        """Score rows ``X`` into ``out`` (None: a new array) and return it; None if either does not fit.

        ``X`` must be a C-contiguous float64 ndarray (n, num_features) and ``out`` a
        writable C-contiguous float64 ndarray (n,) or (n, classes); anything else
        returns None so the caller can convert or explain. The iteration range is
        already resolved (0 <= start, start + num <= total). The GIL is released
        unless the call is too small for that to pay.
        """
        cdef cnp.ndarray x
        cdef cnp.npy_intp dims[2]
        if start_iteration < 0 or num_iteration < 0 or start_iteration + num_iteration > self.num_iterations:
            raise ValueError("iteration range out of bounds")
        if type(X) is not cnp.ndarray:
            return None
        x = <cnp.ndarray>X
        if (cnp.PyArray_TYPE(x) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(x) != 2
                or not cnp.PyArray_IS_C_CONTIGUOUS(x) or cnp.PyArray_DIM(x, 1) != self.num_features):
            return None
        cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0)
        if out is None:
            dims[0] = n
            dims[1] = self.num_tree_per_iteration
            out = cnp.PyArray_EMPTY(1 if self.num_tree_per_iteration == 1 else 2, dims, cnp.NPY_DOUBLE, 0)
        elif not self._out_ok(out, n):
            return None
        cdef const double* xp = <const double*>cnp.PyArray_DATA(x)
        cdef double* op = <double*>cnp.PyArray_DATA(<cnp.ndarray>out)
        if n * num_iteration * self.num_tree_per_iteration >= _NOGIL_MIN_WORK:
            with nogil:
                self._rows(xp, n, op, start_iteration, num_iteration, raw_score)
        else:
            self._rows(xp, n, op, start_iteration, num_iteration, raw_score)
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


# --------------------------------------------------------------------------- catalogue-bound forests
#
# In a decision every arm's row is the same shared vector (profile, context)
# plus that arm's own features, which are fixed when the catalogue is built. So
# a split on an arm feature sends each arm the same way every time: at build it
# becomes a bitmask of the arms that go right. Each tree is then walked once per
# decision for all eligible arms together: a split on a shared feature moves the
# whole set of arms, a split on an arm feature divides it, and a leaf adds its
# value to the arms that reach it. Per arm the trees are still added in
# iteration order from 0.0, so scores equal the row-by-row ones bit for bit.

cdef extern from *:
    """
    static inline int nba_ctz64(unsigned long long v) { return __builtin_ctzll(v); }
    """
    int nba_ctz64(unsigned long long v) noexcept nogil

cdef enum:
    _K_ARM = 4         # split on an arm feature: a precomputed mask says which arms go right
    _FOREST_STACK = 128  # pending (node, arms) pairs of one walk; bounds the tree depth served



@cython.final
cdef class ArmForestCore:
    """A TreeEnsembleCore bound to a catalogue: scores all eligible arms in one walk per tree.

    ``x_col[f]`` is the position in the shared vector of model feature ``f``, or
    -1 for an arm feature; ``arm_rows`` holds every arm's full model row (its
    shared columns are ignored). Only single-output ensembles whose trees are at
    most 127 deep are served (ValueError otherwise; callers score rows instead).
    """

    def __cinit__(self):
        self._nodes = NULL
        self._masks = NULL

    def __init__(self, TreeEnsembleCore ens, const int32_t[::1] x_col, Py_ssize_t n_shared,
                 const double[:, ::1] arm_rows):
        cdef const _Ens* e = &ens._e
        cdef Py_ssize_t nf = ens.num_features
        cdef Py_ssize_t n_nodes, i, a, t, slot, f
        cdef uint32_t fx, kind
        cdef const TNode* nd
        if self._nodes != NULL:
            raise ValueError("ArmForestCore is already initialised")
        if ens.num_tree_per_iteration != 1:
            raise ValueError("only single-output ensembles can be bound to a catalogue")
        if x_col.shape[0] != nf or arm_rows.shape[1] != nf or arm_rows.shape[0] < 1:
            raise ValueError("x_col and arm_rows must have one entry per model feature, and one row per arm")
        for f in range(nf):
            if x_col[f] < -1 or x_col[f] >= n_shared:
                raise ValueError("x_col entries must be -1 or a position in the shared vector")
        for t in range(ens._n_trees):
            if e.depth[t] >= _FOREST_STACK:
                raise ValueError("a tree is too deep to bind to a catalogue")
        n_nodes = ens._n_nodes
        self._ens = ens
        self.n_arms = arm_rows.shape[0]
        self.n_shared = n_shared
        self._nwords = (self.n_arms + 63) // 64
        self._nodes = <FNode*>malloc(max(n_nodes, 1) * sizeof(FNode))
        if self._nodes == NULL:
            raise MemoryError()
        slot = 0
        for i in range(n_nodes):
            nd = e.nodes + i
            kind = nd.fx & 3
            f = nd.fx >> 2
            if kind != _K_LEAF and x_col[f] < 0:
                slot += 1
        self.arm_splits = slot
        self._masks = <uint64_t*>malloc(max(slot * self._nwords, 1) * sizeof(uint64_t))
        if self._masks == NULL:
            raise MemoryError()
        slot = 0
        for i in range(n_nodes):
            nd = e.nodes + i
            kind = nd.fx & 3
            f = nd.fx >> 2
            self._nodes[i].thr = nd.thr
            self._nodes[i].child = nd.child
            if kind == _K_LEAF:
                self._nodes[i].fx = _K_LEAF
            elif x_col[f] >= 0:
                self._nodes[i].fx = (<uint32_t>x_col[f] << 3) | kind
            else:
                self._nodes[i].fx = (<uint32_t>slot << 3) | _K_ARM
                for a in range(self._nwords):
                    self._masks[slot * self._nwords + a] = 0
                for a in range(self.n_arms):
                    if _step_full(e, <int32_t>i, &arm_rows[a, 0]) != nd.child:
                        self._masks[slot * self._nwords + (a >> 6)] |= (<uint64_t>1) << (a & 63)
                slot += 1

    def __dealloc__(self):
        free(self._nodes)
        free(self._masks)

    cdef void _raw(self, const double* x, const Py_ssize_t* idx, Py_ssize_t k, double* acc) noexcept nogil:
        """Raw scores of arms idx[0:k] (ascending catalogue positions) into acc[arm]."""
        cdef const _Ens* e = &self._ens._e
        cdef const FNode* nodes = self._nodes
        cdef const double* leafval = e.leafval
        cdef const uint64_t* masks = self._masks
        cdef Py_ssize_t nwords = self._nwords
        cdef Py_ssize_t ntrees = self._ens._n_trees
        cdef int32_t st_node[_FOREST_STACK]
        cdef uint64_t st_mask[_FOREST_STACK]
        cdef int sp
        cdef Py_ssize_t w, j = 0, t, base
        cdef uint64_t elig, m, r
        cdef int32_t i
        cdef uint32_t fx, kind
        cdef const FNode* nd
        cdef double v, lv
        for j in range(k):
            acc[idx[j]] = 0.0
        j = 0
        for w in range(nwords):
            elig = 0
            while j < k and idx[j] < (w + 1) * 64:
                elig |= (<uint64_t>1) << (idx[j] & 63)
                j += 1
            if elig == 0:
                continue
            base = w * 64
            for t in range(ntrees):
                st_node[0] = e.roots[t]
                st_mask[0] = elig
                sp = 1
                while sp:
                    sp -= 1
                    i = st_node[sp]
                    m = st_mask[sp]
                    while True:
                        nd = nodes + i
                        fx = nd.fx
                        kind = fx & 7
                        if kind == _K_LEAF:
                            lv = leafval[i]
                            while m:
                                acc[base + nba_ctz64(m)] += lv
                                m &= m - 1
                            break
                        if kind == _K_ARM:
                            r = masks[(fx >> 3) * nwords + w] & m
                            if r == 0:
                                i = nd.child
                            elif r == m:
                                i = nd.child + 1
                            else:
                                st_node[sp] = nd.child + 1
                                st_mask[sp] = r
                                sp += 1
                                i = nd.child
                                m = m & ~r
                            continue
                        v = x[fx >> 3]
                        if kind == _K_COMPLEX:
                            i = nd.child + <int32_t>_complex_right(v, nd.thr, e.dts[i], e.bits + e.cat_off[i],
                                                                    e.cat_len[i])
                        else:
                            i = nd.child + <int32_t>((v > nd.thr) | ((v != v) & <int>(kind & 1)))

    cdef void _scores(self, const double* x, const Py_ssize_t* idx, Py_ssize_t k, double* acc,
                      double* out, bint raw) noexcept nogil:
        """Scores of arms idx[0:k] into out[0:k], using acc[n_arms] as scratch."""
        cdef Py_ssize_t j
        self._raw(x, idx, k, acc)
        for j in range(k):
            out[j] = acc[idx[j]]
            if not raw:
                self._ens._finish(out + j, self._ens.num_iterations)

    def scores(self, cnp.ndarray x, cnp.ndarray idx, cnp.ndarray acc, cnp.ndarray out, bint raw_score=False):
        """Scores of arms ``idx`` for the shared vector ``x`` into ``out[:len(idx)]``.

        ``x`` float64 (n_shared,), ``idx`` ascending intp catalogue positions, ``acc``
        float64 (n_arms,) scratch, ``out`` float64 (>= len(idx),); all C-contiguous.
        The GIL is released for walks long enough to pay for it (as ``predict``).
        """
        cdef Py_ssize_t k = _forest_check(self, x, idx, acc, out)
        cdef const double* xp = <const double*>cnp.PyArray_DATA(x)
        cdef const Py_ssize_t* ip = <const Py_ssize_t*>cnp.PyArray_DATA(idx)
        cdef double* ap = <double*>cnp.PyArray_DATA(acc)
        cdef double* op = <double*>cnp.PyArray_DATA(out)
        if k * self._ens._n_trees >= _NOGIL_MIN_WORK:
            with nogil:
                self._scores(xp, ip, k, ap, op, raw_score)
        else:
            self._scores(xp, ip, k, ap, op, raw_score)
        return out


cdef Py_ssize_t _forest_check(ArmForestCore f, cnp.ndarray x, cnp.ndarray idx, cnp.ndarray acc,
                              cnp.ndarray out) except -1:
    """Check the buffers of a forest call; return len(idx). Arm indices must be ascending and in range."""
    cdef Py_ssize_t k, j
    cdef const Py_ssize_t* ip
    # Typed arguments admit None, whose fields must never be read as a forest's or an array's.
    if f is None:
        raise TypeError("forest must be an ArmForestCore, not None")
    if not (idx is not None and cnp.PyArray_TYPE(idx) == cnp.NPY_INTP and cnp.PyArray_NDIM(idx) == 1
            and cnp.PyArray_IS_C_CONTIGUOUS(idx)):
        raise ValueError("idx must be a C-contiguous intp vector")
    k = cnp.PyArray_DIM(idx, 0)
    if not (_f64_vec(x, f.n_shared, False) and cnp.PyArray_DIM(x, 0) == f.n_shared):
        raise ValueError(f"x must be a C-contiguous float64 vector of length {f.n_shared}")
    if not _f64_vec(acc, f.n_arms, True):
        raise ValueError(f"acc must be a writable C-contiguous float64 vector of length >= {f.n_arms}")
    if not _f64_vec(out, k, True):
        raise ValueError(f"out must be a writable C-contiguous float64 vector of length >= {k}")
    ip = <const Py_ssize_t*>cnp.PyArray_DATA(idx)
    for j in range(k):
        if ip[j] < 0 or ip[j] >= f.n_arms or (j > 0 and ip[j] <= ip[j - 1]):
            raise ValueError("idx must hold ascending catalogue positions")
    return k
