# The tree kernels' contract: the node layouts and the two ensemble types, as the fused
# decision kernel (decide.pyx) reads them. Everything is built and proved in range by
# nba.models.lightgbm before it reaches here.

cimport cython
cimport numpy as cnp
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef enum:
    # Below this many tree evaluations per call the GIL is kept: releasing and
    # retaking it costs more than the work, and under contention can wait a switch interval.
    _NOGIL_MIN_WORK = 4096


ctypedef struct TNode:
    double thr          # threshold; categorical: bitset slot; leaf: unused
    uint32_t fx         # feature << 2 | kind
    int32_t child       # left child (the right child is child + 1); leaf: unused


ctypedef struct _Ens:
    const TNode* nodes
    const double* leafval     # value of leaf nodes, indexed like nodes
    const uint8_t* dts        # LightGBM decision_type per node (complex nodes only)
    const int32_t* cat_off    # first bitset word per categorical node
    const int32_t* cat_len    # bitset words per categorical node
    const uint32_t* bits
    const int32_t* roots
    const int32_t* depth      # longest root-to-leaf path per tree
    int ntpi


ctypedef struct CNode:
    double thr          # threshold; leaf: the leaf's value; categorical: NaN
    int32_t child       # left child (right = child + 1); leaf: next root in the lane, minus 1
    uint32_t cell       # the cell the node reads (and whose shadow it writes)


ctypedef struct _Lanes:
    const CNode* nodes        # the trees' nodes, then the sentinel
    const int32_t* roots
    const uint32_t* bits      # categorical bitsets, by node: words cat_off[i] ... + cat_len[i]
    const int32_t* cat_off
    const int32_t* cat_len
    Py_ssize_t n_trees
    int32_t sentinel          # the sentinel's index: the number of tree nodes
    Py_ssize_t n_views        # n_features * vpf
    Py_ssize_t n_read         # cells a walk reads: the views, one NaN per tree, the sentinel's NaN
    Py_ssize_t n_cells        # 2 * n_read: the read cells and their shadow
    int n_features
    int vpf                   # views per feature: 1 (no missing-value split) or _VIEWS
    int ntpi
    bint categorical
    const int32_t* cat_feats  # the features of categorical splits
    Py_ssize_t n_cat_feats

cdef extern from "trees_qs.h":
    ctypedef struct nba_qs:   # the bitvector kernel's tables (see trees_qs.h)
        const double* thr
        const int32_t* off
        const int32_t* fidx
        const int16_t* rzero
        const int16_t* rnan
        int nu
        const uint8_t* feat
        const uint8_t* tix
        const uint32_t* mask
        const int32_t* gstart
        const double* leaves
        int64_t n_trees
        int wide
        const uint64_t* mask64


ctypedef struct FNode:
    double thr
    uint32_t fx        # shared column << 3 | kind; arm split: mask slot << 3 | _K_ARM
    int32_t child



cdef inline bint _f64_vec(cnp.ndarray a, Py_ssize_t n, bint writable) noexcept:
    """a is a C-contiguous float64 vector of length >= n (and writable if asked); None is not."""
    return (a is not None and cnp.PyArray_TYPE(a) == cnp.NPY_DOUBLE and cnp.PyArray_NDIM(a) == 1
            and cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_DIM(a, 0) >= n
            and (not writable or cnp.PyArray_ISWRITEABLE(a)))


@cython.final
cdef class TreeEnsembleCore:
    cdef _Ens _e
    cdef TNode* _nodes
    cdef double* _leafval
    cdef uint8_t* _dts
    cdef int32_t* _cat_off
    cdef int32_t* _cat_len
    cdef uint32_t* _bits
    cdef int32_t* _roots
    cdef int32_t* _depth
    cdef _Lanes _L
    cdef CNode* _chain
    cdef int32_t* _cat_feats
    cdef Py_ssize_t _n_trees
    cdef Py_ssize_t _n_nodes
    cdef readonly int num_features
    cdef readonly int num_tree_per_iteration
    cdef readonly int num_iterations
    cdef readonly int transform
    cdef readonly double transform_param
    cdef readonly bint average_output
    cdef object _coerce_row
    cdef nba_qs _Q
    cdef bint _qs_ok
    cdef object _qs_arrays    # the numpy arrays _Q points into
    cdef object _declined     # why _qs_tables refused this model, or None

    cdef void _finish(self, double* out, int n_it) noexcept nogil
    cdef void _rows(self, const double* X, Py_ssize_t n, double* out, int it0, int n_it, bint raw,
                    double* cells, uint32_t* cats) noexcept nogil
    cdef int _run(self, const double* X, Py_ssize_t n, double* out, int it0, int n_it, bint raw,
                  bint release) except -1
    cdef _build_chain(self)
    cdef _build_qs(self, const double[::1] thr, const uint32_t[::1] fx, const int32_t[::1] child,
                   const double[::1] leafval, const uint8_t[::1] dts, const int32_t[::1] roots)
    cdef int _kernel(self) noexcept nogil
    cdef bint _out_ok(self, object out, Py_ssize_t n)


@cython.final
cdef class ArmForestCore:
    cdef TreeEnsembleCore _ens
    cdef FNode* _nodes
    cdef uint64_t* _masks
    cdef Py_ssize_t _nwords
    cdef readonly Py_ssize_t n_arms
    cdef readonly Py_ssize_t n_shared
    cdef readonly Py_ssize_t arm_splits
    cdef nba_qs _Q            # the ensemble's bitvector tables, arm-feature nodes silenced (nba_qs_forest)
    cdef const void* _armv    # arm a's bitvector of tree t at a * lanes * n_blocks + t (uint32, wide uint64)
    cdef bint _qs_ok
    cdef object _qs_arrays    # the numpy arrays _Q and _armv point into
    cdef readonly object bitvector_declined

    cdef _qs_start(self, const int32_t[::1] x_col)
    cdef int _kernel(self) noexcept nogil
    cdef void _raw(self, const double* x, const Py_ssize_t* idx, Py_ssize_t k, double* acc) noexcept nogil
    cdef void _walk(self, const double* x, const Py_ssize_t* idx, Py_ssize_t k, double* acc) noexcept nogil
    cdef void _scores(self, const double* x, const Py_ssize_t* idx, Py_ssize_t k, double* acc,
                      double* out, bint raw) noexcept nogil


cdef Py_ssize_t _forest_check(ArmForestCore f, cnp.ndarray x, cnp.ndarray idx, cnp.ndarray acc,
                              cnp.ndarray out) except -1
