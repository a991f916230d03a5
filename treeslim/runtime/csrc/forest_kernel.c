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
  void ts_margin_##T(const T* X, int64_t n, int32_t d, const T* thr, const int32_t* child,         \
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
        walk_##T(X, r0, m, d, thr, child, fdl, roots[t], depths[t], depths[n_trees + t], strict,   \
                 cats, idx);                                                                       \
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
  void ts_leaves_##T(const T* X, int64_t n, int32_t d, const T* thr, const int32_t* child,         \
                     const int32_t* fdl, const int32_t* roots, const int32_t* depths,              \
                     int32_t n_trees, int strict, const ts_cats* cats, int32_t* leaves) {         \
    const int64_t nblocks = (n + BLOCK - 1) / BLOCK;                                               \
    for (int64_t b = 0; b < nblocks; ++b) {                                                        \
      int32_t idx[BLOCK];                                                                          \
      const int64_t r0 = b * BLOCK;                                                                \
      const int64_t m = (n - r0) < BLOCK ? (n - r0) : BLOCK;                                       \
      for (int32_t t = 0; t < n_trees; ++t) {                                                      \
        walk_##T(X, r0, m, d, thr, child, fdl, roots[t], depths[t], depths[n_trees + t], strict,   \
                 cats, idx);                                                                       \
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

int ts_kernel_abi(void) { return 7; }
