# Tree-ensemble kernels (LightGBM semantics); the contract other modules cimport is trees.pxd.
#
# nba.models.lightgbm parses and validates a model and lays every tree out with
# sibling pairs adjacent (a node's right child directly follows its left child),
# each tree's nodes after its root and before the next tree's. From those arrays
# TreeEnsembleCore builds two scoring layouts: lane chains (below), which serve
# every model, call and CPU (one row or a batch, any iteration range, numerical
# and categorical splits), and, where it can serve the model, the bitvector
# kernel's tables (trees_qs.h), which then score on CPUs with AVX2 or AVX-512
# VBMI (see "bitvector kernel" below). ArmForestCore (catalogue-bound forests) builds its own
# nodes from the loader's. Nothing here checks a child or feature index: the
# loader has proved them in range.

import os

import numpy as np

cimport cython
cimport numpy as cnp
from libc.math cimport exp, log1p, INFINITY, NAN
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free

cnp.import_array()

# Node kinds, in the two low bits of TNode.fx (the feature index is fx >> 2).
cdef enum:
    _K_NAN_LEFT = 0    # numerical split: right iff x > threshold (NaN goes left)
    _K_NAN_RIGHT = 1   # numerical split: right iff not x <= threshold (NaN goes right)
    _K_LEAF = 2        # leaf
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
    # Cells of a call (see _Lanes.n_cells) up to this many live on the stack (32 KiB, and
    # 8 KiB of categories); larger models take them from the heap, once per call.
    _STACK_CELLS = 4096
    _STACK_CATS = 2048  # _STACK_CELLS / 2: a category per read cell

cdef extern from *:
    """
    #define NBA_KZERO ((double)1e-35f)  /* LightGBM's kZeroThreshold: a float constant */
    """
    const double NBA_KZERO

cdef inline bint _cat_right(double v, const uint32_t* bits, int32_t nwords) noexcept nogil:
    """CategoricalDecision (true = right): NaN and negative ints go right; static_cast<int>
    truncates toward zero, and out-of-range doubles become INT_MIN on x86."""
    cdef int32_t iv
    if not (v > -1.0 and v < 2147483648.0):
        return True
    iv = <int32_t>v
    if (iv >> 5) >= nwords:
        return True
    return not ((bits[iv >> 5] >> (iv & 31)) & 1)


cdef inline bint _complex_right(double v, double thr, uint8_t dt,
                                const uint32_t* bits, int32_t nwords) noexcept nogil:
    """Tree::Decision (true = right) for categorical, zero-as-missing and zero-band nodes."""
    cdef int mt
    if dt & 1:
        return _cat_right(v, bits, nwords)
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


cdef inline int32_t _step_full(const _Ens* e, int32_t i, const double* x) noexcept nogil:
    """One step down from internal node i for row x: Tree::Decision, any node kind."""
    cdef const TNode* nd = e.nodes + i
    cdef uint32_t fx = nd.fx
    cdef double v = x[fx >> 2]
    if (fx & 3) == _K_COMPLEX:
        return nd.child + <int32_t>_complex_right(v, nd.thr, e.dts[i], e.bits + e.cat_off[i],
                                                  e.cat_len[i])
    return nd.child + <int32_t>((v > nd.thr) | ((v != v) & <int>(fx & 1)))


# --------------------------------------------------------------------------- lane chains
#
# A row is scored by _LANES independent walks ("lanes"). Lane k visits trees
# t0 + k, t0 + k + _LANES, ... in one unbroken chain: each leaf is a node whose
# step always goes right, to the root of the lane's next tree, and the last leaf
# leads to the sentinel node, which leads to itself. So a lane never waits for
# the others' deeper trees (lockstep groups wasted ~40% of their steps), and the
# only data-dependent branch is the loop's end: when every lane has reached the
# sentinel or a tree past the range (node indices grow along a chain).
#
# Each node names one cell: a walk reads cells[cell] and stores the node's
# threshold into rec[cell] (rec = cells + n_read, a shadow of the read cells).
# An internal node's cell is one of the row's views of its feature (below); a
# leaf's is its tree's own cell, which reads NaN (so the step goes right) and
# whose shadow then holds the leaf's value (a leaf's threshold). Afterwards the
# trees are added in iteration order from rec, exactly as LightGBM does.
#
# Missing values cost nothing per step: each feature is read through one of five
# "views" computed once per row, chosen per node by its missing type and default
# direction, and a node goes right iff not (view <= threshold). A categorical
# node has threshold NaN and reads the bit of the row's category, converted once
# per row (_row_cats), from its bitset; only models with such splits walk with
# that branch (_walk_cat). Converting in the step instead (as the lockstep kernel
# did) took 1.2-1.3x lockstep's time for one row, with 4 to 10 lanes; without a
# branch, 1.65x; converted once per row, 0.98x, in half the instructions.
#
# Why this is the only kernel (measured when it replaced the others: callgrind
# instructions per row through the core's entry point, and interleaved timings).
# Walked row by row in lanes, a batch takes 0.29-0.77x the instructions of the
# 16-row block kernel (one tree at a time, for its depth, 8 rows in registers) and
# no more time on the 100-tree benchmark model (887 vs 912 ns a row), less on
# larger and missing-value models: 500 trees 4.7 vs 5.6 us, NaN in rows 0.95 vs
# 1.6 us, zero-as-missing 0.97 vs 7.2 us, 3000 63-leaf trees 37 vs 169 us (blocks
# walked every tree to its full depth). One row in lanes beat lockstep groups of
# eight trees 1.3x (100 trees) to 3.3x (3000 trees), and now serves iteration
# ranges and categorical models, which lockstep did.

cdef enum:
    _VIEWS = 5          # per feature: missing None / NaN left / NaN right / Zero left / Zero right


cdef inline Py_ssize_t _step_num(const CNode* nodes, Py_ssize_t i, const double* cells, double* rec) noexcept nogil:
    """One lane step from node i: right iff not (the node's cell <= its threshold)."""
    cdef const CNode* nd = nodes + i
    cdef double thr = nd.thr
    cdef double v = cells[nd.cell]
    rec[nd.cell] = thr
    return nd.child + <Py_ssize_t>(not (v <= thr))


cdef inline Py_ssize_t _step_cat(const CNode* nodes, const uint32_t* bits, const int32_t* cat_off,
                                 const int32_t* cat_len, const uint32_t* cats, Py_ssize_t i,
                                 const double* cells, double* rec) noexcept nogil:
    """_step_num, or for a categorical node (threshold NaN; its cell is its feature) the bit of the
    row's category in the node's bitset (cats, see _row_cats): right iff clear or out of range."""
    cdef const CNode* nd = nodes + i
    cdef double thr = nd.thr
    cdef uint32_t cell = nd.cell
    cdef double v = cells[cell]
    cdef uint32_t c, w
    rec[cell] = thr
    if thr != thr:
        c = cats[cell]
        w = c >> 5
        if w < <uint32_t>cat_len[i]:
            return nd.child + <Py_ssize_t>(not ((bits[cat_off[i] + w] >> (c & 31)) & 1))
        return nd.child + 1
    return nd.child + <Py_ssize_t>(not (v <= thr))


include "trees_walk.pxi"


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
    """The views of every feature of row x into xv[0:nf * vpf] (vpf = 1: the first only).

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


cdef inline void _cells_init(const _Lanes* L, double* cells, uint32_t* cats) noexcept nogil:
    """Once per call: the NaN cells of the leaves and the sentinel (walks never write them),
    and their categories: a leaf whose value is NaN takes _step_cat's categorical branch, reads
    its cell's category, and (its bitset empty) goes right, as a leaf must."""
    cdef Py_ssize_t j
    for j in range(L.n_views, L.n_read):
        cells[j] = NAN
    if L.categorical:
        for j in range(L.n_views, L.n_read):
            cats[j] = 0xFFFFFFFF


cdef inline void _row_cats(const _Lanes* L, const double* x, uint32_t* cats) noexcept nogil:
    """Each categorical feature's category for CategoricalDecision, or 0xFFFFFFFF (goes right):
    NaN and negative ints go right; static_cast<int> truncates toward zero; doubles out of
    int range go right (INT_MIN on x86). No bitset reaches 0xFFFFFFFF >> 5 words."""
    cdef Py_ssize_t j
    cdef int32_t f
    cdef double v
    for j in range(L.n_cat_feats):
        f = L.cat_feats[j]
        v = x[f]
        cats[f] = <uint32_t><int32_t>v if (v > -1.0 and v < 2147483648.0) else 0xFFFFFFFF


cdef void _lanes_row(const _Lanes* L, const double* x, double* cells, uint32_t* cats, double* out,
                     Py_ssize_t t0, Py_ssize_t t1) noexcept nogil:
    """Raw scores of trees [t0, t1) (whole iterations) for row x into out[0:ntpi].

    Exactly GBDT::PredictRaw: out[k] starts at 0.0 and adds each tree of class k
    in iteration order. ``cells`` holds L.n_cells, set up by _cells_init.
    """
    cdef double* rec = cells + L.n_read
    cdef const double* val = rec + L.n_views
    cdef int ntpi = L.ntpi
    cdef Py_ssize_t t
    cdef int k
    cdef double acc = 0.0
    if t1 > t0:
        _row_views(x, L.n_features, L.vpf, cells)
        if L.categorical:
            _row_cats(L, x, cats)
            _walk_cat(L, cells, rec, cats, t0, t1)
        else:
            _walk_num(L, cells, rec, cats, t0, t1)
    if ntpi == 1:
        for t in range(t0, t1):
            acc += val[t]
        out[0] = acc
        return
    for k in range(ntpi):
        out[k] = 0.0
    k = 0
    for t in range(t0, t1):
        out[k] += val[t]
        k += 1
        if k == ntpi:
            k = 0


# --------------------------------------------------------------------------- bitvector kernel
#
# The QuickScorer family (Lucchese et al., SIGIR 2015; vQS, SIGIR 2016), in the SIMD form of
# trees_qs.h. Once per row each feature the splits use becomes a byte rank (how many of the
# feature's distinct thresholds lie below the value), so a node's test x > threshold is
# rank > (the threshold's index): an unsigned byte compare. 64 nodes are tested at a time
# (a byte gather of their features' ranks: vpermb with AVX-512 VBMI, pshufb and blends with
# AVX2); each node that goes right clears its left subtree's leaves from its tree's 32-bit
# leaf vector, 16 trees to a vector (one per lane), and a tree's exit leaf is its lowest
# set bit. The leaves are then added in tree order, so raw scores are the lane chains' (and
# LightGBM's) bit for bit.
#
# Trees of 33 to 64 leaves take a wide layout (8 trees to a vector, 64-bit leaf vectors),
# with AVX-512 only: with AVX2 it measured slower than the lane chains (4.5 against 3.7 us a
# row at 500 trees of 63 leaves), with AVX-512 1.4x faster for one row and 2.3x for batches.
#
# It serves models with numerical splits only, trees of at most 64 leaves, at most 255
# distinct thresholds on a feature and 256 features in splits; every missing-value type is
# a rank of its own (see trees_qs.h), and a row whose NaN or zero no one rank serves takes
# the lane chains. Anything else (bitvector_declined says what) is scored by the lane
# chains, which also serve CPUs without AVX2 and other architectures.

cdef extern from "trees_qs.h":
    int nba_qs_cpu() noexcept nogil
    int nba_qs_row(const nba_qs* q, int kernel, const double* x, int64_t t0, int64_t t1, int ntpi,
                   double* out, double kzero) noexcept nogil
    int nba_qs_rows4_avx512(const nba_qs* q, const double* x, int64_t stride, int64_t t0, int64_t t1, int ntpi,
                            double* out, double kzero) noexcept nogil
    int NBA_QS_ROWS

cdef enum:
    _QS_LANES = 16       # trees per block
    _QS_LEAVES = 32      # leaves per tree (bits of a lane)
    _QS_GROUP = 64       # node slots per group: 4 rounds of a block's 16 lanes
    _QS_WLANES = 8       # wide layout (trees of 33 to 64 leaves): trees per block, one per 64-bit lane
    _QS_WLEAVES = 64     # wide layout: leaves per tree
    _QS_NEVER = 255      # threshold index of a padding slot (no rank exceeds it)
    _QS_MAX_THR = 255    # distinct thresholds per feature: ranks 0 .. 255 fit a byte
    _QS_MAX_FEATURES = 256  # compact feature ids are bytes

# Row kernels by number: what the CPU offers, and what is asked for (NBA_TREE_KERNEL, or set_row_kernel).
ROW_KERNELS = {"lanes": 0, "avx2": 1, "avx512": 2}
cdef int _qs_cpu = nba_qs_cpu()
cdef int _qs_want = 2


def cpu_row_kernels():
    """The row kernels this CPU runs, best first: a subset of ("avx512", "avx2", "lanes")."""
    return tuple(name for name in ("avx512", "avx2", "lanes") if ROW_KERNELS[name] <= _qs_cpu)


def set_row_kernel(str name):
    """Ask for a row kernel ("auto", "avx512", "avx2" or "lanes") for every model; returns the previous ask.

    Models use the best kernel at or below the ask that the CPU runs and the model allows;
    read at each call, so it also switches models already loaded (tests force each path).
    """
    global _qs_want
    cdef str prev = "auto" if _qs_want == 2 else ("avx2" if _qs_want == 1 else "lanes")
    if name == "auto":
        _qs_want = 2
    elif name in ROW_KERNELS:
        _qs_want = ROW_KERNELS[name]
    else:
        raise ValueError(f"row kernel {name!r}: expected one of auto, avx512, avx2, lanes")
    return prev


if os.environ.get("NBA_TREE_KERNEL", "auto") in ("auto", "avx512", "avx2", "lanes"):
    set_row_kernel(os.environ.get("NBA_TREE_KERNEL", "auto"))  # anything else: nba.models.lightgbm refuses


cdef int _qs_leaf_ranges(const uint32_t[::1] fx, const int32_t[::1] child, int32_t i, int32_t nxt,
                         int32_t[::1] leafno, int32_t[::1] lo, int32_t[::1] hi) noexcept:
    """Number the leaves under node i left to right from nxt; lo[i], hi[i]: its subtree's leaf range."""
    if (fx[i] & 3) == _K_LEAF:
        leafno[i] = nxt
        lo[i] = nxt
        hi[i] = nxt + 1
        return nxt + 1
    nxt = _qs_leaf_ranges(fx, child, child[i], nxt, leafno, lo, hi)
    nxt = _qs_leaf_ranges(fx, child, child[i] + 1, nxt, leafno, lo, hi)
    lo[i] = lo[child[i]]
    hi[i] = hi[child[i] + 1]
    return nxt


def _qs_cutoff(j, right):
    """The rank r with (r > j) == right for every node (threshold index j), or -1 if there is none."""
    r = int(j[right].max()) + 1 if right.any() else 0
    return r if (~right).sum() == 0 or int(j[~right].min()) >= r else -1


def _qs_tables(const double[::1] thr, const uint32_t[::1] fx, const int32_t[::1] child,
               const double[::1] leafval, const uint8_t[::1] dts, const int32_t[::1] roots, bint cat_ok=False):
    """The bitvector kernel's arrays for these (validated) nodes, or a str: why it cannot serve them.

    ``cat_ok``: categorical splits get their slots and false masks but never fire (threshold
    index NEVER), for a bound forest in which only arms' features split on categories.
    """
    cdef Py_ssize_t n = thr.shape[0], nt = roots.shape[0]
    cdef Py_ssize_t t, i, k, s, b, end
    cdef uint64_t left
    fxa = np.asarray(fx)
    dta = np.asarray(dts)
    is_leaf = (fxa & 3) == _K_LEAF
    splits = np.flatnonzero(~is_leaf)
    is_cat = (dta[splits] & 1) == 1
    if is_cat.any() and not cat_ok:
        return "categorical splits"
    internal = splits[~is_cat]  # the numerical splits: the rank tables are theirs
    sizes = np.diff(np.append(np.asarray(roots), n))
    n_leaves = np.add.reduceat(is_leaf.astype(np.int64), np.asarray(roots)) if nt else np.zeros(0, np.int64)
    if nt and n_leaves.max() > _QS_WLEAVES:
        return f"a tree has more than {_QS_WLEAVES} leaves"
    # One layout per model: 16 trees of up to 32 leaves per block, or (wide) 8 of up to 64.
    cdef bint wide = nt > 0 and n_leaves.max() > _QS_LEAVES
    cdef Py_ssize_t lanes = _QS_WLANES if wide else _QS_LANES, n_leaf = _QS_WLEAVES if wide else _QS_LEAVES
    cdef Py_ssize_t rounds_per_group = _QS_GROUP // lanes
    feats = (fxa[internal] >> 2).astype(np.int64)
    used, cu = np.unique(feats, return_inverse=True)
    nu = used.shape[0]
    if nu > _QS_MAX_FEATURES:
        return f"more than {_QS_MAX_FEATURES} features in splits"
    th = np.asarray(thr)[internal]
    mt = (dta[internal] >> 2) & 3
    dleft = (dta[internal] & 2) != 0
    zero_right = np.where(mt == 1, ~dleft, 0.0 > th)   # |x| <= kZeroThreshold: missing Zero, else 0.0
    nan_right = np.where(mt == 0, 0.0 > th, ~dleft)    # NaN: missing None reads 0.0, else the default
    jx = np.zeros(internal.shape[0], np.int64)
    off = np.zeros(nu, np.int32)
    rzero = np.zeros(nu, np.int16)
    rnan = np.zeros(nu, np.int16)
    tables = []
    pos = 0
    order = np.argsort(cu, kind="stable")
    starts = np.searchsorted(cu[order], np.arange(nu + 1))
    for u in range(nu):
        sel = order[starts[u]:starts[u + 1]]
        T = np.unique(th[sel])  # -0.0 and 0.0 are one threshold: every comparison treats them alike
        if T.shape[0] > _QS_MAX_THR:
            return f"more than {_QS_MAX_THR} distinct thresholds on a feature"
        jx[sel] = np.searchsorted(T, th[sel])
        # Buckets of 16, padded with +inf, at least one inf: the pivot count below any value is a bucket.
        padded = np.concatenate([T, np.full(16 * (T.shape[0] // 16 + 1) - T.shape[0], np.inf)])
        pivots = np.full(16, np.inf)
        pivots[:padded.shape[0] // 16] = padded[15::16]
        off[u] = pos
        tables += [pivots, padded]
        pos += 16 + padded.shape[0]
        rzero[u] = _qs_cutoff(jx[sel], zero_right[sel])
        rnan[u] = _qs_cutoff(jx[sel], nan_right[sel])
    thr_tab = np.concatenate(tables) if tables else np.zeros(1)

    n_blocks = (nt + lanes - 1) // lanes
    n_int = sizes - n_leaves
    gstart = np.zeros(n_blocks + 1, np.int32)
    for b in range(n_blocks):
        rounds = int(n_int[b * lanes:(b + 1) * lanes].max())
        gstart[b + 1] = gstart[b] + (rounds + rounds_per_group - 1) // rounds_per_group
    n_groups = int(gstart[n_blocks])
    feat = np.zeros(max(n_groups, 1) * _QS_GROUP, np.uint8)
    tix = np.full(max(n_groups, 1) * _QS_GROUP, _QS_NEVER, np.uint8)
    mask = np.full(max(n_groups, 1) * _QS_GROUP, 0xFFFFFFFFFFFFFFFF if wide else 0xFFFFFFFF,
                   np.uint64 if wide else np.uint32)
    leaves = np.zeros(max(nt, 1) * n_leaf, np.float64)
    node_u = np.zeros(n, np.int64)
    node_j = np.zeros(n, np.int64)
    slot = np.full(n, -1, np.int64)
    node_u[internal] = cu
    node_j[internal] = jx
    node_j[splits[is_cat]] = _QS_NEVER
    leafno = np.zeros(n, np.int32)
    lo = np.zeros(n, np.int32)
    hi = np.zeros(n, np.int32)
    cdef int32_t[::1] leafno_v = leafno, lo_v = lo, hi_v = hi
    cdef uint8_t[::1] feat_v = feat, tix_v = tix
    cdef uint64_t[::1] mask_w = mask if wide else np.zeros(1, np.uint64)
    cdef uint32_t[::1] mask_v = np.zeros(1, np.uint32) if wide else mask
    cdef double[::1] leaves_v = leaves
    cdef int64_t[::1] nu_v = node_u, nj_v = node_j
    cdef int32_t[::1] gs_v = gstart
    cdef int64_t[::1] slot_v = slot
    for t in range(nt):
        _qs_leaf_ranges(fx, child, roots[t], 0, leafno_v, lo_v, hi_v)
        end = roots[t + 1] if t + 1 < nt else n
        b = t // lanes
        k = 0
        for i in range(roots[t], end):
            if (fx[i] & 3) == _K_LEAF:
                leaves_v[t * n_leaf + leafno_v[i]] = leafval[i]
                continue
            s = (gs_v[b] + k // rounds_per_group) * _QS_GROUP + (k % rounds_per_group) * lanes + t % lanes
            feat_v[s] = <uint8_t>nu_v[i]
            tix_v[s] = <uint8_t>nj_v[i]
            slot_v[i] = s
            # leaves lo .. hi - 1 of the left subtree (hi <= 64: the shift by 64 is avoided)
            left = ((<uint64_t>0xFFFFFFFFFFFFFFFF >> (64 - hi_v[child[i]])) if hi_v[child[i]] else 0) \
                & ~((<uint64_t>1 << lo_v[child[i]]) - 1)
            if wide:
                mask_w[s] = ~left
            else:
                mask_v[s] = <uint32_t>(~left)
            k += 1
    return {"thr": thr_tab, "off": off, "fidx": used.astype(np.int32), "rzero": rzero,
            "rnan": rnan, "feat": feat, "tix": tix, "mask": mask, "gstart": gstart, "leaves": leaves,
            "slot": slot, "wide": wide}


cdef inline int _qs_asked() noexcept nogil:
    """The best row kernel asked for that the CPU runs: 2 AVX-512, 1 AVX2, 0 lane chains."""
    return _qs_want if _qs_want < _qs_cpu else _qs_cpu


cdef inline int _qs_kernel(bint ok, const nba_qs* Q) noexcept nogil:
    """The kernel that scores tables Q (ok: built): _qs_asked, but the wide layout is AVX-512's only."""
    cdef int k = _qs_asked()
    if not ok or (Q.wide and k < 2):
        return 0
    return k


cdef _qs_point(nba_qs* Q, dict t, Py_ssize_t n_trees):
    """Point Q at the arrays of a _qs_tables dict (whose owner keeps them alive)."""
    Q.thr = <const double*>cnp.PyArray_DATA(t["thr"])
    Q.off = <const int32_t*>cnp.PyArray_DATA(t["off"])
    Q.fidx = <const int32_t*>cnp.PyArray_DATA(t["fidx"])
    Q.rzero = <const int16_t*>cnp.PyArray_DATA(t["rzero"])
    Q.rnan = <const int16_t*>cnp.PyArray_DATA(t["rnan"])
    Q.nu = <int>cnp.PyArray_DIM(t["fidx"], 0)
    Q.feat = <const uint8_t*>cnp.PyArray_DATA(t["feat"])
    Q.tix = <const uint8_t*>cnp.PyArray_DATA(t["tix"])
    Q.gstart = <const int32_t*>cnp.PyArray_DATA(t["gstart"])
    Q.leaves = <const double*>cnp.PyArray_DATA(t["leaves"])
    Q.n_trees = n_trees
    Q.wide = t["wide"]
    Q.mask = NULL
    Q.mask64 = NULL
    if Q.wide:
        Q.mask64 = <const uint64_t*>cnp.PyArray_DATA(t["mask"])
    else:
        Q.mask = <const uint32_t*>cnp.PyArray_DATA(t["mask"])


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
    """Flattened LightGBM ensemble: the loader's paired-sibling nodes, and their lane chains.

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
        self._chain = NULL
        self._cat_feats = NULL
        self._qs_ok = False

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
        if n >= 0x7FFFFFFF:
            raise ValueError("too many nodes: node indices are int32")
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
        self._build_chain()
        self._build_qs(thr, fx, child, leafval, decision_type, roots)

    cdef _build_qs(self, const double[::1] thr, const uint32_t[::1] fx, const int32_t[::1] child,
                   const double[::1] leafval, const uint8_t[::1] dts, const int32_t[::1] roots):
        """The bitvector kernel's tables (see its section above), if it can serve this model."""
        tables = _qs_tables(thr, fx, child, leafval, dts, roots)
        if isinstance(tables, str):
            self._declined = tables
            return
        self._declined = None
        for name in ("thr", "off", "fidx", "rzero", "rnan", "gstart", "slot"):
            tables[name].flags.writeable = False
        self._qs_arrays = tables
        _qs_point(&self._Q, tables, self._n_trees)
        self._qs_ok = True

    def _node_arrays(self):
        """The validated node arrays this core was built from: thr, fx, child, leafval, decision_type, roots."""
        cdef Py_ssize_t n = self._n_nodes, i
        thr = np.empty(n, np.float64)
        fx = np.empty(n, np.uint32)
        child = np.empty(n, np.int32)
        cdef double[::1] thr_v = thr
        cdef uint32_t[::1] fx_v = fx
        cdef int32_t[::1] child_v = child
        for i in range(n):
            thr_v[i] = self._nodes[i].thr
            fx_v[i] = self._nodes[i].fx
            child_v[i] = self._nodes[i].child
        return (thr, fx, child, np.array(<double[:max(n, 1)]>self._leafval)[:n].copy(),
                np.array(<uint8_t[:max(n, 1)]>self._dts)[:n].copy(),
                np.array(<int32_t[:max(self._n_trees, 1)]>self._roots)[:self._n_trees].copy())

    cdef int _kernel(self) noexcept nogil:
        """The row kernel of this call: 2 bitvector AVX-512, 1 bitvector AVX2, 0 lane chains."""
        return _qs_kernel(self._qs_ok, &self._Q)

    @property
    def bitvector_declined(self):
        """Why no bitvector kernel scores this model now (None if one does, or could on a better CPU)."""
        if self._qs_ok and self._Q.wide and _qs_asked() == 1:  # AVX2 serves, but not these trees
            return f"trees of more than {_QS_LEAVES} leaves take the bitvector kernel with AVX-512 only"
        return self._declined

    cdef _build_chain(self):
        """Lay the trees out as lane chains (see the section comment above)."""
        cdef Py_ssize_t n = self._n_nodes, nt = self._n_trees, nf = self.num_features
        cdef Py_ssize_t i, t, end, views, f
        cdef CNode* c
        cdef int vpf = 1
        cdef uint32_t kind
        cdef Py_ssize_t n_cat = 0
        cdef bint cat
        cdef uint8_t* is_cat = <uint8_t*>malloc(max(nf, 1))
        if is_cat == NULL:
            raise MemoryError()
        for f in range(nf):
            is_cat[f] = 0
        for i in range(n):
            kind = self._nodes[i].fx & 3
            if kind == _K_COMPLEX and (self._dts[i] & 1):
                f = self._nodes[i].fx >> 2
                n_cat += not is_cat[f]
                is_cat[f] = 1
            elif kind != _K_LEAF and _view_of(self._dts[i]) != 0:
                vpf = _VIEWS
        self._cat_feats = <int32_t*>malloc(max(n_cat, 1) * sizeof(int32_t))
        if self._cat_feats == NULL:
            free(is_cat)
            raise MemoryError()
        n_cat = 0
        for f in range(nf):
            if is_cat[f]:
                self._cat_feats[n_cat] = <int32_t>f
                n_cat += 1
        free(is_cat)
        cat = n_cat > 0
        views = nf * vpf
        if 2 * (views + nt + 1) > 0xFFFFFFFF:
            raise ValueError("too many features and trees for 32-bit cell indices")
        self._chain = <CNode*>malloc((n + 1) * sizeof(CNode))
        if self._chain == NULL:
            raise MemoryError()
        for t in range(nt):
            end = self._roots[t + 1] if t + 1 < nt else n
            for i in range(self._roots[t], end):
                c = self._chain + i
                if (self._nodes[i].fx & 3) == _K_LEAF:
                    c.thr = self._leafval[i]
                    c.child = (self._roots[t + _LANES] if t + _LANES < nt else <int32_t>n) - 1
                    c.cell = <uint32_t>(views + t)
                elif (self._nodes[i].fx & 3) == _K_COMPLEX and (self._dts[i] & 1):
                    c.thr = NAN
                    c.child = self._nodes[i].child
                    c.cell = self._nodes[i].fx >> 2
                else:
                    c.thr = self._nodes[i].thr
                    c.child = self._nodes[i].child
                    c.cell = <uint32_t>((self._nodes[i].fx >> 2) * vpf + _view_of(self._dts[i]))
        c = self._chain + n  # the sentinel: reads NaN, so it steps to itself
        c.thr = 0.0
        c.child = <int32_t>n - 1
        c.cell = <uint32_t>(views + nt)
        self._L.nodes = self._chain
        self._L.roots = self._roots
        self._L.bits = self._bits
        self._L.cat_off = self._cat_off
        self._L.cat_len = self._cat_len
        self._L.n_trees = nt
        self._L.sentinel = <int32_t>n
        self._L.n_views = views
        self._L.n_read = views + nt + 1
        self._L.n_cells = 2 * self._L.n_read
        self._L.n_features = nf
        self._L.vpf = vpf
        self._L.ntpi = self.num_tree_per_iteration
        self._L.categorical = cat
        self._L.cat_feats = self._cat_feats
        self._L.n_cat_feats = n_cat

    @property
    def row_kernel(self):
        """The kernel that scores this model now: "bitvector-avx512", "bitvector-avx2" (see trees_qs.h),
        or the lane chains, "lanes" or "lanes-categorical" (see trees_walk.pxi.in)."""
        cdef int k = self._kernel()
        if k == 2:
            return "bitvector-avx512"
        if k == 1:
            return "bitvector-avx2"
        return "lanes-categorical" if self._L.categorical else "lanes"

    def _bitvector_tables(self):
        """The bitvector kernel's arrays, read in place by every call; None if declined.

        For tests that mutate a node or leaf (feat, tix, mask, leaves) and expect a wrong
        answer: those are writable, and any value in them stays inside the tables; the
        arrays of offsets and counts are read-only.
        """
        return dict(self._qs_arrays) if self._qs_ok else None

    def __dealloc__(self):
        free(self._nodes)
        free(self._leafval)
        free(self._dts)
        free(self._cat_off)
        free(self._cat_len)
        free(self._bits)
        free(self._roots)
        free(self._depth)
        free(self._chain)
        free(self._cat_feats)

    cdef void _finish(self, double* out, int n_it) noexcept nogil:
        """Unless raw: average_output division (GBDT::Predict), then the objective's transform."""
        cdef int k
        cdef int ntpi = self._e.ntpi
        if self.average_output:
            for k in range(ntpi):
                out[k] /= n_it
        _transform(out, ntpi, self.transform, self.transform_param)

    cdef void _rows(self, const double* X, Py_ssize_t n, double* out, int it0, int n_it, bint raw,
                    double* cells, uint32_t* cats) noexcept nogil:
        """n rows over iterations [it0, it0 + n_it); ``cells`` holds _L.n_cells, ``cats`` _L.n_read.

        As in GBDT::Predict, raw scores of an averaged model are the plain sum.
        """
        cdef int ntpi = self._L.ntpi
        cdef Py_ssize_t nf = self.num_features
        cdef Py_ssize_t r
        cdef Py_ssize_t t0 = <Py_ssize_t>it0 * ntpi, t1 = <Py_ssize_t>(it0 + n_it) * ntpi
        cdef int kernel = self._kernel()
        cdef bint lanes_ready = False, bad_row
        cdef int bad = 0
        cdef Py_ssize_t blocked = 0
        if kernel == 2:  # blocks of rows share each node load (see nba_qs_rows4_avx512)
            blocked = n - n % NBA_QS_ROWS
        for r in range(n):
            if r < blocked:
                if r % NBA_QS_ROWS == 0:
                    bad = nba_qs_rows4_avx512(&self._Q, X + r * nf, nf, t0, t1, ntpi, out + r * ntpi, NBA_KZERO)
                bad_row = (bad >> (r % NBA_QS_ROWS)) & 1
            else:
                bad_row = kernel == 0 or nba_qs_row(&self._Q, kernel, X + r * nf, t0, t1, ntpi, out + r * ntpi,
                                                    NBA_KZERO)
            # The bitvector kernel declines a row whose NaN or zero no single rank serves: lanes then.
            if bad_row:
                if not lanes_ready:
                    _cells_init(&self._L, cells, cats)
                    lanes_ready = True
                _lanes_row(&self._L, X + r * nf, cells, cats, out + r * ntpi, t0, t1)
            if not raw:
                self._finish(out + r * ntpi, n_it)

    cdef int _run(self, const double* X, Py_ssize_t n, double* out, int it0, int n_it, bint raw,
                  bint release) except -1:
        """_rows with its scratch on the stack or, for a large model, the heap; without the GIL if asked."""
        cdef double stack_cells[_STACK_CELLS]
        cdef uint32_t stack_cats[_STACK_CATS]
        cdef double* cells = stack_cells
        cdef uint32_t* cats = stack_cats
        if self._L.n_cells > _STACK_CELLS:
            cells = <double*>malloc(self._L.n_cells * sizeof(double))
            cats = <uint32_t*>malloc(self._L.n_read * sizeof(uint32_t))
            if cells == NULL or cats == NULL:
                free(cells)
                free(cats)
                raise MemoryError()
        if release:
            with nogil:
                self._rows(X, n, out, it0, n_it, raw, cells, cats)
        else:
            self._rows(X, n, out, it0, n_it, raw, cells, cats)
        if cells != stack_cells:
            free(cells)
            free(cats)
        return 0

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
        self._run(xp, n, op, start_iteration, num_iteration, raw_score,
                  n * num_iteration * self.num_tree_per_iteration >= _NOGIL_MIN_WORK)
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
            self._run(xp, 1, r, 0, self.num_iterations, raw_score, release)
            return r[0]
        dim = self.num_tree_per_iteration
        res = cnp.PyArray_EMPTY(1, &dim, cnp.NPY_DOUBLE, 0)
        self._run(xp, 1, <double*>cnp.PyArray_DATA(res), 0, self.num_iterations, raw_score, release)
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
#
# Where the bitvector kernel serves the ensemble, the forest uses it instead
# (nba_qs_forest in trees_qs.h): an arm's own splits are fixed, so at bind the
# false masks of those each arm sends right are ANDed into one bitvector per arm
# and tree; per decision the shared vector is ranked and its blocks computed once
# with the arm-feature nodes silenced, and each eligible arm's exit leaves are the
# lowest set bits of the AND of the two. The walk stays for the rest (and for a
# shared vector whose NaN or zero no single rank serves).

cdef extern from *:
    """
    static inline int nba_ctz64(unsigned long long v) { return __builtin_ctzll(v); }
    """
    int nba_ctz64(unsigned long long v) noexcept nogil

cdef enum:
    _K_ARM = 4         # split on an arm feature: a precomputed mask says which arms go right
    _FOREST_STACK = 128  # pending (node, arms) pairs of one walk; bounds the tree depth served

_FOREST_QS_MAX_BYTES = 1 << 26  # arm bitvectors (64 bytes per arm and block of trees) past which forests walk

cdef extern from "trees_qs.h":
    int nba_qs_forest(const nba_qs* q, int kernel, const double* x, const void* armv,
                      const Py_ssize_t* idx, Py_ssize_t k, double* acc, double kzero) noexcept nogil


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
        cdef Py_ssize_t n_nodes, i, a, t, slot, f, end
        cdef uint32_t[:, ::1] armv
        cdef uint64_t[:, ::1] armw
        cdef const uint64_t[::1] qmaskw
        cdef bint wide = False
        cdef uint8_t[::1] qtix
        cdef const int64_t[::1] qslot
        cdef const uint32_t[::1] qmask
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
        self._qs_start(x_col)
        if self._qs_ok:
            wide = self._Q.wide
            if wide:
                armw = self._qs_arrays["armv"]
                qmaskw = self._qs_arrays["mask"]
            else:
                armv = self._qs_arrays["armv"]
                qmask = self._qs_arrays["mask"]
            qtix = self._qs_arrays["tix"]
            qslot = self._qs_arrays["slot"]
        slot = 0
        for t in range(ens._n_trees):
            end = e.roots[t + 1] if t + 1 < ens._n_trees else n_nodes
            for i in range(e.roots[t], end):
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
                    if self._qs_ok:  # the node never fires in the shared pass; its false mask is each arm's
                        qtix[qslot[i]] = _QS_NEVER
                    for a in range(self.n_arms):
                        if _step_full(e, <int32_t>i, &arm_rows[a, 0]) != nd.child:
                            self._masks[slot * self._nwords + (a >> 6)] |= (<uint64_t>1) << (a & 63)
                            if self._qs_ok and wide:
                                armw[a, t] &= qmaskw[qslot[i]]
                            elif self._qs_ok:
                                armv[a, t] &= qmask[qslot[i]]
                    slot += 1

    cdef _qs_start(self, const int32_t[::1] x_col):
        """The bitvector tables of this forest, but for the arm-feature nodes (see nba_qs_forest).

        They are the ensemble's (shared), or, when the ensemble declined the kernel for its
        categorical splits and all of those are on arms' features, built here with those
        splits silenced. The forest's own arrays are the rank tables in shared-vector
        positions, a copy of the threshold indices, and every arm's bitvectors, "armv" (all
        ones, for __init__ to AND the false masks into): uint32 (n_arms, trees rounded up to
        16), or uint64 (..., to 8) for the wide layout. Without them the forest walks
        (``bitvector_declined`` says why).
        """
        cdef TreeEnsembleCore ens = self._ens
        self._qs_ok = False
        if ens._qs_ok:
            src = ens._qs_arrays
        elif ens._declined == "categorical splits":
            nodes = ens._node_arrays()
            fxa, dts = nodes[1], nodes[4]
            cat = ((fxa & 3) != _K_LEAF) & ((dts & 1) == 1)
            if (np.asarray(x_col)[(fxa[cat] >> 2).astype(np.intp)] >= 0).any():
                self.bitvector_declined = "categorical splits on shared features"
                return
            src = _qs_tables(*nodes, cat_ok=True)
            if isinstance(src, str):
                self.bitvector_declined = src
                return
        else:
            self.bitvector_declined = ens.bitvector_declined
            return
        cdef bint wide = src["wide"]
        cdef Py_ssize_t lanes = _QS_WLANES if wide else _QS_LANES
        cdef Py_ssize_t nb = (ens._n_trees + lanes - 1) // lanes
        if self.n_arms * nb * 64 > _FOREST_QS_MAX_BYTES:  # a 64-byte vector per arm and block
            self.bitvector_declined = f"arm bitvectors past {_FOREST_QS_MAX_BYTES} bytes"
            return
        col = np.asarray(x_col)[src["fidx"]]
        shared = col >= 0
        arrays = dict(src)
        arrays.update(
            fidx=np.where(shared, col, 0).astype(np.int32),
            rzero=np.where(shared, src["rzero"], 0).astype(np.int16),
            rnan=np.where(shared, src["rnan"], 0).astype(np.int16),
            tix=src["tix"].copy(),
            armv=np.full((self.n_arms, max(nb, 1) * lanes), -1).astype(np.uint64 if wide else np.uint32),
        )
        self._qs_arrays = arrays
        _qs_point(&self._Q, arrays, ens._n_trees)
        if self.n_shared == 0:  # nothing to rank (and no x to read): every node is an arm's
            self._Q.nu = 0
        self._armv = cnp.PyArray_DATA(arrays["armv"])
        self._qs_ok = True
        self.bitvector_declined = None

    @property
    def kernel(self):
        """What scores this forest now: "bitvector-avx512", "bitvector-avx2" or "walk" (the arm-set walk).

        The bitvector kernels serve it when they would serve the ensemble's rows
        (``row_kernel``), or when only arms' features split on categories, and the arms'
        bitvectors fit (``bitvector_declined`` says why not); a shared vector whose NaN or zero
        no single rank serves is walked.
        """
        cdef int k = self._kernel()
        return "bitvector-avx512" if k == 2 else ("bitvector-avx2" if k == 1 else "walk")

    cdef int _kernel(self) noexcept nogil:
        return _qs_kernel(self._qs_ok, &self._Q)

    def _bitvector_tables(self):
        """This forest's own bitvector arrays ("armv", "tix", "fidx", ...), read in place; None if declined.

        For tests that mutate an arm's bitvector and expect a wrong answer.
        """
        return dict(self._qs_arrays) if self._qs_ok else None

    def __dealloc__(self):
        free(self._nodes)
        free(self._masks)

    cdef void _raw(self, const double* x, const Py_ssize_t* idx, Py_ssize_t k, double* acc) noexcept nogil:
        """Raw scores of arms idx[0:k] (ascending catalogue positions) into acc[arm]."""
        cdef int kernel = self._kernel()
        if kernel == 0 or nba_qs_forest(&self._Q, kernel, x, self._armv, idx, k, acc, NBA_KZERO):
            self._walk(x, idx, k, acc)

    cdef void _walk(self, const double* x, const Py_ssize_t* idx, Py_ssize_t k, double* acc) noexcept nogil:
        """_raw by walking each tree once with the set of arms at each node (see the section comment)."""
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
