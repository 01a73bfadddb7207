# The tree kernels' contract: the node layouts and the two ensemble types, as the fused
# decision kernel (decide.pyx) reads them. Everything is built and proved in range by
# nba.models.lightgbm before it reaches here.

cimport cython
cimport numpy as cnp
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef enum:
    # Below this many tree evaluations per call the GIL is kept: releasing and
    # retaking it costs more than the work, and under contention can wait a switch interval.
    _NOGIL_MIN_WORK = 4096
    _LANES = 10


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
    const int32_t* depth      # longest root-to-leaf path per tree
    const uint8_t* mixed      # per tree: has a categorical / zero-as-missing / zero-band node
    int ntpi


ctypedef struct CNode:
    double thr          # threshold; leaf: the leaf's value
    int32_t child       # left child (right = child + 1); leaf: next root in the lane, minus 1
    uint16_t view       # the row view this node reads; leaf and sentinel: the NaN view (always right)
    uint16_t slot       # leaf: its tree's cell in rec; internal node: the scratch cell


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
    cdef uint8_t* _mixed
    cdef CNode* _chain
    cdef int32_t _starts[_LANES]
    cdef int _vpf                # views per feature of the lane chains: 1 or _VIEWS
    cdef Py_ssize_t _n_trees
    cdef Py_ssize_t _n_nodes
    cdef readonly int num_features
    cdef readonly int num_tree_per_iteration
    cdef readonly int num_iterations
    cdef readonly int transform
    cdef readonly double transform_param
    cdef readonly bint average_output
    cdef object _coerce_row

    cdef void _finish(self, double* out, int n_it) noexcept nogil
    cdef void _row(self, const double* x, double* out, int it0, int n_it, bint raw) noexcept nogil
    cdef void _rows(self, const double* X, Py_ssize_t n, double* out, int it0, int n_it, bint raw) noexcept nogil
    cdef _build_chain(self)
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

    cdef void _raw(self, const double* x, const Py_ssize_t* idx, Py_ssize_t k, double* acc) noexcept nogil
    cdef void _scores(self, const double* x, const Py_ssize_t* idx, Py_ssize_t k, double* acc,
                      double* out, bint raw) noexcept nogil


cdef Py_ssize_t _forest_check(ArmForestCore f, cnp.ndarray x, cnp.ndarray idx, cnp.ndarray acc,
                              cnp.ndarray out) except -1
