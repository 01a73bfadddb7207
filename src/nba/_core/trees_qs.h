/* The bitvector tree kernel of nba._core.trees (QuickScorer family; see "bitvector kernel" in trees.pyx).
 *
 * Plain C over flat arrays that TreeEnsembleCore builds and proves in range at load time. The SIMD
 * paths are compiled with function-level target attributes inside the normal portable build (no
 * -march flag), and only called after nba_qs_cpu() has said the CPU (and the OS) supports them; on
 * other architectures they compile to stubs that are never called.
 *
 * Exactness. For each feature u the kernel knows the sorted distinct thresholds T_u[0..n_u) of the
 * numerical nodes that split on it. A row's value x becomes the byte rank #{j : T_u[j] < x}, so that
 * x > T_u[j] exactly when rank > j (plain double comparisons, no arithmetic). A value LightGBM reads
 * as 0.0 (|x| <= kZeroThreshold) or as missing (NaN) takes a rank computed at load time from the
 * directions the feature's nodes send it (rzero, rnan), or -1 when no single rank gives every node
 * its direction: such a row is scored by the lane chains instead.
 */
#ifndef NBA_TREES_QS_H
#define NBA_TREES_QS_H

#include <stdint.h>
#include <string.h>

#define NBA_QS_LANES 16       /* trees per block: one per 32-bit lane of a 512-bit vector */
#define NBA_QS_LEAVES 32      /* leaves per tree: one bit each of a lane */
#define NBA_QS_GROUP 64       /* node slots per group: 4 rounds of 16 lanes (wide: 8 rounds of 8) */
#define NBA_QS_WLANES 8       /* wide: trees per block, one per 64-bit lane */
#define NBA_QS_WLEAVES 64     /* wide: leaves per tree */
#define NBA_QS_NEVER 255      /* threshold index of a padding slot: no byte rank exceeds it */
#define NBA_QS_UNUSED __attribute__((unused))  /* modules that cimport trees.pxd include this file too */

typedef struct {
    /* rank tables, by compact feature u < nu */
    const double* thr;        /* at thr + off[u]: 16 pivots T_u[15], T_u[31], ..., then T_u, padded with
                                 +inf to whole buckets of 16 (len(T_u) <= 255, so the last pivot is inf) */
    const int32_t* off;
    const int32_t* fidx;      /* the model feature of u */
    const int16_t* rzero;     /* rank of a value read as 0.0 (|x| <= kZeroThreshold), or -1 */
    const int16_t* rnan;      /* rank of NaN, or -1 */
    int nu;
    /* nodes: block b (trees 16b .. 16b + 15) holds groups gstart[b] .. gstart[b + 1] */
    const uint8_t* feat;      /* slot s of group g at g * 64 + s, s = round * 16 + lane: compact feature */
    const uint8_t* tix;       /* ... the node's threshold index in T_u (NBA_QS_NEVER: padding) */
    const uint32_t* mask;     /* ... its false mask: all ones but its left subtree's leaves */
    const int32_t* gstart;
    const double* leaves;     /* leaf k of tree t at t * 32 + k, leaves numbered left to right */
    int64_t n_trees;
    /* wide (trees of 33 to 64 leaves; AVX-512 only, since with AVX2 it measures slower than the lane
       chains): a block holds 8 trees, one per 64-bit lane; slot s of group g is round s / 8, lane s % 8;
       mask64 replaces mask (which is NULL); leaf k of tree t at t * 64 + k */
    int wide;
    const uint64_t* mask64;
} nba_qs;

/* Add the exit leaves of the block of trees [lo, lo + lanes) clipped to [t0, t1) to out (*acc when ntpi is
 * 1), in tree order (as GBDT::PredictRaw); ix[l] = leaves * l + the exit leaf of lane l's tree. */
static inline __attribute__((always_inline)) void nba_qs_add_n(
    const nba_qs* q, int64_t lo, int64_t lanes, int64_t leaves_per, const int32_t* ix, int64_t t0, int64_t t1,
    int ntpi, double* acc, double* out)
{
    int64_t hi = lo + lanes, t;
    const double* leaves = q->leaves + lo * leaves_per;
    const int32_t* ixb = ix - lo;
    if (lo < t0) lo = t0;
    if (hi > t1) hi = t1;
    if (ntpi == 1) {
        double a = *acc;
        for (t = lo; t < hi; t++)
            a += leaves[ixb[t]];
        *acc = a;
        return;
    }
    for (t = lo; t < hi; t++)
        out[t % ntpi] += leaves[ixb[t]];
}

/* Block b's exit leaves: 16 trees of 32 leaves, or (wide) 8 trees of 64. */
static inline void nba_qs_add(const nba_qs* q, int64_t b, const int32_t* ix, int64_t t0, int64_t t1,
                              int ntpi, double* acc, double* out)
{
    nba_qs_add_n(q, b * NBA_QS_LANES, NBA_QS_LANES, NBA_QS_LEAVES, ix, t0, t1, ntpi, acc, out);
}

static inline void nba_qs_add_wide(const nba_qs* q, int64_t b, const int32_t* ix, int64_t t0, int64_t t1,
                                   int ntpi, double* acc, double* out)
{
    nba_qs_add_n(q, b * NBA_QS_WLANES, NBA_QS_WLANES, NBA_QS_WLEAVES, ix, t0, t1, ntpi, acc, out);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(NBA_QS_PORTABLE)  /* NBA_QS_PORTABLE: the stubs */
#include <immintrin.h>

#define NBA_QS_AVX512 __attribute__((target("avx512f,avx512bw,avx512cd,avx512vbmi,popcnt")))
#define NBA_QS_AVX2 __attribute__((target("avx2,popcnt")))

/* The rank of v among T_u, from the count c of pivots below v: 16 c + the count below v in bucket c.
 * The special values take their precomputed ranks; 1 in *bad when one of those is -1. */
#define NBA_QS_SELECT(u, v, cnt, kzero, bad) do {                                 \
        int r_ = (int)(cnt), rz_ = rzero[u], rn_ = rnan[u];  /* loaded first: cmov, no branch */ \
        r_ = (-(kzero) <= (v) && (v) <= (kzero)) ? rz_ : r_;                       \
        r_ = ((v) != (v)) ? rn_ : r_;                                              \
        (bad) |= r_ < 0;                                                           \
        rk[u] = (uint8_t)r_;                                                       \
    } while (0)

/* The rank tables in locals: rk is a byte array, which may alias anything, so fields read through q
 * would be reloaded after every store to it. */
#define NBA_QS_RANK_LOCALS(q)                                                      \
    const double* const thr = (q)->thr;                                            \
    const int32_t* const off = (q)->off;                                           \
    const int32_t* const fidx = (q)->fidx;                                         \
    const int16_t* const rzero = (q)->rzero;                                       \
    const int16_t* const rnan = (q)->rnan;                                         \
    const int nu = (q)->nu

/* 2: AVX-512 with VBMI (vpermb) and CD (vplzcntd), 1: AVX2, 0: neither (as the CPU and OS report it). */
NBA_QS_UNUSED static int nba_qs_cpu(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("popcnt"))
        return 0;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512vbmi"))
        return 2;
    if (__builtin_cpu_supports("avx2"))
        return 1;
    return 0;
}

/* Byte ranks of row x into rk[0 .. nu): 0, or 1 if the row must take the lane chains. Branch-free per
 * feature (rows vary): two compares of 8 pivots, two of the bucket's 8 thresholds. */
NBA_QS_UNUSED NBA_QS_AVX512 static int nba_qs_ranks_avx512(const nba_qs* q, const double* x, uint8_t* rk,
                                                          double kzero)
{
    int bad = 0;
    NBA_QS_RANK_LOCALS(q);
    for (int u = 0; u < nu; u++) {
        double v = x[fidx[u]];
        const double* t = thr + off[u];
        __m512d vv = _mm512_set1_pd(v);
        unsigned c = (unsigned)__builtin_popcount(
            (unsigned)_mm512_cmp_pd_mask(_mm512_loadu_pd(t), vv, _CMP_LT_OQ)
            | ((unsigned)_mm512_cmp_pd_mask(_mm512_loadu_pd(t + 8), vv, _CMP_LT_OQ) << 8));
        const double* k = t + 16 + 16 * c;
        unsigned n = (unsigned)__builtin_popcount(
            (unsigned)_mm512_cmp_pd_mask(_mm512_loadu_pd(k), vv, _CMP_LT_OQ)
            | ((unsigned)_mm512_cmp_pd_mask(_mm512_loadu_pd(k + 8), vv, _CMP_LT_OQ) << 8));
        NBA_QS_SELECT(u, v, 16 * c + n, kzero, bad);
    }
    return bad;
}

NBA_QS_AVX2 static inline unsigned nba_qs_below16_avx2(const double* t, __m256d vv)
{
    return (unsigned)__builtin_popcount(
        (unsigned)_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(t), vv, _CMP_LT_OQ))
        | ((unsigned)_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(t + 4), vv, _CMP_LT_OQ)) << 4)
        | ((unsigned)_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(t + 8), vv, _CMP_LT_OQ)) << 8)
        | ((unsigned)_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(t + 12), vv, _CMP_LT_OQ)) << 12));
}

NBA_QS_UNUSED NBA_QS_AVX2 static int nba_qs_ranks_avx2(const nba_qs* q, const double* x, uint8_t* rk, double kzero)
{
    int bad = 0;
    NBA_QS_RANK_LOCALS(q);
    for (int u = 0; u < nu; u++) {
        double v = x[fidx[u]];
        const double* t = thr + off[u];
        __m256d vv = _mm256_set1_pd(v);
        unsigned c = nba_qs_below16_avx2(t, vv);
        NBA_QS_SELECT(u, v, 16 * c + nba_qs_below16_avx2(t + 16 + 16 * c, vv), kzero, bad);
    }
    return bad;
}

/* The byte ranks of 64 nodes' features (idx) from the rank table rk = tab0 .. tab3 (64 bytes each):
 * vpermb for up to 64 features, vpermi2b for up to 128, two of them and a blend on bit 7 beyond. */
NBA_QS_AVX512 static inline __attribute__((always_inline)) __m512i nba_qs_ranks_of512(
    __m512i idx, __m512i tab0, __m512i tab1, __m512i tab2, __m512i tab3, int nu)
{
    if (nu <= 64)
        return _mm512_permutexvar_epi8(idx, tab0);
    if (nu <= 128)
        return _mm512_permutex2var_epi8(tab0, idx, tab1);
    return _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), _mm512_permutex2var_epi8(tab0, idx, tab1),
                                  _mm512_permutex2var_epi8(tab2, idx, tab3));
}

/* Block b's 16 leaf bitvectors for the byte ranks in tab0 .. tab3 (rk, 64 bytes each). */
NBA_QS_AVX512 static inline __attribute__((always_inline)) __m512i nba_qs_block512(
    const nba_qs* q, int64_t b, __m512i tab0, __m512i tab1, __m512i tab2, __m512i tab3, int nu)
{
    __m512i v = _mm512_set1_epi32(-1);
    for (int32_t g = q->gstart[b]; g < q->gstart[b + 1]; g++) {
        __m512i idx = _mm512_loadu_si512((const void*)(q->feat + (int64_t)g * NBA_QS_GROUP));
        __m512i r = nba_qs_ranks_of512(idx, tab0, tab1, tab2, tab3, nu);
        __mmask64 k = _mm512_cmpgt_epu8_mask(r, _mm512_loadu_si512((const void*)(q->tix + (int64_t)g * NBA_QS_GROUP)));
        const uint32_t* m = q->mask + (int64_t)g * NBA_QS_GROUP;
        v = _mm512_mask_and_epi32(v, (__mmask16)k, v, _mm512_loadu_si512((const void*)m));
        v = _mm512_mask_and_epi32(v, (__mmask16)(k >> 16), v, _mm512_loadu_si512((const void*)(m + 16)));
        v = _mm512_mask_and_epi32(v, (__mmask16)(k >> 32), v, _mm512_loadu_si512((const void*)(m + 32)));
        v = _mm512_mask_and_epi32(v, (__mmask16)(k >> 48), v, _mm512_loadu_si512((const void*)(m + 48)));
    }
    return v;
}

/* The exit leaves of 16 bitvectors into ix: the lowest set bit, 31 - lzcnt of it; | 1 << 31 in case a lane
   were 0 (its exit leaf's bit is never cleared), so that no index leaves its tree. */
NBA_QS_AVX512 static inline __attribute__((always_inline)) void nba_qs_exits512(__m512i v, int32_t* ix)
{
    const __m512i lane31 = _mm512_add_epi32(_mm512_slli_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 5), _mm512_set1_epi32(31));
    v = _mm512_or_si512(v, _mm512_set1_epi32((int)0x80000000u));
    v = _mm512_and_si512(v, _mm512_sub_epi32(_mm512_setzero_si512(), v));
    _mm512_store_si512((void*)ix, _mm512_sub_epi32(lane31, _mm512_lzcnt_epi32(v)));
}

NBA_QS_UNUSED NBA_QS_AVX512 static void nba_qs_blocks_avx512(const nba_qs* q, const uint8_t* rk, int64_t t0, int64_t t1,
                                              int ntpi, double* acc, double* out)
{
    __m512i tab0 = _mm512_loadu_si512((const void*)rk), tab1 = _mm512_loadu_si512((const void*)(rk + 64));
    __m512i tab2 = _mm512_loadu_si512((const void*)(rk + 128)), tab3 = _mm512_loadu_si512((const void*)(rk + 192));
    int32_t ix[NBA_QS_LANES] __attribute__((aligned(64)));
    int64_t b1 = (t1 + NBA_QS_LANES - 1) / NBA_QS_LANES;
    int nu = q->nu;
    for (int64_t b = t0 / NBA_QS_LANES; b < b1; b++) {
        nba_qs_exits512(nba_qs_block512(q, b, tab0, tab1, tab2, tab3, nu), ix);
        nba_qs_add(q, b, ix, t0, t1, ntpi, acc, out);
    }
}

/* Wide blocks (8 trees of up to 64 leaves, one per 64-bit lane): the same gather and compare per group of
 * 64 nodes, folded in 8 rounds of 8 lanes. */
NBA_QS_AVX512 static inline __attribute__((always_inline)) __m512i nba_qs_block512w(
    const nba_qs* q, int64_t b, __m512i tab0, __m512i tab1, __m512i tab2, __m512i tab3, int nu)
{
    __m512i v = _mm512_set1_epi64(-1);
    for (int32_t g = q->gstart[b]; g < q->gstart[b + 1]; g++) {
        __m512i idx = _mm512_loadu_si512((const void*)(q->feat + (int64_t)g * NBA_QS_GROUP));
        __m512i r = nba_qs_ranks_of512(idx, tab0, tab1, tab2, tab3, nu);
        __mmask64 k = _mm512_cmpgt_epu8_mask(r, _mm512_loadu_si512((const void*)(q->tix + (int64_t)g * NBA_QS_GROUP)));
        const uint64_t* m = q->mask64 + (int64_t)g * NBA_QS_GROUP;
        for (int rr = 0; rr < NBA_QS_GROUP / NBA_QS_WLANES; rr++)
            v = _mm512_mask_and_epi64(v, (__mmask8)(k >> (NBA_QS_WLANES * rr)), v,
                                      _mm512_loadu_si512((const void*)(m + NBA_QS_WLANES * rr)));
    }
    return v;
}

/* The exit leaves of 8 wide bitvectors into ix (as nba_qs_exits512, with 64-bit lanes). */
NBA_QS_AVX512 static inline __attribute__((always_inline)) void nba_qs_exits512w(__m512i v, int32_t* ix)
{
    const __m512i lane63 = _mm512_add_epi64(_mm512_slli_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), 6),
                                            _mm512_set1_epi64(63));
    v = _mm512_or_si512(v, _mm512_set1_epi64((long long)0x8000000000000000ull));
    v = _mm512_and_si512(v, _mm512_sub_epi64(_mm512_setzero_si512(), v));
    _mm256_storeu_si256((__m256i*)ix, _mm512_cvtepi64_epi32(_mm512_sub_epi64(lane63, _mm512_lzcnt_epi64(v))));
}

NBA_QS_UNUSED NBA_QS_AVX512 static void nba_qs_blocks_avx512w(const nba_qs* q, const uint8_t* rk, int64_t t0, int64_t t1,
                                                             int ntpi, double* acc, double* out)
{
    __m512i tab0 = _mm512_loadu_si512((const void*)rk), tab1 = _mm512_loadu_si512((const void*)(rk + 64));
    __m512i tab2 = _mm512_loadu_si512((const void*)(rk + 128)), tab3 = _mm512_loadu_si512((const void*)(rk + 192));
    int32_t ix[NBA_QS_WLANES] __attribute__((aligned(32)));
    int64_t b1 = (t1 + NBA_QS_WLANES - 1) / NBA_QS_WLANES;
    int nu = q->nu;
    for (int64_t b = t0 / NBA_QS_WLANES; b < b1; b++) {
        nba_qs_exits512w(nba_qs_block512w(q, b, tab0, tab1, tab2, tab3, nu), ix);
        nba_qs_add_wide(q, b, ix, t0, t1, ntpi, acc, out);
    }
}

/* A catalogue-bound forest (ArmForestCore): q's nodes on arm features never fire (their threshold index
 * is NBA_QS_NEVER), so block b's vector holds the row's shared splits only; an arm's own splits are fixed,
 * and armv[(a * n_blocks + b) * 16 + lane] (wide: 8 lanes of 64 bits) is the AND of the false masks of those its features send right.
 * The AND of the two is the bitvector of the arm's full row, whose exit leaves are added per arm in tree
 * order: acc[idx[j]] is the raw score of the arm's row, bit for bit. */
NBA_QS_UNUSED NBA_QS_AVX512 static void nba_qs_forest_avx512(const nba_qs* q, const uint8_t* rk, const uint32_t* armv,
                                                            const Py_ssize_t* idx, Py_ssize_t k, double* acc)
{
    __m512i tab0 = _mm512_loadu_si512((const void*)rk), tab1 = _mm512_loadu_si512((const void*)(rk + 64));
    __m512i tab2 = _mm512_loadu_si512((const void*)(rk + 128)), tab3 = _mm512_loadu_si512((const void*)(rk + 192));
    int32_t ix[NBA_QS_LANES] __attribute__((aligned(64)));
    int64_t nb = (q->n_trees + NBA_QS_LANES - 1) / NBA_QS_LANES;
    int nu = q->nu;
    for (int64_t b = 0; b < nb; b++) {
        __m512i v = nba_qs_block512(q, b, tab0, tab1, tab2, tab3, nu);
        for (Py_ssize_t j = 0; j < k; j++) {
            const uint32_t* a = armv + (idx[j] * nb + b) * NBA_QS_LANES;
            nba_qs_exits512(_mm512_and_si512(v, _mm512_loadu_si512((const void*)a)), ix);
            nba_qs_add(q, b, ix, 0, q->n_trees, 1, acc + idx[j], NULL);
        }
    }
}

/* nba_qs_forest_avx512 on the wide layout: armv holds one 64-bit vector per arm and tree. */
NBA_QS_UNUSED NBA_QS_AVX512 static void nba_qs_forest_avx512w(const nba_qs* q, const uint8_t* rk, const uint64_t* armv,
                                                             const Py_ssize_t* idx, Py_ssize_t k, double* acc)
{
    __m512i tab0 = _mm512_loadu_si512((const void*)rk), tab1 = _mm512_loadu_si512((const void*)(rk + 64));
    __m512i tab2 = _mm512_loadu_si512((const void*)(rk + 128)), tab3 = _mm512_loadu_si512((const void*)(rk + 192));
    int32_t ix[NBA_QS_WLANES] __attribute__((aligned(32)));
    int64_t nb = (q->n_trees + NBA_QS_WLANES - 1) / NBA_QS_WLANES;
    int nu = q->nu;
    for (int64_t b = 0; b < nb; b++) {
        __m512i v = nba_qs_block512w(q, b, tab0, tab1, tab2, tab3, nu);
        for (Py_ssize_t j = 0; j < k; j++) {
            const uint64_t* a = armv + (idx[j] * nb + b) * NBA_QS_WLANES;
            nba_qs_exits512w(_mm512_and_si512(v, _mm512_loadu_si512((const void*)a)), ix);
            nba_qs_add_wide(q, b, ix, 0, q->n_trees, 1, acc + idx[j], NULL);
        }
    }
}

/* Four rows at once (the vQS idea, Lucchese et al., SIGIR 2016): each group's nodes are loaded once for
 * the four rows, which is what a batch saves, since one row is bound by those loads. Returns a bit per row
 * (1 << r) that must take the lane chains; its out is then garbage, for the caller to overwrite. */
#define NBA_QS_ROWS 4

NBA_QS_AVX512 static inline __m512i nba_qs_gather512(__m512i idx, const uint8_t* rk, int nu)
{
    __m512i t0 = _mm512_load_si512((const void*)rk), t1 = _mm512_load_si512((const void*)(rk + 64));
    if (nu <= 128)
        return nba_qs_ranks_of512(idx, t0, t1, t0, t1, nu);
    return nba_qs_ranks_of512(idx, t0, t1, _mm512_load_si512((const void*)(rk + 128)),
                              _mm512_load_si512((const void*)(rk + 192)), nu);
}

/* nba_qs_rows4_avx512 on the wide layout: 8 rounds of 8 lanes per group, whose 8 mask vectors stay in
 * registers for the four rows (the wide tables are twice the bytes per node, so sharing them pays more). */
NBA_QS_AVX512 static void nba_qs_rows4_avx512w(const nba_qs* q, const uint8_t (*rk)[256], int64_t t0, int64_t t1,
                                               int ntpi, double* out)
{
    int32_t ix[NBA_QS_ROWS][NBA_QS_WLANES] __attribute__((aligned(32)));
    double acc[NBA_QS_ROWS] = {0.0, 0.0, 0.0, 0.0};
    int nu = q->nu, r, rr;
    int64_t b1 = (t1 + NBA_QS_WLANES - 1) / NBA_QS_WLANES;
    for (int64_t b = t0 / NBA_QS_WLANES; b < b1; b++) {
        __m512i v[NBA_QS_ROWS];
        for (r = 0; r < NBA_QS_ROWS; r++)
            v[r] = _mm512_set1_epi64(-1);
        for (int32_t g = q->gstart[b]; g < q->gstart[b + 1]; g++) {
            int64_t s = (int64_t)g * NBA_QS_GROUP;
            __m512i idx = _mm512_loadu_si512((const void*)(q->feat + s));
            __m512i tix = _mm512_loadu_si512((const void*)(q->tix + s));
            __m512i m[NBA_QS_GROUP / NBA_QS_WLANES];
            for (rr = 0; rr < NBA_QS_GROUP / NBA_QS_WLANES; rr++)
                m[rr] = _mm512_loadu_si512((const void*)(q->mask64 + s + NBA_QS_WLANES * rr));
            for (r = 0; r < NBA_QS_ROWS; r++) {
                __mmask64 k = _mm512_cmpgt_epu8_mask(nba_qs_gather512(idx, rk[r], nu), tix);
                for (rr = 0; rr < NBA_QS_GROUP / NBA_QS_WLANES; rr++)
                    v[r] = _mm512_mask_and_epi64(v[r], (__mmask8)(k >> (NBA_QS_WLANES * rr)), v[r], m[rr]);
            }
        }
        for (r = 0; r < NBA_QS_ROWS; r++)
            nba_qs_exits512w(v[r], ix[r]);
        for (r = 0; r < NBA_QS_ROWS; r++)
            nba_qs_add_wide(q, b, ix[r], t0, t1, ntpi, acc + r, out + r * ntpi);
    }
    if (ntpi == 1)
        for (r = 0; r < NBA_QS_ROWS; r++)
            out[r] = acc[r];
}

NBA_QS_UNUSED NBA_QS_AVX512 static int nba_qs_rows4_avx512(const nba_qs* q, const double* x, int64_t stride,
                                                          int64_t t0, int64_t t1, int ntpi, double* out,
                                                          double kzero)
{
    uint8_t rk[NBA_QS_ROWS][256] __attribute__((aligned(64)));
    int32_t ix[NBA_QS_ROWS][NBA_QS_LANES] __attribute__((aligned(64)));
    double acc[NBA_QS_ROWS] = {0.0, 0.0, 0.0, 0.0};
    int bad = 0, nu = q->nu, r;
    for (r = 0; r < NBA_QS_ROWS; r++) {
        bad |= nba_qs_ranks_avx512(q, x + r * stride, rk[r], kzero) << r;
        memset(rk[r] + nu, 0, (size_t)(256 - nu));
    }
    for (r = 0; r < NBA_QS_ROWS * ntpi; r++)
        out[r] = 0.0;
    if (q->wide) {
        nba_qs_rows4_avx512w(q, (const uint8_t (*)[256])rk, t0, t1, ntpi, out);
        return bad;
    }
    int64_t b1 = (t1 + NBA_QS_LANES - 1) / NBA_QS_LANES;
    for (int64_t b = t0 / NBA_QS_LANES; b < b1; b++) {
        __m512i v[NBA_QS_ROWS];
        for (r = 0; r < NBA_QS_ROWS; r++)
            v[r] = _mm512_set1_epi32(-1);
        for (int32_t g = q->gstart[b]; g < q->gstart[b + 1]; g++) {
            int64_t s = (int64_t)g * NBA_QS_GROUP;
            __m512i idx = _mm512_loadu_si512((const void*)(q->feat + s));
            __m512i tix = _mm512_loadu_si512((const void*)(q->tix + s));
            __m512i m0 = _mm512_loadu_si512((const void*)(q->mask + s)), m1 = _mm512_loadu_si512((const void*)(q->mask + s + 16));
            __m512i m2 = _mm512_loadu_si512((const void*)(q->mask + s + 32)), m3 = _mm512_loadu_si512((const void*)(q->mask + s + 48));
            for (r = 0; r < NBA_QS_ROWS; r++) {  /* unrolled: the rows' vectors stay in registers */
                __mmask64 k = _mm512_cmpgt_epu8_mask(nba_qs_gather512(idx, rk[r], nu), tix);
                v[r] = _mm512_mask_and_epi32(v[r], (__mmask16)k, v[r], m0);
                v[r] = _mm512_mask_and_epi32(v[r], (__mmask16)(k >> 16), v[r], m1);
                v[r] = _mm512_mask_and_epi32(v[r], (__mmask16)(k >> 32), v[r], m2);
                v[r] = _mm512_mask_and_epi32(v[r], (__mmask16)(k >> 48), v[r], m3);
            }
        }
        for (r = 0; r < NBA_QS_ROWS; r++)
            nba_qs_exits512(v[r], ix[r]);
        for (r = 0; r < NBA_QS_ROWS; r++)
            nba_qs_add(q, b, ix[r], t0, t1, ntpi, acc + r, out + r * ntpi);
    }
    if (ntpi == 1)
        for (r = 0; r < NBA_QS_ROWS; r++)
            out[r] = acc[r];
    return bad;
}

/* 32 byte ranks by index from the 16-byte chunks c[0 .. nc) of the table. */
NBA_QS_AVX2 static inline __m256i nba_qs_gather_avx2(__m256i idx, const __m256i* c, int nc)
{
    if (nc == 1)
        return _mm256_shuffle_epi8(c[0], idx);
    if (nc <= 4) {  /* indices < 64: pshufb reads bits 0-3; bits 4 and 5 pick the chunk (blendv reads bit 7) */
        __m256i s4 = _mm256_slli_epi16(idx, 3), s5 = _mm256_slli_epi16(idx, 2);
        __m256i lo = _mm256_blendv_epi8(_mm256_shuffle_epi8(c[0], idx), _mm256_shuffle_epi8(c[1], idx), s4);
        if (nc == 2)
            return lo;
        __m256i hi = _mm256_blendv_epi8(_mm256_shuffle_epi8(c[2], idx), _mm256_shuffle_epi8(c[3], idx), s4);
        return _mm256_blendv_epi8(lo, hi, s5);
    }
    /* more chunks: an index of chunk j becomes 0x70..0x7f, any other one has bit 7 set (pshufb gives 0) */
    __m256i r = _mm256_setzero_si256(), bias = _mm256_set1_epi8(0x70);
    for (int j = 0; j < nc; j++) {
        __m256i d = _mm256_adds_epu8(_mm256_sub_epi8(idx, _mm256_set1_epi8((char)(16 * j))), bias);
        r = _mm256_or_si256(r, _mm256_shuffle_epi8(c[j], d));
    }
    return r;
}

/* Block b's 16 leaf bitvectors (lanes 0-7 in *v0, 8-15 in *v1) for the rank chunks c[0 .. nc). */
NBA_QS_AVX2 static inline __attribute__((always_inline)) void nba_qs_block2(
    const nba_qs* q, int64_t b, const __m256i* c, int nc, __m256i* v0p, __m256i* v1p)
{
    const __m256i flip = _mm256_set1_epi8((char)0x80);  /* unsigned byte order through a signed compare */
    __m256i v0 = _mm256_set1_epi32(-1), v1 = v0;
    for (int32_t g = q->gstart[b]; g < q->gstart[b + 1]; g++) {
        for (int h = 0; h < 2; h++) {  /* rounds 2h and 2h + 1 of the group */
            int64_t s = (int64_t)g * NBA_QS_GROUP + 32 * h;
            __m256i idx = _mm256_loadu_si256((const __m256i*)(q->feat + s));
            __m256i r = nba_qs_gather_avx2(idx, c, nc);
            __m256i t = _mm256_loadu_si256((const __m256i*)(q->tix + s));
            __m256i gt = _mm256_cmpgt_epi8(_mm256_xor_si256(r, flip), _mm256_xor_si256(t, flip));
            __m128i ga = _mm256_castsi256_si128(gt), gb = _mm256_extracti128_si256(gt, 1);
            const uint32_t* m = q->mask + s;
            /* lane &= ~(goes right & ~false mask): the left subtree's leaves of the nodes that go right */
            v0 = _mm256_andnot_si256(_mm256_andnot_si256(_mm256_loadu_si256((const __m256i*)m),
                                                         _mm256_cvtepi8_epi32(ga)), v0);
            v1 = _mm256_andnot_si256(_mm256_andnot_si256(_mm256_loadu_si256((const __m256i*)(m + 8)),
                                                         _mm256_cvtepi8_epi32(_mm_srli_si128(ga, 8))), v1);
            v0 = _mm256_andnot_si256(_mm256_andnot_si256(_mm256_loadu_si256((const __m256i*)(m + 16)),
                                                         _mm256_cvtepi8_epi32(gb)), v0);
            v1 = _mm256_andnot_si256(_mm256_andnot_si256(_mm256_loadu_si256((const __m256i*)(m + 24)),
                                                         _mm256_cvtepi8_epi32(_mm_srli_si128(gb, 8))), v1);
        }
    }
    *v0p = v0;
    *v1p = v1;
}

/* The exit leaves of 16 bitvectors into ix: the lowest set bit (| 1 << 31 as in the AVX-512 path), whose
   index is the exponent of its conversion to float (exact for a power of two; 1 << 31 converts to -2^31). */
NBA_QS_AVX2 static inline __attribute__((always_inline)) void nba_qs_exits2(__m256i v0, __m256i v1, int32_t* ix)
{
    const __m256i top = _mm256_set1_epi32((int)0x80000000u), zero = _mm256_setzero_si256();
    const __m256i base0 = _mm256_sub_epi32(_mm256_slli_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), 5),
                                           _mm256_set1_epi32(127));
    const __m256i base1 = _mm256_add_epi32(base0, _mm256_set1_epi32(8 * 32));
    const __m256i exp_mask = _mm256_set1_epi32(0xff);
    v0 = _mm256_or_si256(v0, top);
    v1 = _mm256_or_si256(v1, top);
    v0 = _mm256_and_si256(v0, _mm256_sub_epi32(zero, v0));
    v1 = _mm256_and_si256(v1, _mm256_sub_epi32(zero, v1));
    v0 = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(v0)), 23), exp_mask);
    v1 = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(v1)), 23), exp_mask);
    _mm256_store_si256((__m256i*)ix, _mm256_add_epi32(v0, base0));
    _mm256_store_si256((__m256i*)(ix + 8), _mm256_add_epi32(v1, base1));
}

/* The rank chunks of rk for nba_qs_gather_avx2 into c; returns their count. */
NBA_QS_AVX2 static inline __attribute__((always_inline)) int nba_qs_chunks2(const nba_qs* q, const uint8_t* rk,
                                                                             __m256i* c)
{
    int nc = (q->nu + 15) / 16;
    if (nc < 1) nc = 1;
    if (nc == 3) nc = 4;  /* the two-level select reads four chunks (rk is padded) */
    for (int j = 0; j < nc; j++)
        c[j] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)(rk + 16 * j)));
    return nc;
}

NBA_QS_UNUSED NBA_QS_AVX2 static void nba_qs_blocks_avx2(const nba_qs* q, const uint8_t* rk, int64_t t0, int64_t t1,
                                          int ntpi, double* acc, double* out)
{
    __m256i c[16], v0, v1;
    int nc = nba_qs_chunks2(q, rk, c);
    int32_t ix[NBA_QS_LANES] __attribute__((aligned(32)));
    int64_t b1 = (t1 + NBA_QS_LANES - 1) / NBA_QS_LANES;
    for (int64_t b = t0 / NBA_QS_LANES; b < b1; b++) {
        nba_qs_block2(q, b, c, nc, &v0, &v1);
        nba_qs_exits2(v0, v1, ix);
        nba_qs_add(q, b, ix, t0, t1, ntpi, acc, out);
    }
}

/* nba_qs_forest_avx512 with AVX2. */
NBA_QS_UNUSED NBA_QS_AVX2 static void nba_qs_forest_avx2(const nba_qs* q, const uint8_t* rk, const uint32_t* armv,
                                                        const Py_ssize_t* idx, Py_ssize_t k, double* acc)
{
    __m256i c[16], v0, v1;
    int nc = nba_qs_chunks2(q, rk, c);
    int32_t ix[NBA_QS_LANES] __attribute__((aligned(32)));
    int64_t nb = (q->n_trees + NBA_QS_LANES - 1) / NBA_QS_LANES;
    for (int64_t b = 0; b < nb; b++) {
        nba_qs_block2(q, b, c, nc, &v0, &v1);
        for (Py_ssize_t j = 0; j < k; j++) {
            const uint32_t* a = armv + (idx[j] * nb + b) * NBA_QS_LANES;
            nba_qs_exits2(_mm256_and_si256(v0, _mm256_loadu_si256((const __m256i*)a)),
                          _mm256_and_si256(v1, _mm256_loadu_si256((const __m256i*)(a + 8))), ix);
            nba_qs_add(q, b, ix, 0, q->n_trees, 1, acc + idx[j], NULL);
        }
    }
}

#else  /* not x86-64 (or NBA_QS_PORTABLE): the lane chains serve every model */

NBA_QS_UNUSED static int nba_qs_cpu(void) { return 0; }

NBA_QS_UNUSED static int nba_qs_ranks_avx512(const nba_qs* q, const double* x, uint8_t* rk, double kzero)
{ (void)q; (void)x; (void)rk; (void)kzero; return 1; }

NBA_QS_UNUSED static int nba_qs_ranks_avx2(const nba_qs* q, const double* x, uint8_t* rk, double kzero)
{ (void)q; (void)x; (void)rk; (void)kzero; return 1; }

#define NBA_QS_ROWS 4
NBA_QS_UNUSED static int nba_qs_rows4_avx512(const nba_qs* q, const double* x, int64_t stride, int64_t t0,
                                            int64_t t1, int ntpi, double* out, double kzero)
{ (void)q; (void)x; (void)stride; (void)t0; (void)t1; (void)ntpi; (void)out; (void)kzero; return 15; }

NBA_QS_UNUSED static void nba_qs_blocks_avx512(const nba_qs* q, const uint8_t* rk, int64_t t0, int64_t t1, int ntpi,
                                 double* acc, double* out)
{ (void)q; (void)rk; (void)t0; (void)t1; (void)ntpi; (void)acc; (void)out; }

NBA_QS_UNUSED static void nba_qs_blocks_avx2(const nba_qs* q, const uint8_t* rk, int64_t t0, int64_t t1, int ntpi,
                               double* acc, double* out)
{ (void)q; (void)rk; (void)t0; (void)t1; (void)ntpi; (void)acc; (void)out; }

NBA_QS_UNUSED static void nba_qs_blocks_avx512w(const nba_qs* q, const uint8_t* rk, int64_t t0, int64_t t1, int ntpi,
                                               double* acc, double* out)
{ (void)q; (void)rk; (void)t0; (void)t1; (void)ntpi; (void)acc; (void)out; }

NBA_QS_UNUSED static void nba_qs_forest_avx512(const nba_qs* q, const uint8_t* rk, const uint32_t* armv,
                                             const Py_ssize_t* idx, Py_ssize_t k, double* acc)
{ (void)q; (void)rk; (void)armv; (void)idx; (void)k; (void)acc; }

NBA_QS_UNUSED static void nba_qs_forest_avx2(const nba_qs* q, const uint8_t* rk, const uint32_t* armv,
                                           const Py_ssize_t* idx, Py_ssize_t k, double* acc)
{ (void)q; (void)rk; (void)armv; (void)idx; (void)k; (void)acc; }

NBA_QS_UNUSED static void nba_qs_forest_avx512w(const nba_qs* q, const uint8_t* rk, const uint64_t* armv,
                                              const Py_ssize_t* idx, Py_ssize_t k, double* acc)
{ (void)q; (void)rk; (void)armv; (void)idx; (void)k; (void)acc; }

#endif

/* Raw scores of trees [t0, t1) for row x into out[0 .. ntpi) with kernel 2 (AVX-512) or 1 (AVX2);
 * 1 without touching out if the row must take the lane chains (a NaN or zero no single rank serves). */
static inline int nba_qs_row(const nba_qs* q, int kernel, const double* x, int64_t t0, int64_t t1, int ntpi,
                             double* out, double kzero)
{
    uint8_t rk[256] __attribute__((aligned(64)));
    double acc = 0.0;
    int k;
    if (kernel == 2 ? nba_qs_ranks_avx512(q, x, rk, kzero) : nba_qs_ranks_avx2(q, x, rk, kzero))
        return 1;
    /* the tables are read whole (64 or 256 bytes): their tail is read, never used, but kept defined */
    memset(rk + q->nu, 0, (size_t)(256 - q->nu));
    for (k = 0; k < ntpi; k++)
        out[k] = 0.0;
    if (t1 > t0) {
        if (q->wide)  /* AVX-512 only: TreeEnsembleCore._kernel never asks AVX2 for it */
            nba_qs_blocks_avx512w(q, rk, t0, t1, ntpi, &acc, out);
        else if (kernel == 2)
            nba_qs_blocks_avx512(q, rk, t0, t1, ntpi, &acc, out);
        else
            nba_qs_blocks_avx2(q, rk, t0, t1, ntpi, &acc, out);
    }
    if (ntpi == 1)
        out[0] = acc;
    return 0;
}

/* A catalogue-bound forest's raw scores of arms idx[0 .. k) for shared vector x into acc[idx[j]] (see
 * nba_qs_forest_avx512), with kernel 2 (AVX-512) or 1 (AVX2); 1 without touching acc if the row must be
 * walked instead (a NaN or zero no single rank serves). */
static inline int nba_qs_forest(const nba_qs* q, int kernel, const double* x, const void* armv,
                                const Py_ssize_t* idx, Py_ssize_t k, double* acc, double kzero)
{
    uint8_t rk[256] __attribute__((aligned(64)));
    Py_ssize_t j;
    if (kernel == 2 ? nba_qs_ranks_avx512(q, x, rk, kzero) : nba_qs_ranks_avx2(q, x, rk, kzero))
        return 1;
    memset(rk + q->nu, 0, (size_t)(256 - q->nu));
    for (j = 0; j < k; j++)
        acc[idx[j]] = 0.0;
    if (q->wide)  /* AVX-512 only, as for rows */
        nba_qs_forest_avx512w(q, rk, (const uint64_t*)armv, idx, k, acc);
    else if (kernel == 2)
        nba_qs_forest_avx512(q, rk, (const uint32_t*)armv, idx, k, acc);
    else
        nba_qs_forest_avx2(q, rk, (const uint32_t*)armv, idx, k, acc);
    return 0;
}

#endif
