/* treeslim batch kernel: tree-at-a-time, level-synchronous traversal over blocks of rows.
 *
 * Layout (built by treeslim/_kernel.py): three arrays over nodes, thr, child and feat_dl (struct
 * of arrays; 16-byte node structs measured slower on the one-row walk), breadth-first, so a tree's
 * root has the tree's index. An internal node's children sit side by side (left = child, right =
 * child + 1); feat_dl = feature * 8 + right_is_leaf * 4 + left_is_leaf * 2 + default_left. A leaf
 * loops onto itself: child = its own index, feat_dl = 7 and thr = NaN, so both the "<" and the
 * "<=" tests send every value, NaN included, "left" back to it. That makes each level step
 * branch-free; the leaf bits let a walk stop each row at its own leaf (TS_WALK, ts_refill_*).
 *
 * NaN semantics: a row goes right when x >= t ("<" models; x > t for "<=" models), which is
 * false for NaN, or when x is NaN and default_left is 0.
 *
 * Categorical splits (forests that have them pass a ts_cats; numerical forests pass NULL and run
 * the loop above unchanged): at a node with set s >= 0 a row goes left when its value is a category
 * code in bitset s (valid: x >= 0, or x > -1 under LightGBM's truncating rule, and below the set
 * width; code = trunc(x)), to the default side when NaN, right otherwise (treeslim/ir/_categories.py).
 *
 * Single-threaded on purpose: the caller splits big batches into row ranges and runs them on
 * blocking worker threads (treeslim/runtime/_kernel.py), so no thread ever spins waiting for work
 * and small batches never leave the calling thread.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 128
#if defined(__GNUC__)
#define TS_INLINE inline __attribute__((always_inline)) /* the walk inlined: measured ~10% faster */
#else
#define TS_INLINE inline
#endif

/* XGBoost's float32 sum: a += v rounded to float32 (exact: double has more than 2 * 24 + 2 bits,
 * so rounding the double sum of two floats to float is the correctly rounded float sum) */
#define TS_ADD32(a, v) ((a) = (double)(float)((a) + (v)))

typedef struct {
  const int32_t* set;   /* per node: the bitset row of a categorical split, -1 otherwise */
  const uint32_t* bits; /* (n_sets, words) */
  int32_t words;
  int32_t lgb; /* 1: values in (-1, 0) are code 0 (LightGBM); 0: they are not codes */
} ts_cats;

#define DEFINE_CAT_RIGHT(T)                                                                        \
  static inline int cat_right_##T(T x, int32_t s, int dl, const ts_cats* c) {                      \
    if (x != x) return !dl;                                                                        \
    const int valid = (c->lgb ? (x > (T)-1) : (x >= (T)0)) && (x < (T)(32 * c->words));           \
    if (!valid) return 1;                                                                          \
    const uint32_t code = (uint32_t)x;                                                             \
    return !((c->bits[(int64_t)s * c->words + (code >> 5)] >> (code & 31u)) & 1u);                 \
  }
DEFINE_CAT_RIGHT(float)
DEFINE_CAT_RIGHT(double)

/* A row goes right at a numerical node when its value is past the threshold (GOES_RIGHT: >= for
 * "<" models, > for "<=" models; false for NaN), or when it is NaN and the default side is right */
#define TS_NUM_RIGHT(T, GOES_RIGHT, x, i, fd) (((x)GOES_RIGHT thr[i]) | (((x) != (x)) & !((fd)&1)))
#define TS_CAT_RIGHT(T, GOES_RIGHT, x, i, fd)                                                      \
  (cats->set[i] < 0 ? TS_NUM_RIGHT(T, GOES_RIGHT, x, i, fd) : cat_right_##T(x, cats->set[i], (fd)&1, cats))

/* The walk of one tree for a block of rows. Up to the tree's shallowest leaf (mind) every row steps,
 * branch-free (the compiler vectorises this loop with gathers). Past it each step also counts the
 * rows it leaves at internal nodes (feat_dl's leaf bits say whether the node reached is a leaf),
 * and once fewer than 1 / TS_COMPACT of the block remain, only those rows step, kept in a
 * compacted list: an unbalanced tree (LightGBM's leaf-wise growth: 63 leaves at depths 3 to 20)
 * then costs each row about its own path, not the tree's depth, while a near-complete tree
 * (XGBoost's depth-wise growth) keeps the vectorised walk. */
#ifndef TS_COMPACT
#define TS_COMPACT 4
#endif
#define TS_WALK(T, RIGHT, GOES_RIGHT)                                                              \
  for (int32_t l = 0; l < mind; ++l) {                                                             \
    for (int64_t r = 0; r < m; ++r) {                                                              \
      const int32_t i = idx[r];                                                                    \
      const int32_t fd = fdl[i];                                                                   \
      const T x = Xb[r * d + (fd >> 3)];                                                           \
      idx[r] = child[i] + RIGHT(T, GOES_RIGHT, x, i, fd);                                          \
    }                                                                                              \
  }                                                                                                \
  for (int32_t l = mind; l < depth;) {                                                             \
    int64_t na = 0;                                                                                \
    for (int64_t r = 0; r < m; ++r) {                                                              \
      const int32_t i = idx[r];                                                                    \
      const int32_t fd = fdl[i];                                                                   \
      const T x = Xb[r * d + (fd >> 3)];                                                           \
      const int right = RIGHT(T, GOES_RIGHT, x, i, fd);                                            \
      idx[r] = child[i] + right;                                                                   \
      na += !((fd >> (1 + right)) & 1);                                                            \
    }                                                                                              \
    if (++l == depth || na == 0) break;                                                            \
    if (na * TS_COMPACT < m) {                                                                     \
      int32_t act[BLOCK];                                                                          \
      na = 0;                                                                                      \
      for (int64_t r = 0; r < m; ++r) {                                                            \
        act[na] = (int32_t)r;                                                                      \
        na += child[idx[r]] != idx[r];                                                             \
      }                                                                                            \
      while (na > 0) {                                                                             \
        int64_t nb = 0;                                                                            \
        for (int64_t j = 0; j < na; ++j) {                                                         \
          const int32_t r = act[j], i = idx[r], fd = fdl[i];                                       \
          const T x = Xb[(int64_t)r * d + (fd >> 3)];                                              \
          const int right = RIGHT(T, GOES_RIGHT, x, i, fd);                                        \
          idx[r] = child[i] + right;                                                               \
          act[nb] = r;                                                                             \
          nb += !((fd >> (1 + right)) & 1);                                                        \
        }                                                                                          \
        na = nb;                                                                                   \
      }                                                                                            \
      break;                                                                                       \
    }                                                                                              \
  }

#define DEFINE_KERNELS(T)                                                                          \
  static TS_INLINE void walk_##T(const T* restrict X, int64_t r0, int64_t m, int32_t d,              \
                              const T* restrict thr, const int32_t* restrict child,               \
                              const int32_t* restrict fdl, int32_t root, int32_t depth,           \
                              int32_t mind, int strict, const ts_cats* cats,                      \
                              int32_t* restrict idx) {                                            \
    for (int64_t r = 0; r < m; ++r) idx[r] = root;                                                 \
    const T* restrict Xb = X + r0 * d;                                                             \
    if (cats && strict) {                                                                          \
      TS_WALK(T, TS_CAT_RIGHT, >=)                                                                 \
    } else if (cats) {                                                                             \
      TS_WALK(T, TS_CAT_RIGHT, >)                                                                  \
    } else if (strict) {                                                                           \
      TS_WALK(T, TS_NUM_RIGHT, >=)                                                                 \
    } else {                                                                                       \
      TS_WALK(T, TS_NUM_RIGHT, >)                                                                  \
    }                                                                                              \
  }                                                                                                \
                                                                                                   \
  /* out (n, n_out) must be zeroed by the caller; values (n_nodes, width) by node; depths holds   \
   * each tree's depth and then (n_trees more) its shallowest leaf's depth. */                    \
  static void ts_margin_scalar_##T(const T* X, int64_t n, int32_t d, const T* thr,                 \
                     const int32_t* child,                                                         \
                     const int32_t* fdl, const int32_t* roots, const int32_t* depths,              \
                     const int32_t* tree_out, int32_t n_trees, const double* values,               \
                     int32_t width, int32_t n_out, int strict, const ts_cats* cats, int f32sum,    \
                     double* out) {                                                                \
    const int64_t nblocks = (n + BLOCK - 1) / BLOCK;                                               \
    for (int64_t b = 0; b < nblocks; ++b) {                                                        \
      int32_t idx[BLOCK];                                                                          \
      const int64_t r0 = b * BLOCK;                                                                \
      const int64_t m = (n - r0) < BLOCK ? (n - r0) : BLOCK;                                       \
      for (int32_t t = 0; t < n_trees; ++t) {                                                      \
        walk_##T(X, r0, m, d, thr, child, fdl, roots ? roots[t] : t, depths[t],                   \
                 depths[n_trees + t], strict, cats, idx);                                          \
        if (width == 1) {                                                                          \
          const int32_t o = tree_out[t];                                                           \
          if (f32sum) {                                                                            \
            for (int64_t r = 0; r < m; ++r) TS_ADD32(out[(r0 + r) * n_out + o], values[idx[r]]);    \
          } else {                                                                                 \
            for (int64_t r = 0; r < m; ++r) out[(r0 + r) * n_out + o] += values[idx[r]];           \
          }                                                                                        \
        } else {                                                                                   \
          for (int64_t r = 0; r < m; ++r)                                                          \
            for (int32_t k = 0; k < width; ++k) {                                                  \
              const double v_ = values[(int64_t)idx[r] * width + k];                               \
              if (f32sum) TS_ADD32(out[(r0 + r) * n_out + k], v_);                                 \
              else out[(r0 + r) * n_out + k] += v_;                                                \
            }                                                                                      \
        }                                                                                          \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
                                                                                                   \
  /* leaves (n, n_trees): the kernel's node index reached in each tree. */                         \
  static void ts_leaves_scalar_##T(const T* X, int64_t n, int32_t d, const T* thr,                 \
                     const int32_t* child,                                                         \
                     const int32_t* fdl, const int32_t* roots, const int32_t* depths,              \
                     int32_t n_trees, int strict, const ts_cats* cats, int32_t* leaves) {         \
    const int64_t nblocks = (n + BLOCK - 1) / BLOCK;                                               \
    for (int64_t b = 0; b < nblocks; ++b) {                                                        \
      int32_t idx[BLOCK];                                                                          \
      const int64_t r0 = b * BLOCK;                                                                \
      const int64_t m = (n - r0) < BLOCK ? (n - r0) : BLOCK;                                       \
      for (int32_t t = 0; t < n_trees; ++t) {                                                      \
        walk_##T(X, r0, m, d, thr, child, fdl, roots ? roots[t] : t, depths[t],                   \
                 depths[n_trees + t], strict, cats, idx);                                          \
        for (int64_t r = 0; r < m; ++r) leaves[(r0 + r) * n_trees + t] = idx[r];                   \
      }                                                                                            \
    }                                                                                              \
  }

DEFINE_KERNELS(float)
DEFINE_KERNELS(double)

/* One row through every tree, eight trees walked side by side: a single row has no other rows to
 * overlap with, so the independent trees supply the parallelism the CPU needs to hide each
 * level's dependent loads. Two schedules, the leaves then added in tree order, as ts_margin_*
 * adds them, so the sums are identical:
 * - balanced forests: within each chunk of TS_CHUNK trees the walk follows `order` (trees sorted
 *   by depth, so the eight trees of a group finish together), each group for its greatest depth;
 * - unbalanced forests (m->refill): each of the eight lanes walks its tree to its own leaf and
 *   then takes the next tree (branch-free: a step says whether it reached a leaf), so the row pays
 *   its own path in each tree, not the depth of the deepest tree of a group.
 * The model's arrays travel in one struct (one pointer per call). */
#define TS_CHUNK 512
#define TS_LANES 8
typedef struct {
  const void* thr;
  const int32_t* child;
  const int32_t* fdl;
  const int32_t* depths;
  const int32_t* tree_out;
  const double* values;
  const int32_t* order; /* a permutation of each chunk's trees, by depth */
  int32_t n_trees, width, n_out, strict;
  int32_t f32sum; /* add leaves in float32 (XGBoost), onto out's initial value */
  int32_t refill; /* lanes take the next tree at their leaf (unbalanced trees) */
  double init;    /* where ts_row1's sum starts (the float32 base score when f32sum) */
} ts_model;

static inline void ts_add_leaf(const ts_model* m, int32_t t, int32_t leaf, double* out) {
  if (m->width == 1) {
    if (m->f32sum) TS_ADD32(out[m->tree_out[t]], m->values[leaf]);
    else out[m->tree_out[t]] += m->values[leaf];
  } else {
    for (int32_t k = 0; k < m->width; ++k) {
      const double v = m->values[(int64_t)leaf * m->width + k];
      if (m->f32sum) TS_ADD32(out[k], v);
      else out[k] += v;
    }
  }
}

/* one step of a lane from node I: RIGHT whether it goes right, then I the node reached */
#define TS_ROW_STEP(T, X, I, RIGHT)                                                                \
  do {                                                                                             \
    const int32_t fd_ = fdl[I];                                                                    \
    const T t_ = thr[I], x_ = X[fd_ >> 3];                                                         \
    RIGHT = (strict ? (x_ >= t_) : (x_ > t_)) | ((x_ != x_) & !(fd_ & 1));                         \
    LF_ = (fd_ >> (1 + RIGHT)) & 1;                                                                \
    I = child[I] + RIGHT;                                                                          \
  } while (0)

#define DEFINE_ROW(T)                                                                              \
  /* the balanced schedule of one chunk of n trees: groups of eight by depth */                    \
  static inline void ts_groups_##T(const T* x, const ts_model* m, int32_t c0, int32_t n,         \
                                   int32_t* leaf) {                                                \
    const T* thr = (const T*)m->thr;                                                               \
    const int32_t *child = m->child, *fdl = m->fdl, *depths = m->depths, *ord = m->order + c0;     \
    const int strict = m->strict;                                                                  \
    int32_t j = 0, right, LF_;                                                                     \
    for (; j + TS_LANES <= n; j += TS_LANES) {                                                     \
      int32_t i[TS_LANES], dmax = 0;                                                               \
      for (int k = 0; k < TS_LANES; ++k) {                                                         \
        i[k] = ord[j + k];                                                                         \
        dmax = depths[i[k]] > dmax ? depths[i[k]] : dmax;                                          \
      }                                                                                            \
      for (int32_t l = 0; l < dmax; ++l)                                                           \
        for (int k = 0; k < TS_LANES; ++k) TS_ROW_STEP(T, x, i[k], right);                         \
      for (int k = 0; k < TS_LANES; ++k) leaf[ord[j + k] - c0] = i[k];                             \
    }                                                                                              \
    for (; j < n; ++j) {                                                                           \
      int32_t i = ord[j];                                                                          \
      for (int32_t l = 0; l < depths[ord[j]]; ++l) TS_ROW_STEP(T, x, i, right);                    \
      leaf[ord[j] - c0] = i;                                                                       \
    }                                                                                              \
    (void)LF_;                                                                                     \
  }                                                                                                \
  /* the refill schedule of one chunk of n trees (tree c0 + q's root is node c0 + q) */            \
  static inline void ts_refill_##T(const T* x, const ts_model* m, int32_t c0, int32_t n,         \
                                   int32_t* leaf) {                                                \
    const T* thr = (const T*)m->thr;                                                               \
    const int32_t *child = m->child, *fdl = m->fdl;                                                \
    const int strict = m->strict;                                                                  \
    int32_t i[TS_LANES], t[TS_LANES], next = 0, right, LF_;                                        \
    int32_t k = n < TS_LANES ? n : TS_LANES;                                                       \
    for (int32_t q = 0; q < k; ++q) t[q] = next++, i[q] = c0 + t[q];                               \
    /* a lane at a leaf records it and takes tree `next`; at most TS_LANES trees start per sweep, \
     * so `next` stays in the chunk; selects by masks, as a branch here would mispredict */        \
    while (next + TS_LANES <= n) {                                                                 \
      for (int32_t q = 0; q < TS_LANES; ++q) {                                                     \
        TS_ROW_STEP(T, x, i[q], right);                                                            \
        const int32_t mask = -LF_;                                                                 \
        leaf[t[q]] = i[q];                                                                         \
        i[q] ^= (i[q] ^ (c0 + next)) & mask;                                                       \
        t[q] ^= (t[q] ^ next) & mask;                                                              \
        next += LF_;                                                                               \
      }                                                                                            \
    }                                                                                              \
    /* the last trees: lanes step together until all are at leaves (leaves loop onto themselves) */ \
    for (;;) {                                                                                     \
      for (int all = 0; !all;) {                                                                   \
        all = 1;                                                                                   \
        for (int32_t q = 0; q < k; ++q) {                                                          \
          TS_ROW_STEP(T, x, i[q], right);                                                          \
          all &= LF_;                                                                              \
        }                                                                                          \
      }                                                                                            \
      for (int32_t q = 0; q < k; ++q) leaf[t[q]] = i[q];                                           \
      if (next == n) break;                                                                        \
      k = n - next < TS_LANES ? n - next : TS_LANES;                                               \
      for (int32_t q = 0; q < k; ++q) t[q] = next++, i[q] = c0 + t[q];                             \
    }                                                                                              \
  }                                                                                                \
  void ts_row_##T(const T* x, const ts_model* m, double* out) {                                    \
    int32_t leaf[TS_CHUNK];                                                                        \
    for (int32_t c0 = 0; c0 < m->n_trees; c0 += TS_CHUNK) {                                        \
      const int32_t n = m->n_trees - c0 < TS_CHUNK ? m->n_trees - c0 : TS_CHUNK;                   \
      if (m->refill) ts_refill_##T(x, m, c0, n, leaf);                                             \
      else ts_groups_##T(x, m, c0, n, leaf);                                                       \
      for (int32_t q = 0; q < n; ++q) ts_add_leaf(m, c0 + q, leaf[q], out);                        \
    }                                                                                              \
  }                                                                                                \
  /* n rows (row stride d), each walked as above, added onto out (n, n_out) */                     \
  void ts_rows_##T(const T* X, int64_t n, int32_t d, const ts_model* m, double* out) {             \
    for (int64_t r = 0; r < n; ++r) ts_row_##T(X + r * d, m, out + r * m->n_out);                  \
  }                                                                                                \
  /* one row, one output: the sum from m->init (no averaging) */                                   \
  double ts_row1_##T(const T* x, const ts_model* m) {                                              \
    double out = m->init;                                                                          \
    ts_row_##T(x, m, &out);                                                                        \
    return out;                                                                                    \
  }

DEFINE_ROW(float)
DEFINE_ROW(double)

/* ---- The AVX-512 batch walk, built with -march=native on a CPU that has AVX-512 F, VL and DQ
 * (and BMI2); without them, or with TS_NO_SIMD defined, the portable walk above. Same layout, same
 * sums, bit for bit.
 *
 * Rows go through a tree in lanes: 16 rows at a time for float rows, 8 for double, a block of
 * TS_SBLOCK rows tree by tree. Two phases:
 * - the top: a tree's first K levels taken as complete levels. Breadth-first, a complete level l
 *   of a tree is 2^l nodes side by side, and the node at position p has its children at positions
 *   2p and 2p + 1 of level l + 1. So a lane only tracks p: a level of up to 32 (float) / 16
 *   (double) nodes is looked up by a permute of registers loaded once per level, of up to 64 / 32
 *   by two permutes and a blend, a deeper one by a gather within the level's few hundred bytes, and the one gather per step left is the row's
 *   feature value. Where the tops come from:
 *   . ts_pack_new_* (once per model; KernelForest does it): every tree of depth <= kfull padded
 *     to a complete tree (a leaf above the last level becomes a pass node: NaN threshold, default
 *     left, so every row goes left, over copies of itself), deeper trees padded down to kpart
 *     levels; then ts_margin_pack_* scores with it. XGBoost's depth-6 trees then take 6 steps of
 *     one gather each, their leaf values read by position (val).
 *   . ts_margin_* without a pack: each tree's complete levels found per call (ts_plan); a
 *     partial tree walks the rest below.
 * - below the top (deeper trees: LightGBM's leaf-wise growth), the rows whose position is an
 *   internal node are listed; TS_STREAMS groups of lanes step through the list, each step
 *   gathering the node's feature, threshold and child, a lane at a leaf taking the next listed
 *   row (expand-load), so each row costs its own path. The lists of TS_TBATCH consecutive trees
 *   run as one (one tree's list is too short to keep the gathers in flight), and their leaves are
 *   then added in tree order.
 * Gathers bound the speed (about 0.3 ns per element on a Sapphire Rapids core), so the walk is
 * arranged to gather as little as it can: positions instead of node ids, permutes instead of
 * node gathers, child and feat_dl in one 64-bit gather below the top of double forests.
 * NaN: the right-going test is an ordered compare (_CMP_GE_OQ / _CMP_GT_OQ: false for NaN), OR-ed
 * with "x unordered (_CMP_UNORD_Q) and the node's default side is right", the scalar walk's test.
 * Forests with categorical splits take the portable walk. */
#if !defined(TS_NO_SIMD) && defined(__GNUC__) && defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && \
    defined(__BMI2__)
#define TS_SIMD 1
#include <immintrin.h>

#ifndef TS_SBLOCK
#define TS_SBLOCK 128 /* rows per block of the SIMD walk (a multiple of 16) */
#endif
#define TS_KCAP 10 /* the top phase covers at most this many levels */
#ifndef TS_STREAMS
#define TS_STREAMS 4 /* independent lane groups of the gather phase */
#endif
#ifndef TS_TBATCH
#define TS_TBATCH 16 /* trees whose gather phases run as one list */
#endif

/* lanes, and the last level looked up by one / two registers */
#define TS_V_float 16
#define TS_V_double 8
#define TS_R1_float 4
#define TS_R1_double 3
#define TS_R2_float 5
#define TS_R2_double 4
#define TS_R3_float 6
#define TS_R3_double 5

/* -- float: 16 lanes; positions, offsets, node and row ids all 16 x int32 -- */
typedef __m512i tsq_float; /* top-phase positions / row offsets */
typedef __m512i tsn_float; /* node / row ids */
typedef __mmask16 tsk_float;
typedef struct { __m512 t0, t1, t2, t3; __m512i f0, f1, f2, f3; } tstab_float;

static inline tsq_float tsq_load_float(const void* p) { return _mm512_loadu_si512(p); }
static inline void tsq_store_float(void* p, tsq_float v) { _mm512_storeu_si512(p, v); }
static inline tsq_float tsq_rowoff_float(int32_t g0, int32_t m, int32_t d) {
  const __m512i r = _mm512_add_epi32(_mm512_set1_epi32(g0),
                                     _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  return _mm512_maskz_mullo_epi32(_mm512_cmplt_epi32_mask(r, _mm512_set1_epi32(m)), r,
                                  _mm512_set1_epi32(d));
}
static inline tstab_float tstab1_float(const float* thr, const int32_t* fdl, int32_t n) {
  tstab_float tb;
  const __mmask16 k = (__mmask16)((1u << n) - 1u);
  tb.t0 = _mm512_maskz_loadu_ps(k, thr);
  tb.f0 = _mm512_maskz_loadu_epi32(k, fdl);
  tb.t1 = tb.t0;
  tb.f1 = tb.f0;
  return tb;
}
static inline tstab_float tstab2_float(const float* thr, const int32_t* fdl) {
  tstab_float tb;
  tb.t0 = _mm512_loadu_ps(thr);
  tb.t1 = _mm512_loadu_ps(thr + 16);
  tb.f0 = _mm512_loadu_si512(fdl);
  tb.f1 = _mm512_loadu_si512(fdl + 16);
  return tb;
}
static inline tstab_float tstab3_float(const float* thr, const int32_t* fdl) {
  tstab_float tb;
  tb.t0 = _mm512_loadu_ps(thr);
  tb.t1 = _mm512_loadu_ps(thr + 16);
  tb.t2 = _mm512_loadu_ps(thr + 32);
  tb.t3 = _mm512_loadu_ps(thr + 48);
  tb.f0 = _mm512_loadu_si512(fdl);
  tb.f1 = _mm512_loadu_si512(fdl + 16);
  tb.f2 = _mm512_loadu_si512(fdl + 32);
  tb.f3 = _mm512_loadu_si512(fdl + 48);
  return tb;
}
/* a level of 64 nodes: two two-register permutes, the position's bit 5 picking one */
#define TS_LOOK3_float(tb, p, th, fd)                                                              \
  do {                                                                                             \
    const __mmask16 hi_ = _mm512_test_epi32_mask(p, _mm512_set1_epi32(32));                        \
    th = _mm512_mask_blend_ps(hi_, _mm512_permutex2var_ps((tb).t0, p, (tb).t1),                    \
                              _mm512_permutex2var_ps((tb).t2, p, (tb).t3));                        \
    fd = _mm512_mask_blend_epi32(hi_, _mm512_permutex2var_epi32((tb).f0, p, (tb).f1),              \
                                 _mm512_permutex2var_epi32((tb).f2, p, (tb).f3));                  \
  } while (0)
#define TS_LOOK1_float(tb, p, th, fd)                                                              \
  th = _mm512_permutexvar_ps(p, (tb).t0);                                                          \
  fd = _mm512_permutexvar_epi32(p, (tb).f0)
#define TS_LOOK2_float(tb, p, th, fd)                                                              \
  th = _mm512_permutex2var_ps((tb).t0, p, (tb).t1);                                                \
  fd = _mm512_permutex2var_epi32((tb).f0, p, (tb).f1)
#define TS_LOOKG_float(thr, fdl, p, th, fd)                                                        \
  th = _mm512_i32gather_ps(p, thr, 4);                                                             \
  fd = _mm512_i32gather_epi32(p, fdl, 4)
#define TS_TOPSTEP_float(PRED, Xb, off, th, fd, p)                                                 \
  do {                                                                                             \
    const __m512 x_ =                                                                              \
        _mm512_i32gather_ps(_mm512_add_epi32(off, _mm512_srai_epi32(fd, 3)), Xb, 4);              \
    const __mmask16 r_ = _mm512_cmp_ps_mask(x_, th, PRED) |                                        \
                         (_mm512_cmp_ps_mask(x_, x_, _CMP_UNORD_Q) &                               \
                          ~_mm512_test_epi32_mask(fd, _mm512_set1_epi32(1)));                      \
    const __m512i p2_ = _mm512_add_epi32(p, p);                                                    \
    p = _mm512_mask_add_epi32(p2_, r_, p2_, _mm512_set1_epi32(1));                                 \
  } while (0)
static inline tsn_float tsq_node_float(tsq_float p, int32_t s) {
  return _mm512_add_epi32(p, _mm512_set1_epi32(s));
}
/* the gather phase */
#define tsn_load_float(p) _mm512_loadu_si512(p)
#define tsn_maskz_load_float(k, p) _mm512_maskz_loadu_epi32(k, p)
#define tsn_store_float(p, v) _mm512_storeu_si512(p, v)
#define tsn_set1_float(a) _mm512_set1_epi32(a)
#define tsn_iota_float() _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#define tsn_add_float(a, b) _mm512_add_epi32(a, b)
#define tsn_and_float(a, b) _mm512_and_si512(a, b)
#define tsn_mask_add1_float(a, k) _mm512_mask_add_epi32(a, k, a, _mm512_set1_epi32(1))
#define tsn_srai3_float(a) _mm512_srai_epi32(a, 3)
#define tsn_mullo_float(a, b) _mm512_mullo_epi32(a, b)
#define tsn_test_float(a, bit) _mm512_test_epi32_mask(a, _mm512_set1_epi32(bit))
#define tsn_gather_i_float(base, i) _mm512_i32gather_epi32(i, base, 4)
#define tsn_gather_t_float(base, i) _mm512_i32gather_ps(i, base, 4)
#define tsn_unord_float(x) _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q)
#define tsn_cmp_float(x, t, PRED) _mm512_cmp_ps_mask(x, t, PRED)
#define tsn_compress_float(k, v) _mm512_maskz_compress_epi32(k, v)
#define tsn_scatter_float(base, k, i, v) _mm512_mask_i32scatter_epi32(base, k, i, v, 4)
#define TS_NODE_float(cf, fdl, child, i, fd, c)                                                    \
  (void)(cf);                                                                                      \
  fd = _mm512_i32gather_epi32(i, fdl, 4);                                                          \
  c = _mm512_i32gather_epi32(i, child, 4)
#define tsn_expand_float(src, k, p) _mm512_mask_expandloadu_epi32(src, k, p)
#define tsk_tail_float(n) ((__mmask16)((n) >= 16 ? 0xFFFFu : ((1u << (n)) - 1u)))
typedef __m512 tsv_float;

/* -- double: 8 lanes; top-phase positions and offsets 8 x int64, node and row ids 8 x int32 -- */
typedef __m512i tsq_double;
typedef __m256i tsn_double;
typedef __mmask8 tsk_double;
typedef struct { __m512d t0, t1, t2, t3; __m512i f0, f1; } tstab_double;

static inline tsq_double tsq_load_double(const void* p) { return _mm512_loadu_si512(p); }
static inline void tsq_store_double(void* p, tsq_double v) { _mm512_storeu_si512(p, v); }
static inline tsq_double tsq_rowoff_double(int32_t g0, int32_t m, int32_t d) {
  const __m512i r = _mm512_add_epi64(_mm512_set1_epi64(g0), _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm512_maskz_mullo_epi64(_mm512_cmplt_epi64_mask(r, _mm512_set1_epi64(m)), r,
                                  _mm512_set1_epi64(d));
}
static inline tstab_double tstab1_double(const double* thr, const int32_t* fdl, int32_t n) {
  tstab_double tb;
  const __mmask8 k = (__mmask8)((1u << n) - 1u);
  tb.t0 = _mm512_maskz_loadu_pd(k, thr);
  tb.f0 = _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(k, fdl));
  tb.t1 = tb.t0;
  tb.f1 = tb.f0;
  return tb;
}
static inline tstab_double tstab2_double(const double* thr, const int32_t* fdl) {
  tstab_double tb;
  tb.t0 = _mm512_loadu_pd(thr);
  tb.t1 = _mm512_loadu_pd(thr + 8);
  tb.f0 = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i*)fdl));
  tb.f1 = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i*)(fdl + 8)));
  return tb;
}
static inline tstab_double tstab3_double(const double* thr, const int32_t* fdl) {
  tstab_double tb;
  tb.t0 = _mm512_loadu_pd(thr);
  tb.t1 = _mm512_loadu_pd(thr + 8);
  tb.t2 = _mm512_loadu_pd(thr + 16);
  tb.t3 = _mm512_loadu_pd(thr + 24);
  tb.f0 = _mm512_loadu_si512(fdl); /* int32, 16 a register */
  tb.f1 = _mm512_loadu_si512(fdl + 16);
  return tb;
}
/* a level of 32 nodes: thresholds by two two-register permutes (bit 4 of the position picks
 * one), feat_dl by one two-register permute of the 32 int32 */
#define TS_LOOK3_double(tb, p, th, fd)                                                             \
  do {                                                                                             \
    const __mmask8 hi_ = _mm512_test_epi64_mask(p, _mm512_set1_epi64(16));                         \
    th = _mm512_mask_blend_pd(hi_, _mm512_permutex2var_pd((tb).t0, p, (tb).t1),                    \
                              _mm512_permutex2var_pd((tb).t2, p, (tb).t3));                        \
    const __m512i p32_ = _mm512_castsi256_si512(_mm512_cvtepi64_epi32(p));                         \
    fd = _mm512_cvtepi32_epi64(                                                                    \
        _mm512_castsi512_si256(_mm512_permutex2var_epi32((tb).f0, p32_, (tb).f1)));                \
  } while (0)
#define TS_LOOK1_double(tb, p, th, fd)                                                             \
  th = _mm512_permutexvar_pd(p, (tb).t0);                                                          \
  fd = _mm512_permutexvar_epi64(p, (tb).f0)
#define TS_LOOK2_double(tb, p, th, fd)                                                             \
  th = _mm512_permutex2var_pd((tb).t0, p, (tb).t1);                                                \
  fd = _mm512_permutex2var_epi64((tb).f0, p, (tb).f1)
#define TS_LOOKG_double(thr, fdl, p, th, fd)                                                       \
  th = _mm512_i64gather_pd(p, thr, 8);                                                             \
  fd = _mm512_cvtepi32_epi64(_mm512_i64gather_epi32(p, fdl, 4))
#define TS_TOPSTEP_double(PRED, Xb, off, th, fd, p)                                                \
  do {                                                                                             \
    const __m512d x_ =                                                                             \
        _mm512_i64gather_pd(_mm512_add_epi64(off, _mm512_srai_epi64(fd, 3)), Xb, 8);              \
    const __mmask8 r_ = _mm512_cmp_pd_mask(x_, th, PRED) |                                         \
                        (_mm512_cmp_pd_mask(x_, x_, _CMP_UNORD_Q) &                                \
                         ~_mm512_test_epi64_mask(fd, _mm512_set1_epi64(1)));                       \
    const __m512i p2_ = _mm512_add_epi64(p, p);                                                    \
    p = _mm512_mask_add_epi64(p2_, r_, p2_, _mm512_set1_epi64(1));                                 \
  } while (0)
static inline tsn_double tsq_node_double(tsq_double p, int32_t s) {
  return _mm256_add_epi32(_mm512_cvtepi64_epi32(p), _mm256_set1_epi32(s));
}
#define tsn_load_double(p) _mm256_loadu_si256((const __m256i*)(p))
#define tsn_maskz_load_double(k, p) _mm256_maskz_loadu_epi32(k, p)
#define tsn_store_double(p, v) _mm256_storeu_si256((__m256i*)(p), v)
#define tsn_set1_double(a) _mm256_set1_epi32(a)
#define tsn_iota_double() _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
#define tsn_add_double(a, b) _mm256_add_epi32(a, b)
#define tsn_and_double(a, b) _mm256_and_si256(a, b)
#define tsn_mask_add1_double(a, k) _mm256_mask_add_epi32(a, k, a, _mm256_set1_epi32(1))
#define tsn_srai3_double(a) _mm256_srai_epi32(a, 3)
#define tsn_mullo_double(a, b) _mm256_mullo_epi32(a, b)
#define tsn_test_double(a, bit) _mm256_test_epi32_mask(a, _mm256_set1_epi32(bit))
#define tsn_gather_i_double(base, i) _mm256_i32gather_epi32(base, i, 4)
#define tsn_gather_t_double(base, i) _mm512_i32gather_pd(i, base, 8)
#define tsn_unord_double(x) _mm512_cmp_pd_mask(x, x, _CMP_UNORD_Q)
#define tsn_cmp_double(x, t, PRED) _mm512_cmp_pd_mask(x, t, PRED)
#define tsn_compress_double(k, v) _mm256_maskz_compress_epi32(k, v)
#define tsn_scatter_double(base, k, i, v) _mm256_mask_i32scatter_epi32(base, k, i, v, 4)
/* a node's feat_dl and child: one 64-bit gather from a pack's cf (child << 32 | feat_dl), else two */
#define TS_NODE_double(cf, fdl, child, i, fd, c)                                                   \
  if (cf) {                                                                                        \
    const __m512i cf_ = _mm512_i32gather_epi64(i, cf, 8);                                          \
    fd = _mm512_cvtepi64_epi32(cf_);                                                               \
    c = _mm512_cvtepi64_epi32(_mm512_srli_epi64(cf_, 32));                                         \
  } else {                                                                                         \
    fd = _mm256_i32gather_epi32(fdl, i, 4);                                                        \
    c = _mm256_i32gather_epi32(child, i, 4);                                                       \
  }
#define tsn_expand_double(src, k, p) _mm256_mask_expandloadu_epi32(src, k, p)
#define tsk_tail_double(n) ((__mmask8)((n) >= 8 ? 0xFFu : ((1u << (n)) - 1u)))
typedef __m512d tsv_double;

/* A tree's top: its first K levels as complete levels, level l's 2^l nodes side by side (thr and
 * feat_dl at offset lvl[l] of the top's arrays), the node at position p having its children at
 * positions 2p and 2p + 1 of the next level. Position p of level K is then, in a ts_pack, entry
 * nodes + p of the pack's map (and val), else node nodes + p of the kernel layout. below: whether
 * internal nodes are left under level K, for the gather phase. */
typedef struct {
  int32_t K, below;
  int64_t nodes;
  int64_t lvl[TS_KCAP];
} ts_top;

/* per block: row offsets, top-phase positions, the leaves reached in up to TS_TBATCH trees, the
 * list of rows still walking (entries s * TS_SBLOCK + r: row r in the batch's tree s) */
#define TS_SCRATCH(T)                                                                              \
  typedef struct {                                                                                 \
    int64_t offq[TS_SBLOCK]; /* row offsets as tsq lanes (int32 or int64) */                       \
    int64_t pos[TS_SBLOCK];  /* top-phase positions, tsq lanes */                                  \
    int32_t off[TS_SBLOCK];  /* row offsets, int32 */                                              \
    int32_t idx[TS_TBATCH * TS_SBLOCK + 16];                                                       \
    int32_t act_r[TS_TBATCH * TS_SBLOCK + 16];                                                     \
    int32_t act_i[TS_TBATCH * TS_SBLOCK + 16];                                                     \
    int32_t done_r[TS_TBATCH * TS_SBLOCK + 16];                                                    \
    int32_t done_i[TS_TBATCH * TS_SBLOCK + 16];                                                    \
  } ts_scratch_##T;
TS_SCRATCH(float)
TS_SCRATCH(double)

/* The walk of one tree for the m rows of a block, in pieces:
 * - ts_stop: the top phase, every row K levels down: w->pos = each row's position in level K;
 * - ts_sfull (no pack): idx = the nodes reached, then (below) one step of every row, and the rows
 *   left at internal nodes listed in act_r / act_i as entries rbase + r (returns how many);
 * - ts_slist: the gather phase, steps of the listed rows until all are at leaves (w->idx[r] =
 *   the leaf of each listed row r). */
#define DEFINE_SIMD_TREE(T, SFX, PRED)                                                             \
  static TS_INLINE void ts_stop_##T##SFX(const T* restrict Xb, int32_t m, const ts_top* tp,       \
                                         const T* tthr, const int32_t* tfdl,                      \
                                         ts_scratch_##T* restrict w) {                             \
    enum { V = TS_V_##T };                                                                         \
    const int32_t G = (m + V - 1) / V, K = tp->K;                                                  \
    tsq_##T* P = (tsq_##T*)w->pos;                                                                 \
    const tsq_##T* OQ = (const tsq_##T*)w->offq;                                                   \
    for (int32_t g = 0; g < G; ++g) tsq_store_##T(P + g, tsq_rowoff_##T(0, 0, 0));                 \
    for (int32_t l = 0; l < K; ++l) {                                                              \
      const T* tl = tthr + tp->lvl[l];                                                             \
      const int32_t* fl = tfdl + tp->lvl[l];                                                       \
      if (l <= TS_R1_##T) {                                                                        \
        const tstab_##T tb = tstab1_##T(tl, fl, 1 << l);                                           \
        for (int32_t g = 0; g < G; ++g) {                                                          \
          tsq_##T p = tsq_load_##T(P + g), fd;                                                     \
          tsv_##T th;                                                                              \
          TS_LOOK1_##T(tb, p, th, fd);                                                             \
          TS_TOPSTEP_##T(PRED, Xb, tsq_load_##T(OQ + g), th, fd, p);                               \
          tsq_store_##T(P + g, p);                                                                 \
        }                                                                                          \
      } else if (l == TS_R2_##T) {                                                                 \
        const tstab_##T tb = tstab2_##T(tl, fl);                                                   \
        for (int32_t g = 0; g < G; ++g) {                                                          \
          tsq_##T p = tsq_load_##T(P + g), fd;                                                     \
          tsv_##T th;                                                                              \
          TS_LOOK2_##T(tb, p, th, fd);                                                             \
          TS_TOPSTEP_##T(PRED, Xb, tsq_load_##T(OQ + g), th, fd, p);                               \
          tsq_store_##T(P + g, p);                                                                 \
        }                                                                                          \
      } else if (l == TS_R3_##T) {                                                                 \
        const tstab_##T tb = tstab3_##T(tl, fl);                                                   \
        for (int32_t g = 0; g < G; ++g) {                                                          \
          tsq_##T p = tsq_load_##T(P + g), fd;                                                     \
          tsv_##T th;                                                                              \
          TS_LOOK3_##T(tb, p, th, fd);                                                             \
          TS_TOPSTEP_##T(PRED, Xb, tsq_load_##T(OQ + g), th, fd, p);                               \
          tsq_store_##T(P + g, p);                                                                 \
        }                                                                                          \
      } else {                                                                                     \
        for (int32_t g = 0; g < G; ++g) {                                                          \
          tsq_##T p = tsq_load_##T(P + g), fd;                                                     \
          tsv_##T th;                                                                              \
          TS_LOOKG_##T(tl, fl, p, th, fd);                                                         \
          TS_TOPSTEP_##T(PRED, Xb, tsq_load_##T(OQ + g), th, fd, p);                               \
          tsq_store_##T(P + g, p);                                                                 \
        }                                                                                          \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
  static TS_INLINE int32_t ts_sfull_##T##SFX(const T* restrict Xb, int32_t m, int64_t nodes,      \
                                             const T* restrict thr, const int32_t* restrict child, \
                                             const int32_t* restrict fdl, int below,              \
                                             const ts_scratch_##T* restrict w, int32_t* idx,      \
                                             int32_t rbase, int32_t* act_r, int32_t* act_i) {     \
    enum { V = TS_V_##T };                                                                         \
    const int32_t G = (m + V - 1) / V;                                                             \
    const tsq_##T* P = (const tsq_##T*)w->pos;                                                     \
    for (int32_t g = 0; g < G; ++g)                                                                \
      tsn_store_##T(idx + g * V, tsq_node_##T(tsq_load_##T(P + g), (int32_t)nodes));              \
    if (!below) return 0;                                                                          \
    int32_t na = 0;                                                                                \
    for (int32_t g = 0; g < G; ++g) {                                                              \
      const tsn_##T i = tsn_load_##T(idx + g * V);                                                 \
      const tsn_##T fd = tsn_gather_i_##T(fdl, i), c = tsn_gather_i_##T(child, i);                 \
      const tsv_##T th = tsn_gather_t_##T(thr, i);                                                 \
      const tsv_##T x = tsn_gather_t_##T(                                                          \
          Xb, tsn_add_##T(tsn_load_##T(w->off + g * V), tsn_srai3_##T(fd)));                       \
      const tsk_##T right = tsn_cmp_##T(x, th, PRED) | (tsn_unord_##T(x) & ~tsn_test_##T(fd, 1));  \
      const tsn_##T ni = tsn_mask_add1_##T(c, right);                                              \
      tsn_store_##T(idx + g * V, ni);                                                              \
      const tsk_##T leaf = (tsn_test_##T(fd, 2) & ~right) | (tsn_test_##T(fd, 4) & right);         \
      const tsk_##T act = ~leaf & tsk_tail_##T(m - g * V);                                         \
      const tsn_##T r = tsn_add_##T(tsn_iota_##T(), tsn_set1_##T(rbase + g * V));                  \
      tsn_store_##T(act_r + na, tsn_compress_##T(act, r));                                         \
      tsn_store_##T(act_i + na, tsn_compress_##T(act, ni));                                        \
      na += __builtin_popcount((unsigned)act);                                                     \
    }                                                                                              \
    return na;                                                                                     \
  }                                                                                                \
  static TS_INLINE void ts_slist_##T##SFX(const T* restrict Xb, int32_t d, int32_t na,            \
                                          const T* restrict thr, const int32_t* restrict child,   \
                                          const int32_t* restrict fdl, const int64_t* cf,         \
                                          ts_scratch_##T* restrict w) {                            \
    enum { V = TS_V_##T, S = TS_STREAMS };                                                         \
    const tsn_##T dv = tsn_set1_##T(d), rmask = tsn_set1_##T(TS_SBLOCK - 1);                       \
    tsn_##T r[S], i[S];                                                                            \
    tsk_##T live[S];                                                                               \
    int32_t q = 0, nd = 0; /* next listed row to take; rows at their leaves (done_r / done_i) */  \
    for (int s = 0; s < S; ++s) {                                                                  \
      const int32_t take = na - q < V ? na - q : V;                                                \
      live[s] = tsk_tail_##T(take);                                                                \
      r[s] = tsn_maskz_load_##T(live[s], w->act_r + q);                                            \
      i[s] = tsn_maskz_load_##T(live[s], w->act_i + q);                                            \
      q += take;                                                                                   \
    }                                                                                              \
    for (;;) {                                                                                     \
      unsigned any = 0;                                                                            \
      for (int s = 0; s < S; ++s) {                                                                \
        tsn_##T fd, c;                                                                             \
        TS_NODE_##T(cf, fdl, child, i[s], fd, c);                                                  \
        const tsv_##T th = tsn_gather_t_##T(thr, i[s]);                                            \
        const tsn_##T row = tsn_and_##T(r[s], rmask);                                              \
        const tsv_##T x =                                                                          \
            tsn_gather_t_##T(Xb, tsn_add_##T(tsn_mullo_##T(row, dv), tsn_srai3_##T(fd)));          \
        const tsk_##T right =                                                                      \
            tsn_cmp_##T(x, th, PRED) | (tsn_unord_##T(x) & ~tsn_test_##T(fd, 1));                  \
        i[s] = tsn_mask_add1_##T(c, right);                                                        \
        const tsk_##T done =                                                                       \
            ((tsn_test_##T(fd, 2) & ~right) | (tsn_test_##T(fd, 4) & right)) & live[s];            \
        tsn_store_##T(w->done_r + nd, tsn_compress_##T(done, r[s]));                               \
        tsn_store_##T(w->done_i + nd, tsn_compress_##T(done, i[s]));                               \
        const int32_t nf = __builtin_popcount((unsigned)done);                                     \
        nd += nf;                                                                                  \
        /* lanes at leaves take the next listed rows */                                            \
        const int32_t take = na - q < nf ? na - q : nf;                                            \
        const tsk_##T refill =                                                                     \
            take == nf ? done : (tsk_##T)_pdep_u32((1u << take) - 1u, (unsigned)done);             \
        r[s] = tsn_expand_##T(r[s], refill, w->act_r + q);                                         \
        i[s] = tsn_expand_##T(i[s], refill, w->act_i + q);                                         \
        q += take;                                                                                 \
        live[s] = (tsk_##T)((live[s] & ~done) | refill);                                           \
        any |= (unsigned)live[s];                                                                  \
      }                                                                                            \
      if (!any) break;                                                                             \
    }                                                                                              \
    for (int32_t j = 0; j < nd; ++j) w->idx[w->done_r[j]] = w->done_i[j];                          \
  }

DEFINE_SIMD_TREE(float, _ge, _CMP_GE_OQ)
DEFINE_SIMD_TREE(float, _gt, _CMP_GT_OQ)
DEFINE_SIMD_TREE(double, _ge, _CMP_GE_OQ)
DEFINE_SIMD_TREE(double, _gt, _CMP_GT_OQ)

/* 8 sums of one output, a += v (masked), in float32 when f32sum (TS_ADD32) */
static inline void ts_acc8(double* a, __mmask8 k, __m512d v, int f32sum) {
  __m512d s = _mm512_add_pd(_mm512_maskz_loadu_pd(k, a), v);
  if (f32sum) s = _mm512_cvtps_pd(_mm512_cvtpd_ps(s));
  _mm512_mask_storeu_pd(a, k, s);
}

/* After a pack's top phase (positions P of m rows): lanes whose position in level K is a leaf
 * add its value onto out (val: single-output forests) or record its node in idx (val NULL); map's
 * sign bit marks internal nodes, whose rows are listed (entries rbase + r) for the gather phase
 * at act_r / act_i, their node recorded in idx. map NULL: every position is a leaf. Returns how
 * many rows were listed. */
#define TS_MAPNODE 0x7fffffff
static inline int32_t ts_sfinish_float(const void* pos, int32_t m, const int32_t* map,
                                       const double* val, double* out, int f32sum, int32_t* idx,
                                       int32_t rbase, int32_t* act_r, int32_t* act_i) {
  const int32_t G = (m + 15) / 16;
  const __m512i* P = (const __m512i*)pos;
  int32_t na = 0;
  for (int32_t g = 0; g < G; ++g) {
    const __m512i p = _mm512_loadu_si512(P + g);
    const __mmask16 valid = tsk_tail_float(m - g * 16);
    __mmask16 inner = 0;
    __m512i node = _mm512_setzero_si512();
    if (map) {
      const __m512i mv = _mm512_i32gather_epi32(p, map, 4);
      inner = _mm512_movepi32_mask(mv) & valid;
      node = _mm512_and_si512(mv, _mm512_set1_epi32(TS_MAPNODE));
      const __m512i r = _mm512_add_epi32(tsn_iota_float(), _mm512_set1_epi32(rbase + g * 16));
      _mm512_storeu_si512(act_r + na, _mm512_maskz_compress_epi32(inner, r));
      _mm512_storeu_si512(act_i + na, _mm512_maskz_compress_epi32(inner, node));
      na += __builtin_popcount((unsigned)inner);
    }
    if (val) {
      const __mmask16 leaf = valid & ~inner;
      const __m512d v0 = _mm512_i32gather_pd(_mm512_castsi512_si256(p), val, 8);
      const __m512d v1 = _mm512_i32gather_pd(_mm512_extracti64x4_epi64(p, 1), val, 8);
      ts_acc8(out + g * 16, (__mmask8)leaf, v0, f32sum);
      ts_acc8(out + g * 16 + 8, (__mmask8)(leaf >> 8), v1, f32sum);
    } else {
      _mm512_storeu_si512(idx + g * 16, node);
    }
  }
  return na;
}
static inline int32_t ts_sfinish_double(const void* pos, int32_t m, const int32_t* map,
                                        const double* val, double* out, int f32sum, int32_t* idx,
                                        int32_t rbase, int32_t* act_r, int32_t* act_i) {
  const int32_t G = (m + 7) / 8;
  const __m512i* P = (const __m512i*)pos;
  int32_t na = 0;
  for (int32_t g = 0; g < G; ++g) {
    const __m512i p = _mm512_loadu_si512(P + g);
    const __mmask8 valid = tsk_tail_double(m - g * 8);
    __mmask8 inner = 0;
    __m256i node = _mm256_setzero_si256();
    if (map) {
      const __m256i mv = _mm512_i64gather_epi32(p, map, 4);
      inner = _mm256_movepi32_mask(mv) & valid;
      node = _mm256_and_si256(mv, _mm256_set1_epi32(TS_MAPNODE));
      const __m256i r = _mm256_add_epi32(tsn_iota_double(), _mm256_set1_epi32(rbase + g * 8));
      _mm256_storeu_si256((__m256i*)(act_r + na), _mm256_maskz_compress_epi32(inner, r));
      _mm256_storeu_si256((__m256i*)(act_i + na), _mm256_maskz_compress_epi32(inner, node));
      na += __builtin_popcount((unsigned)inner);
    }
    if (val) {
      ts_acc8(out + g * 8, valid & ~inner, _mm512_i64gather_pd(p, val, 8), f32sum);
    } else {
      _mm256_storeu_si256((__m256i*)(idx + g * 8), node);
    }
  }
  return na;
}

/* The tops of a forest in the kernel layout, for a call without a ts_pack: each tree's complete
 * levels (breadth-first, a tree's complete level l is its nodes s_l .. s_l + 2^l - 1). Level l + 1
 * is complete when level l is and none of its nodes has a leaf child (feat_dl's leaf bits). */
static ts_top* ts_plan(const int32_t* child, const int32_t* fdl, const int32_t* roots,
                       const int32_t* depths, int32_t n_trees) {
  ts_top* plan = (ts_top*)malloc(sizeof(ts_top) * (size_t)(n_trees > 0 ? n_trees : 1));
  if (!plan) return NULL;
  for (int32_t t = 0; t < n_trees; ++t) {
    ts_top* p = plan + t;
    int32_t k = 0, s = roots[t];
    if (child[s] != s) {
      for (k = 1; k < TS_KCAP; ++k) {
        int32_t any = 0;
        for (int32_t q = 0; q < (1 << (k - 1)); ++q) any |= fdl[s + q];
        p->lvl[k - 1] = s;
        s = child[s];
        if (any & 6) break;
      }
      if (k == TS_KCAP) p->lvl[k - 1] = s, s = child[s];
    }
    p->K = k;
    p->nodes = s;
    p->below = k < depths[t];
  }
  return plan;
}

/* leaf values of one tree (w->idx) added onto out, in float32 when f32sum (TS_ADD32) */
static inline void ts_sadd_any(const int32_t* idx, int64_t r0, int32_t m, int32_t t,
                               const int32_t* tree_out, const double* values, int32_t width,
                               int32_t n_out, int f32sum, double* out) {
  if (width == 1 && n_out == 1) {
    for (int32_t r = 0; r < m; r += 8) {
      const __mmask8 k = tsk_tail_double(m - r);
      const __m256i i = _mm256_maskz_loadu_epi32(k, idx + r);
      ts_acc8(out + r0 + r, k, _mm512_mask_i32gather_pd(_mm512_setzero_pd(), k, i, values, 8),
              f32sum);
    }
  } else if (width == 1) {
    const int32_t o = tree_out[t];
    for (int32_t r = 0; r < m; ++r) {
      double* a = out + (r0 + r) * n_out + o;
      if (f32sum) TS_ADD32(*a, values[idx[r]]);
      else *a += values[idx[r]];
    }
  } else {
    for (int32_t r = 0; r < m; ++r)
      for (int32_t q = 0; q < width; ++q) {
        const double v = values[(int64_t)idx[r] * width + q];
        if (f32sum) TS_ADD32(out[(r0 + r) * n_out + q], v);
        else out[(r0 + r) * n_out + q] += v;
      }
  }
}

/* A forest's tops padded to complete levels, built once per model by ts_pack_new_* (and freed by
 * ts_pack_free): a tree of depth up to kfull gets all its levels, a deeper one its first kpart; a
 * leaf above level K becomes a pass node (NaN threshold, default left: every row goes left) over
 * copies of itself, so every row steps K levels with no node gathers. map says which node of the
 * kernel layout each position of level K is (sign bit set: an internal node, where the gather
 * phase goes on), val its leaf value (single-output forests). */
typedef struct {
  int32_t n_trees, tsize;
  ts_top* top;
  void* thr;
  int32_t* fdl;
  int32_t* map;
  double* val;
  int64_t* cf; /* per node of the kernel layout: child << 32 | feat_dl (double forests) */
  /* the one-row walk (ts_row1_pack_*): per tree, padded to a multiple of 16 trees, the top's
   * offset, K, map / val offset and below; float forests' tops as feat_dl << 32 | threshold bits */
  int32_t *rbase, *rK, *rnodes, *rbelow;
  int64_t* node64;
  int32_t row_ok; /* offsets fit int32 (else the one-row calls take the portable walk) */
  int32_t val32;  /* every leaf value is a float32 value: float32 sums add in float32 */
} ts_pack;

/* the greatest node index of the trees 0 .. n - 1 (a depth-first walk with a heap stack, so a
 * degenerate deep tree cannot overflow a thread's stack); -1 when out of memory */
static int32_t ts_max_node(const int32_t* child, int32_t n) {
  int64_t cap = 64, top = 0;
  int32_t* st = (int32_t*)malloc(sizeof(int32_t) * (size_t)cap);
  int32_t best = n > 0 ? n - 1 : 0;
  if (!st) return -1;
  for (int32_t t = 0; t < n; ++t) {
    st[top++] = t;
    while (top > 0) {
      const int32_t i = st[--top];
      best = i > best ? i : best;
      if (child[i] == i) continue;
      if (top + 2 > cap) {
        int32_t* grown = (int32_t*)realloc(st, sizeof(int32_t) * (size_t)(cap *= 2));
        if (!grown) {
          free(st);
          return -1;
        }
        st = grown;
      }
      st[top++] = child[i];
      st[top++] = child[i] + 1;
    }
  }
  free(st);
  return best;
}

void ts_pack_free(ts_pack* pk) {
  if (!pk) return;
  free(pk->top);
  free(pk->thr);
  free(pk->fdl);
  free(pk->map);
  free(pk->val);
  free(pk->cf);
  free(pk->rbase);
  free(pk->rK);
  free(pk->rnodes);
  free(pk->rbelow);
  free(pk->node64);
  free(pk);
}

#define DEFINE_SIMD_BATCH(T)                                                                       \
  static void ts_pack_fill_##T(const ts_model* md, T* tthr, int32_t* tfdl, int32_t* map,          \
                               double* val, int32_t K, int32_t node, int32_t l, int32_t p) {       \
    const int leaf = md->child[node] == node;                                                      \
    if (l == K) {                                                                                  \
      map[p] = leaf ? node : (int32_t)((uint32_t)node | 0x80000000u);                              \
      val[p] = leaf && md->width == 1 ? md->values[node] : 0.0;                                    \
      return;                                                                                      \
    }                                                                                              \
    const int64_t at = ((int64_t)1 << l) - 1 + p;                                                  \
    tthr[at] = leaf ? (T)NAN : ((const T*)md->thr)[node];                                          \
    tfdl[at] = leaf ? 1 : md->fdl[node];                                                           \
    const int32_t c = leaf ? node : md->child[node], c1 = leaf ? node : c + 1;                     \
    ts_pack_fill_##T(md, tthr, tfdl, map, val, K, c, l + 1, 2 * p);                                \
    ts_pack_fill_##T(md, tthr, tfdl, map, val, K, c1, l + 1, 2 * p + 1);                           \
  }                                                                                                \
  ts_pack* ts_pack_new_##T(const ts_model* md, int32_t kfull, int32_t kpart) {                     \
    if (kfull > TS_KCAP) kfull = TS_KCAP;                                                          \
    if (kpart > kfull) kpart = kfull;                                                              \
    if (kpart < 0) kpart = 0;                                                                      \
    ts_pack* pk = (ts_pack*)calloc(1, sizeof(ts_pack));                                            \
    if (!pk) return NULL;                                                                          \
    const int32_t n = md->n_trees;                                                                 \
    pk->n_trees = n;                                                                               \
    pk->tsize = (int32_t)sizeof(T);                                                                \
    pk->top = (ts_top*)calloc((size_t)(n > 0 ? n : 1), sizeof(ts_top));                            \
    int64_t nt = 0, nm = 0;                                                                        \
    for (int32_t t = 0; pk->top && t < n; ++t) {                                                   \
      const int32_t depth = md->depths[t];                                                         \
      ts_top* tp = pk->top + t;                                                                    \
      tp->K = depth <= kfull ? depth : kpart;                                                      \
      tp->below = tp->K < depth;                                                                   \
      for (int32_t l = 0; l < tp->K; ++l) tp->lvl[l] = nt + ((int64_t)1 << l) - 1;                \
      tp->nodes = nm;                                                                              \
      nt += ((int64_t)1 << tp->K) - 1;                                                             \
      nm += (int64_t)1 << tp->K;                                                                   \
    }                                                                                              \
    pk->thr = malloc(sizeof(T) * (size_t)(nt + 1));                                                \
    pk->fdl = (int32_t*)malloc(sizeof(int32_t) * (size_t)(nt + 1));                                \
    pk->map = (int32_t*)malloc(sizeof(int32_t) * (size_t)(nm + 1));                                \
    pk->val = (double*)malloc(sizeof(double) * (size_t)(nm + 1));                                  \
    if (!pk->top || !pk->thr || !pk->fdl || !pk->map || !pk->val) {                                \
      ts_pack_free(pk);                                                                            \
      return NULL;                                                                                 \
    }                                                                                              \
    const int32_t n_nodes = ts_max_node(md->child, n) + 1;                                         \
    if (n_nodes <= 0) {                                                                            \
      ts_pack_free(pk);                                                                            \
      return NULL;                                                                                 \
    }                                                                                              \
    if (sizeof(T) == 8) {                                                                          \
      pk->cf = (int64_t*)malloc(sizeof(int64_t) * (size_t)(n_nodes + 1));                          \
      if (!pk->cf) {                                                                               \
        ts_pack_free(pk);                                                                          \
        return NULL;                                                                               \
      }                                                                                            \
      for (int32_t i = 0; i < n_nodes; ++i)                                                        \
        pk->cf[i] = (int64_t)(((uint64_t)(uint32_t)md->child[i] << 32) | (uint32_t)md->fdl[i]);    \
    }                                                                                              \
    for (int32_t t = 0; t < n; ++t) {                                                              \
      const ts_top* tp = pk->top + t;                                                              \
      const int64_t at = tp->K ? tp->lvl[0] : 0;                                                   \
      ts_pack_fill_##T(md, (T*)pk->thr + at, pk->fdl + at, pk->map + tp->nodes,                   \
                       pk->val + tp->nodes, tp->K, t, 0, 0);                                       \
    }                                                                                              \
    /* the one-row walk's per-tree vectors (padding trees: K 0, map / val entry 0) */              \
    const int32_t nr = (n + 15) / 16 * 16 + 16;                                                    \
    pk->rbase = (int32_t*)calloc((size_t)nr, sizeof(int32_t));                                     \
    pk->rK = (int32_t*)calloc((size_t)nr, sizeof(int32_t));                                        \
    pk->rnodes = (int32_t*)calloc((size_t)nr, sizeof(int32_t));                                    \
    pk->rbelow = (int32_t*)calloc((size_t)nr, sizeof(int32_t));                                    \
    if (sizeof(T) == 4) pk->node64 = (int64_t*)malloc(sizeof(int64_t) * (size_t)(nt + 1));         \
    if (!pk->rbase || !pk->rK || !pk->rnodes || !pk->rbelow || (sizeof(T) == 4 && !pk->node64)) { \
      ts_pack_free(pk);                                                                            \
      return NULL;                                                                                 \
    }                                                                                              \
    pk->row_ok = nt < ((int64_t)1 << 30) && nm < ((int64_t)1 << 30) && md->width == 1 &&          \
                 md->n_out == 1;                                                                   \
    pk->val32 = 1;                                                                                 \
    for (int32_t t = 0; t < n; ++t) {                                                              \
      const ts_top* tp = pk->top + t;                                                              \
      pk->rbase[t] = (int32_t)(tp->K ? tp->lvl[0] : 0);                                            \
      pk->rK[t] = tp->K;                                                                           \
      pk->rnodes[t] = (int32_t)tp->nodes;                                                          \
      pk->rbelow[t] = tp->below;                                                                   \
    }                                                                                              \
    for (int64_t i = 0; i < nt; ++i) {                                                             \
      if (sizeof(T) != 4) break;                                                                   \
      uint32_t bits;                                                                               \
      memcpy(&bits, (const T*)pk->thr + i, sizeof bits);                                           \
      pk->node64[i] = (int64_t)(((uint64_t)(uint32_t)pk->fdl[i] << 32) | bits);                    \
    }                                                                                              \
    for (int32_t i = 0; i < n_nodes && md->width == 1; ++i)                                        \
      if ((double)(float)md->values[i] != md->values[i]) pk->val32 = 0;                            \
    return pk;                                                                                     \
  }                                                                                                \
  static void ts_sblock_offsets_##T(ts_scratch_##T* w, int32_t m, int32_t d) {                   \
    enum { V = TS_V_##T };                                                                         \
    for (int32_t g = 0; g * V < m; ++g)                                                            \
      tsq_store_##T((tsq_##T*)w->offq + g, tsq_rowoff_##T(g * V, m, d));                           \
    for (int32_t r = 0; r < TS_SBLOCK; ++r) w->off[r] = r < m ? r * d : 0;                        \
  }                                                                                                \
  /* the leaves of tree t for the block, idx, added onto out (or written to leaves) */            \
  static inline void ts_sleaves_##T(const int32_t* idx, int64_t r0, int32_t m, const ts_model* md, \
                                    int32_t t, double* out, int32_t* leaves) {                     \
    if (out)                                                                                       \
      ts_sadd_any(idx, r0, m, t, md->tree_out, md->values, md->width, md->n_out, md->f32sum, out); \
    else                                                                                           \
      for (int32_t r = 0; r < m; ++r) leaves[(r0 + r) * md->n_trees + t] = idx[r];                 \
  }                                                                                                \
  /* rows [0, n) through every tree, block by block. A tree whose rows all end in its top adds   \
   * its leaves at once (with a pack, by position); up to TS_TBATCH consecutive trees that have    \
   * nodes under their tops run their gather phases as one list (a tree's list alone is too       \
   * short to keep the gathers in flight), then add their leaves in tree order. Without a pack,   \
   * the tops are the complete levels of the kernel layout (ts_plan). */                          \
  static void ts_sweep_##T(const T* X, int64_t n, int32_t d, const ts_model* md,                 \
                           const ts_top* tops, const ts_pack* pk, double* out, int32_t* leaves, \
                           ts_scratch_##T* w) {                                                    \
    const T* thr = (const T*)md->thr;                                                              \
    const int strict = md->strict;                                                                 \
    const int single = out && md->width == 1 && md->n_out == 1;                                    \
    const T* tthr = pk ? (const T*)pk->thr : thr;                                                  \
    const int32_t* tfdl = pk ? pk->fdl : md->fdl;                                                  \
    for (int64_t r0 = 0; r0 < n; r0 += TS_SBLOCK) {                                                \
      const int32_t m = (int32_t)((n - r0) < TS_SBLOCK ? (n - r0) : TS_SBLOCK);                    \
      const T* Xb = X + r0 * d;                                                                    \
      ts_sblock_offsets_##T(w, m, d);                                                              \
      for (int32_t t = 0; t < md->n_trees;) {                                                      \
        const ts_top* tp = tops + t;                                                               \
        int32_t na = 0, nb = 1;                                                                    \
        if (tp->below) {                                                                           \
          while (nb < TS_TBATCH && t + nb < md->n_trees && tops[t + nb].below) ++nb;               \
          for (int32_t s = 0; s < nb; ++s) {                                                       \
            int32_t* idx = w->idx + s * TS_SBLOCK;                                                 \
            const int64_t nodes = tp[s].nodes;                                                     \
            if (strict) ts_stop_##T##_ge(Xb, m, tp + s, tthr, tfdl, w);                            \
            else ts_stop_##T##_gt(Xb, m, tp + s, tthr, tfdl, w);                                   \
            if (pk)                                                                                \
              na += ts_sfinish_##T(w->pos, m, pk->map + nodes, NULL, NULL, 0, idx, s * TS_SBLOCK,  \
                                   w->act_r + na, w->act_i + na);                                  \
            else if (strict)                                                                       \
              na += ts_sfull_##T##_ge(Xb, m, nodes, thr, md->child, md->fdl, 1, w, idx,            \
                                      s * TS_SBLOCK, w->act_r + na, w->act_i + na);                \
            else                                                                                   \
              na += ts_sfull_##T##_gt(Xb, m, nodes, thr, md->child, md->fdl, 1, w, idx,            \
                                      s * TS_SBLOCK, w->act_r + na, w->act_i + na);                \
          }                                                                                        \
        } else {                                                                                   \
          if (strict) ts_stop_##T##_ge(Xb, m, tp, tthr, tfdl, w);                                  \
          else ts_stop_##T##_gt(Xb, m, tp, tthr, tfdl, w);                                         \
          if (pk) {                                                                                \
            ts_sfinish_##T(w->pos, m, single ? NULL : pk->map + tp->nodes,                        \
                           single ? pk->val + tp->nodes : NULL, out + r0, md->f32sum, w->idx, 0,   \
                           w->act_r, w->act_i);                                                    \
            if (single) {                                                                          \
              ++t;                                                                                 \
              continue;                                                                            \
            }                                                                                      \
          } else if (strict) {                                                                     \
            ts_sfull_##T##_ge(Xb, m, tp->nodes, thr, md->child, md->fdl, 0, w, w->idx, 0, NULL,    \
                              NULL);                                                               \
          } else {                                                                                 \
            ts_sfull_##T##_gt(Xb, m, tp->nodes, thr, md->child, md->fdl, 0, w, w->idx, 0, NULL,    \
                              NULL);                                                               \
          }                                                                                        \
        }                                                                                          \
        if (na) {                                                                                  \
          const int64_t* cf = pk ? pk->cf : NULL;                                                  \
          if (strict) ts_slist_##T##_ge(Xb, d, na, thr, md->child, md->fdl, cf, w);                \
          else ts_slist_##T##_gt(Xb, d, na, thr, md->child, md->fdl, cf, w);                       \
        }                                                                                          \
        for (int32_t s = 0; s < nb; ++s)                                                           \
          ts_sleaves_##T(w->idx + s * TS_SBLOCK, r0, m, md, t + s, out, leaves);                   \
        t += nb;                                                                                   \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
  /* the batch call with a forest's ts_pack (numerical forests): rows (n, d), out (n, n_out) as    \
   * for ts_margin_* */                                                                            \
  void ts_margin_pack_##T(const T* X, int64_t n, int32_t d, const ts_model* m, const ts_pack* pk, \
                          double* out) {                                                           \
    ts_scratch_##T* w = (ts_scratch_##T*)malloc(sizeof(ts_scratch_##T));                           \
    if (!w || (int64_t)TS_SBLOCK * d >= ((int64_t)1 << 31)) {                                      \
      free(w);                                                                                     \
      ts_margin_scalar_##T(X, n, d, (const T*)m->thr, m->child, m->fdl, NULL, m->depths,          \
                           m->tree_out, m->n_trees, m->values, m->width, m->n_out, m->strict,      \
                           NULL, m->f32sum, out);                                                  \
      return;                                                                                      \
    }                                                                                              \
    ts_sweep_##T(X, n, d, m, pk->top, pk, out, NULL, w);                                           \
    free(w);                                                                                       \
  }                                                                                                \
  static int ts_margin_simd_##T(const T* X, int64_t n, int32_t d, const T* thr,                  \
                                const int32_t* child, const int32_t* fdl, const int32_t* roots,   \
                                const int32_t* depths, const int32_t* tree_out, int32_t n_trees,  \
                                const double* values, int32_t width, int32_t n_out, int strict,   \
                                int f32sum, double* out, int32_t* leaves) {                        \
    if ((int64_t)TS_SBLOCK * d >= ((int64_t)1 << 31)) return 0;                                    \
    ts_top* plan = ts_plan(child, fdl, roots, depths, n_trees);                                    \
    ts_scratch_##T* w = (ts_scratch_##T*)malloc(sizeof(ts_scratch_##T));                           \
    if (!plan || !w) {                                                                             \
      free(plan);                                                                                  \
      free(w);                                                                                     \
      return 0;                                                                                    \
    }                                                                                              \
    ts_model md;                                                                                   \
    memset(&md, 0, sizeof md);                                                                     \
    md.thr = thr, md.child = child, md.fdl = fdl, md.depths = depths, md.tree_out = tree_out;     \
    md.values = values, md.n_trees = n_trees, md.width = width, md.n_out = n_out;                  \
    md.strict = strict, md.f32sum = f32sum;                                                        \
    ts_sweep_##T(X, n, d, &md, plan, NULL, out, leaves, w);                                        \
    free(plan);                                                                                    \
    free(w);                                                                                    \
    return 1;                                                                                      \
  }

DEFINE_SIMD_BATCH(float)
DEFINE_SIMD_BATCH(double)

/* ---- One row through a pack (ts_row1_pack_*, ts_rows_pack_*): trees in lanes, 16 a vector for
 * float rows, 8 for double. A lane walks its tree's padded top by heap index q (the children of q
 * are 2q + 1 and 2q + 2; a float forest's node is one 64-bit gather, threshold and feat_dl), level
 * by level over a chunk's lane groups; the trees that go on below their tops (LightGBM's) then
 * walk on from the nodes reached, eight at a time as ts_refill_* walks. The leaves are then added in tree order from m->init, as ts_row1_* adds them; XGBoost's float32 sum in float32
 * arithmetic when every leaf value is a float32 value (the same sums: double has more than
 * 2 * 24 + 2 bits, see TS_ADD32). */
static inline double ts_row_sum(const double* v, int32_t n, double acc, int f32sum, int val32) {
  if (f32sum && val32) {
    float a = (float)acc;
    for (int32_t i = 0; i < n; ++i) a += (float)v[i];
    return a;
  }
  if (f32sum) {
    for (int32_t i = 0; i < n; ++i) TS_ADD32(acc, v[i]);
    return acc;
  }
  for (int32_t i = 0; i < n; ++i) acc += v[i];
  return acc;
}

/* The rows' walks below the tops, for the na listed (slot, node) pairs: eight lanes, each taking
 * the next pair at its leaf (branch-free, as ts_refill_*), lv[slot] = the leaf reached. */
#define DEFINE_ROW_DEEP(T)                                                                         \
  static void ts_rdeep_##T(const T* x, const ts_model* m, const int32_t* ls, const int32_t* ln,    \
                           int32_t na, int32_t* lv) {                                              \
    const T* thr = (const T*)m->thr;                                                               \
    const int32_t *child = m->child, *fdl = m->fdl;                                                \
    const int strict = m->strict;                                                                  \
    int32_t i[TS_LANES], s[TS_LANES], next = 0, right, LF_;                                        \
    int32_t k = na < TS_LANES ? na : TS_LANES;                                                     \
    for (int32_t q = 0; q < k; ++q) s[q] = ls[next], i[q] = ln[next], ++next;                      \
    while (next + TS_LANES <= na) {                                                                \
      for (int32_t q = 0; q < TS_LANES; ++q) {                                                     \
        TS_ROW_STEP(T, x, i[q], right);                                                            \
        const int32_t mask = -LF_;                                                                 \
        lv[s[q]] = i[q];                                                                           \
        i[q] ^= (i[q] ^ ln[next]) & mask;                                                          \
        s[q] ^= (s[q] ^ ls[next]) & mask;                                                          \
        next += LF_;                                                                               \
      }                                                                                            \
    }                                                                                              \
    while (k > 0) {                                                                                \
      for (int all = 0; !all;) {                                                                   \
        all = 1;                                                                                   \
        for (int32_t q = 0; q < k; ++q) {                                                          \
          TS_ROW_STEP(T, x, i[q], right);                                                          \
          all &= LF_;                                                                              \
        }                                                                                          \
      }                                                                                            \
      for (int32_t q = 0; q < k; ++q) lv[s[q]] = i[q];                                             \
      k = na - next < TS_LANES ? na - next : TS_LANES;                                             \
      for (int32_t q = 0; q < k; ++q) s[q] = ls[next], i[q] = ln[next], ++next;                    \
    }                                                                                              \
  }
DEFINE_ROW_DEEP(float)
DEFINE_ROW_DEEP(double)

/* the leaf values of the n trees c0 .. c0 + n - 1 (n <= TS_CHUNK) for row x, into vb: level by
 * level over all the chunk's lane groups (independent, so their gathers overlap) */
static inline void ts_rchunk_float(const float* x, const ts_model* m, const ts_pack* pk,
                                   int32_t c0, int32_t n, double* vb) {
  const __m512i one = _mm512_set1_epi32(1), zero = _mm512_setzero_si512();
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, one);
  const int strict = m->strict;
  const int32_t G = (n + 15) / 16;
  __m512i Q[TS_CHUNK / 16];
  int32_t kmax = 0;
  for (int32_t g = 0; g < G; ++g) {
    Q[g] = zero;
    const int32_t k = _mm512_reduce_max_epi32(_mm512_loadu_si512(pk->rK + c0 + 16 * g));
    kmax = k > kmax ? k : kmax;
  }
  for (int32_t l = 0; l < kmax; ++l) {
    for (int32_t g = 0; g < G; ++g) {
      const int32_t t0 = c0 + 16 * g;
      const __mmask16 act =
          _mm512_cmpgt_epi32_mask(_mm512_loadu_si512(pk->rK + t0), _mm512_set1_epi32(l));
      const __m512i q = Q[g];
      const __m512i idx = _mm512_add_epi32(_mm512_loadu_si512(pk->rbase + t0), q);
      const __m512i lo = _mm512_mask_i32gather_epi64(zero, (__mmask8)act,
                                                     _mm512_castsi512_si256(idx), pk->node64, 8);
      const __m512i hi = _mm512_mask_i32gather_epi64(
          zero, (__mmask8)(act >> 8), _mm512_extracti64x4_epi64(idx, 1), pk->node64, 8);
      const __m512 th = _mm512_castsi512_ps(_mm512_permutex2var_epi32(lo, even, hi));
      const __m512i fd = _mm512_permutex2var_epi32(lo, odd, hi);
      const __m512 xv =
          _mm512_mask_i32gather_ps(_mm512_setzero_ps(), act, _mm512_srai_epi32(fd, 3), x, 4);
      const __mmask16 past = strict ? _mm512_cmp_ps_mask(xv, th, _CMP_GE_OQ)
                                    : _mm512_cmp_ps_mask(xv, th, _CMP_GT_OQ);
      const __mmask16 right =
          past | (_mm512_cmp_ps_mask(xv, xv, _CMP_UNORD_Q) & ~_mm512_test_epi32_mask(fd, one));
      const __m512i q2 = _mm512_add_epi32(_mm512_add_epi32(q, q), one);
      Q[g] = _mm512_mask_mov_epi32(q, act, _mm512_mask_add_epi32(q2, right, q2, one));
    }
  }
  int32_t ls[TS_CHUNK + 16], ln[TS_CHUNK + 16], lv[TS_CHUNK + 16], na = 0;
  for (int32_t g = 0; g < G; ++g) { /* position in level K: the leaf, or where the walk goes on */
    const int32_t t0 = c0 + 16 * g;
    const __m512i K = _mm512_loadu_si512(pk->rK + t0);
    const __m512i at = _mm512_add_epi32(
        _mm512_loadu_si512(pk->rnodes + t0),
        _mm512_sub_epi32(Q[g], _mm512_sub_epi32(_mm512_sllv_epi32(one, K), one)));
    _mm512_storeu_pd(vb + 16 * g, _mm512_i32gather_pd(_mm512_castsi512_si256(at), pk->val, 8));
    _mm512_storeu_pd(vb + 16 * g + 8,
                     _mm512_i32gather_pd(_mm512_extracti64x4_epi64(at, 1), pk->val, 8));
    const __m512i below = _mm512_loadu_si512(pk->rbelow + t0);
    const __mmask16 deep = _mm512_test_epi32_mask(below, below);
    if (deep) {
      const __m512i mv = _mm512_mask_i32gather_epi32(zero, deep, at, pk->map, 4);
      const __mmask16 inner = _mm512_movepi32_mask(mv) & deep;
      const __m512i slot = _mm512_add_epi32(tsn_iota_float(), _mm512_set1_epi32(16 * g));
      _mm512_storeu_si512(ls + na, _mm512_maskz_compress_epi32(inner, slot));
      _mm512_storeu_si512(ln + na, _mm512_maskz_compress_epi32(
                                       inner, _mm512_and_si512(mv, _mm512_set1_epi32(TS_MAPNODE))));
      na += __builtin_popcount((unsigned)inner);
    }
  }
  if (na) {
    ts_rdeep_float(x, m, ls, ln, na, lv);
    for (int32_t j = 0; j < na; ++j) vb[ls[j]] = m->values[lv[ls[j]]];
  }
}

static inline void ts_rchunk_double(const double* x, const ts_model* m, const ts_pack* pk,
                                    int32_t c0, int32_t n, double* vb) {
  const __m256i one = _mm256_set1_epi32(1), zero = _mm256_setzero_si256();
  const int strict = m->strict;
  const double* tthr = (const double*)pk->thr;
  const int32_t G = (n + 7) / 8;
  __m256i Q[TS_CHUNK / 8];
  int32_t kmax = 0;
  for (int32_t g = 0; g < G; ++g) {
    Q[g] = zero;
    const __m256i K = _mm256_loadu_si256((const __m256i*)(pk->rK + c0 + 8 * g));
    const int32_t k = _mm512_mask_reduce_max_epi32(0xFF, _mm512_castsi256_si512(K));
    kmax = k > kmax ? k : kmax;
  }
  for (int32_t l = 0; l < kmax; ++l) {
    for (int32_t g = 0; g < G; ++g) {
      const int32_t t0 = c0 + 8 * g;
      const __mmask8 act = _mm256_cmpgt_epi32_mask(
          _mm256_loadu_si256((const __m256i*)(pk->rK + t0)), _mm256_set1_epi32(l));
      const __m256i q = Q[g];
      const __m256i idx =
          _mm256_add_epi32(_mm256_loadu_si256((const __m256i*)(pk->rbase + t0)), q);
      const __m512d th = _mm512_mask_i32gather_pd(_mm512_setzero_pd(), act, idx, tthr, 8);
      const __m256i fd = _mm256_mmask_i32gather_epi32(zero, act, idx, pk->fdl, 4);
      const __m512d xv =
          _mm512_mask_i32gather_pd(_mm512_setzero_pd(), act, _mm256_srai_epi32(fd, 3), x, 8);
      const __mmask8 past = strict ? _mm512_cmp_pd_mask(xv, th, _CMP_GE_OQ)
                                   : _mm512_cmp_pd_mask(xv, th, _CMP_GT_OQ);
      const __mmask8 right =
          past | (_mm512_cmp_pd_mask(xv, xv, _CMP_UNORD_Q) & ~_mm256_test_epi32_mask(fd, one));
      const __m256i q2 = _mm256_add_epi32(_mm256_add_epi32(q, q), one);
      Q[g] = _mm256_mask_mov_epi32(q, act, _mm256_mask_add_epi32(q2, right, q2, one));
    }
  }
  int32_t ls[TS_CHUNK + 8], ln[TS_CHUNK + 8], lv[TS_CHUNK + 8], na = 0;
  for (int32_t g = 0; g < G; ++g) {
    const int32_t t0 = c0 + 8 * g;
    const __m256i K = _mm256_loadu_si256((const __m256i*)(pk->rK + t0));
    const __m256i at = _mm256_add_epi32(
        _mm256_loadu_si256((const __m256i*)(pk->rnodes + t0)),
        _mm256_sub_epi32(Q[g], _mm256_sub_epi32(_mm256_sllv_epi32(one, K), one)));
    _mm512_storeu_pd(vb + 8 * g, _mm512_i32gather_pd(at, pk->val, 8));
    const __m256i below = _mm256_loadu_si256((const __m256i*)(pk->rbelow + t0));
    const __mmask8 deep = _mm256_test_epi32_mask(below, below);
    if (deep) {
      const __m256i mv = _mm256_mmask_i32gather_epi32(zero, deep, at, pk->map, 4);
      const __mmask8 inner = _mm256_movepi32_mask(mv) & deep;
      const __m256i slot = _mm256_add_epi32(tsn_iota_double(), _mm256_set1_epi32(8 * g));
      _mm256_storeu_si256((__m256i*)(ls + na), _mm256_maskz_compress_epi32(inner, slot));
      _mm256_storeu_si256((__m256i*)(ln + na),
                          _mm256_maskz_compress_epi32(
                              inner, _mm256_and_si256(mv, _mm256_set1_epi32(TS_MAPNODE))));
      na += __builtin_popcount((unsigned)inner);
    }
  }
  if (na) {
    ts_rdeep_double(x, m, ls, ln, na, lv);
    for (int32_t j = 0; j < na; ++j) vb[ls[j]] = m->values[lv[ls[j]]];
  }
}

#define DEFINE_ROW_PACK(T)                                                                         \
  static double ts_row_pack_##T(const T* x, const ts_model* m, const ts_pack* pk, double acc) {   \
    double vb[TS_CHUNK + 16];                                                                      \
    for (int32_t c0 = 0; c0 < m->n_trees; c0 += TS_CHUNK) {                                        \
      const int32_t n = m->n_trees - c0 < TS_CHUNK ? m->n_trees - c0 : TS_CHUNK;                   \
      ts_rchunk_##T(x, m, pk, c0, n, vb);                                                          \
      acc = ts_row_sum(vb, n, acc, m->f32sum, pk->val32);                                          \
    }                                                                                              \
    return acc;                                                                                    \
  }                                                                                                \
  /* ts_row1_* with the model's pack (single-output forests): the same sum */                      \
  double ts_row1_pack_##T(const T* x, const ts_model* m, const ts_pack* pk) {                      \
    if (!pk || !pk->row_ok) return ts_row1_##T(x, m);                                              \
    return ts_row_pack_##T(x, m, pk, m->init);                                                     \
  }                                                                                                \
  /* ts_rows_* with the model's pack: n rows (row stride d), each added onto out (n, n_out) */     \
  void ts_rows_pack_##T(const T* X, int64_t n, int32_t d, const ts_model* m, const ts_pack* pk,   \
                        double* out) {                                                             \
    if (!pk || !pk->row_ok) {                                                                      \
      ts_rows_##T(X, n, d, m, out);                                                                \
      return;                                                                                      \
    }                                                                                              \
    for (int64_t r = 0; r < n; ++r) out[r] = ts_row_pack_##T(X + r * d, m, pk, out[r]);            \
  }
DEFINE_ROW_PACK(float)
DEFINE_ROW_PACK(double)
#endif /* TS_SIMD */

/* The exported batch calls: the SIMD walk where built (numerical forests), else the portable one */
#ifdef TS_SIMD
#define TS_TRY_SIMD_MARGIN(T)                                                                      \
  if (!cats && ts_margin_simd_##T(X, n, d, thr, child, fdl, roots, depths, tree_out, n_trees,     \
                                  values, width, n_out, strict, f32sum, out, NULL))                \
    return;
#define TS_TRY_SIMD_LEAVES(T)                                                                      \
  if (!cats && ts_margin_simd_##T(X, n, d, thr, child, fdl, roots, depths, NULL, n_trees, NULL,   \
                                  1, 1, strict, 0, NULL, leaves))                                  \
    return;
#else
#define TS_TRY_SIMD_MARGIN(T)
#define TS_TRY_SIMD_LEAVES(T)
/* without the SIMD walk there are no packs: ts_pack_new_* says so with NULL */
typedef struct ts_pack ts_pack;
void ts_pack_free(ts_pack* pk) { (void)pk; }
#define DEFINE_NO_PACK(T)                                                                          \
  ts_pack* ts_pack_new_##T(const ts_model* m, int32_t kfull, int32_t kpart) {                      \
    (void)m, (void)kfull, (void)kpart;                                                             \
    return NULL;                                                                                   \
  }                                                                                                \
  void ts_margin_pack_##T(const T* X, int64_t n, int32_t d, const ts_model* m, const ts_pack* pk, \
                          double* out) {                                                           \
    (void)pk;                                                                                      \
    ts_margin_scalar_##T(X, n, d, (const T*)m->thr, m->child, m->fdl, NULL, m->depths,             \
                         m->tree_out, m->n_trees, m->values, m->width, m->n_out, m->strict, NULL, \
                         m->f32sum, out);                                                          \
  }                                                                                                \
  double ts_row1_pack_##T(const T* x, const ts_model* m, const ts_pack* pk) {                      \
    (void)pk;                                                                                      \
    return ts_row1_##T(x, m);                                                                      \
  }                                                                                                \
  void ts_rows_pack_##T(const T* X, int64_t n, int32_t d, const ts_model* m, const ts_pack* pk,   \
                        double* out) {                                                             \
    (void)pk;                                                                                      \
    ts_rows_##T(X, n, d, m, out);                                                                  \
  }
DEFINE_NO_PACK(float)
DEFINE_NO_PACK(double)
#endif
#define DEFINE_EXPORTS(T)                                                                          \
  /* out (n, n_out) holds each row's starting sums (zeros, or XGBoost's float32 base score when  \
   * f32sum); values (n_nodes, width) by node; depths holds each tree's depth and then (n_trees    \
   * more) a level down to which every row steps before the walk asks which reached a leaf (at   \
   * most the shallowest leaf's). */                                                               \
  void ts_margin_##T(const T* X, int64_t n, int32_t d, const T* thr, const int32_t* child,         \
                     const int32_t* fdl, const int32_t* roots, const int32_t* depths,              \
                     const int32_t* tree_out, int32_t n_trees, const double* values,               \
                     int32_t width, int32_t n_out, int strict, const ts_cats* cats, int f32sum,    \
                     double* out) {                                                                \
    TS_TRY_SIMD_MARGIN(T)                                                                          \
    ts_margin_scalar_##T(X, n, d, thr, child, fdl, roots, depths, tree_out, n_trees, values,       \
                         width, n_out, strict, cats, f32sum, out);                                 \
  }                                                                                                \
  /* leaves (n, n_trees): the kernel's node index reached in each tree. */                         \
  void ts_leaves_##T(const T* X, int64_t n, int32_t d, const T* thr, const int32_t* child,         \
                     const int32_t* fdl, const int32_t* roots, const int32_t* depths,              \
                     int32_t n_trees, int strict, const ts_cats* cats, int32_t* leaves) {         \
    TS_TRY_SIMD_LEAVES(T)                                                                          \
    ts_leaves_scalar_##T(X, n, d, thr, child, fdl, roots, depths, n_trees, strict, cats, leaves); \
  }
DEFINE_EXPORTS(float)
DEFINE_EXPORTS(double)

int ts_kernel_abi(void) { return 7; }

/* 1 when this build has the SIMD batch walk (ts_pack_new_* then returns packs), else 0 */
int ts_kernel_simd(void) {
#ifdef TS_SIMD
  return 1;
#else
  return 0;
#endif
}
