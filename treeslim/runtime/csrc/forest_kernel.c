/* treeslim batch kernel: tree-at-a-time, level-synchronous traversal over blocks of rows.
 *
 * Layout (built by treeslim/_kernel.py): three arrays over nodes, thr, child and feat_dl (struct
 * of arrays, so the compiler can vectorise the row loop with gathers). An internal node's
 * children sit side by side (left = child, right = child + 1); feat_dl = feature * 2 + default_left.
 * A leaf loops onto itself: child = its own index, default_left = 1 and thr = NaN, so both the
 * "<" and the "<=" tests send every value, NaN included, "left" back to it. That makes each level
 * step branch-free, so a tree of depth D costs exactly D steps per row.
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

/* the level steps of a forest with categorical splits: a branch on the node kind */
#define TS_LEVELS_CAT(T, GOES_RIGHT)                                                               \
  for (int32_t l = 0; l < depth; ++l) {                                                            \
    for (int64_t r = 0; r < m; ++r) {                                                              \
      const int32_t i = idx[r];                                                                    \
      const int32_t fd = fdl[i];                                                                   \
      const T x = Xb[r * d + (fd >> 1)];                                                           \
      const int32_t s = cats->set[i];                                                              \
      const int right = s < 0 ? ((x GOES_RIGHT thr[i]) | ((x != x) & !(fd & 1)))                   \
                              : cat_right_##T(x, s, fd & 1, cats);                                 \
      idx[r] = child[i] + right;                                                                   \
    }                                                                                              \
  }

/* depth level steps for all rows of a block, branch-free: a row goes right when its value is past
 * the threshold (GOES_RIGHT: >= for "<" models, > for "<=" models; false for NaN), or when it is
 * NaN and the node's default side is right */
#define TS_LEVELS(T, GOES_RIGHT)                                                                   \
  for (int32_t l = 0; l < depth; ++l) {                                                            \
    for (int64_t r = 0; r < m; ++r) {                                                              \
      const int32_t i = idx[r];                                                                    \
      const int32_t fd = fdl[i];                                                                   \
      const T t = thr[i];                                                                          \
      const T x = Xb[r * d + (fd >> 1)];                                                           \
      idx[r] = child[i] + ((x GOES_RIGHT t) | ((x != x) & !(fd & 1)));                             \
    }                                                                                              \
  }

#define DEFINE_KERNELS(T)                                                                          \
  static inline void walk_##T(const T* restrict X, int64_t r0, int64_t m, int32_t d,              \
                              const T* restrict thr, const int32_t* restrict child,               \
                              const int32_t* restrict fdl, int32_t root, int32_t depth,           \
                              int strict, const ts_cats* cats, int32_t* restrict idx) {           \
    for (int64_t r = 0; r < m; ++r) idx[r] = root;                                                 \
    const T* restrict Xb = X + r0 * d;                                                             \
    if (cats && strict) {                                                                          \
      TS_LEVELS_CAT(T, >=)                                                                         \
    } else if (cats) {                                                                             \
      TS_LEVELS_CAT(T, >)                                                                          \
    } else if (strict) {                                                                           \
      TS_LEVELS(T, >=)                                                                             \
    } else {                                                                                       \
      TS_LEVELS(T, >)                                                                              \
    }                                                                                              \
  }                                                                                                \
                                                                                                   \
  /* out (n, n_out) must be zeroed by the caller; values (n_nodes, width) by node. */              \
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
        walk_##T(X, r0, m, d, thr, child, fdl, roots[t], depths[t], strict, cats, idx);            \
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
        walk_##T(X, r0, m, d, thr, child, fdl, roots[t], depths[t], strict, cats, idx);            \
        for (int64_t r = 0; r < m; ++r) leaves[(r0 + r) * n_trees + t] = idx[r];                   \
      }                                                                                            \
    }                                                                                              \
  }

DEFINE_KERNELS(float)
DEFINE_KERNELS(double)

/* One row through every tree, eight trees walked side by side: a single row has no other rows to
 * overlap with, so the independent trees supply the parallelism the CPU needs to hide each
 * level's dependent loads. Within each chunk of TS_CHUNK trees the walk follows `order` (trees
 * sorted by depth, so the eight trees of a group finish together), and the leaves are then added
 * in tree order, as ts_margin_* adds them, so the sums are identical. The model's arrays travel
 * in one struct (one pointer per call). */
#define TS_CHUNK 512
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

#define TS_ROW_STEP(T, X, I)                                                                       \
  do {                                                                                             \
    const int32_t fd_ = fdl[I];                                                                    \
    const T t_ = thr[I], x_ = X[fd_ >> 1];                                                         \
    const int right_ = (strict ? (x_ >= t_) : (x_ > t_)) | ((x_ != x_) & !(fd_ & 1));               \
    I = child[I] + right_;                                                                         \
  } while (0)

#define DEFINE_ROW(T)                                                                              \
  void ts_row_##T(const T* x, const ts_model* m, double* out) {                                    \
    const T* thr = (const T*)m->thr;                                                               \
    const int32_t *child = m->child, *fdl = m->fdl, *depths = m->depths, *order = m->order;        \
    const int strict = m->strict;                                                                  \
    int32_t leaf[TS_CHUNK];                                                                        \
    for (int32_t c0 = 0; c0 < m->n_trees; c0 += TS_CHUNK) {                                        \
      const int32_t n = m->n_trees - c0 < TS_CHUNK ? m->n_trees - c0 : TS_CHUNK;                   \
      const int32_t* ord = order + c0;                                                             \
      int32_t j = 0;                                                                               \
      for (; j + 8 <= n; j += 8) {                                                                 \
        int32_t i[8], dmax = 0;                                                                    \
        for (int k = 0; k < 8; ++k) {                                                              \
          i[k] = ord[j + k];                                                                       \
          dmax = depths[i[k]] > dmax ? depths[i[k]] : dmax;                                        \
        }                                                                                          \
        for (int32_t l = 0; l < dmax; ++l)                                                         \
          for (int k = 0; k < 8; ++k) TS_ROW_STEP(T, x, i[k]);                                     \
        for (int k = 0; k < 8; ++k) leaf[ord[j + k] - c0] = i[k];                                  \
      }                                                                                            \
      for (; j < n; ++j) {                                                                         \
        int32_t i = ord[j];                                                                        \
        for (int32_t l = 0; l < depths[ord[j]]; ++l) TS_ROW_STEP(T, x, i);                         \
        leaf[ord[j] - c0] = i;                                                                     \
      }                                                                                            \
      for (int32_t t = 0; t < n; ++t) ts_add_leaf(m, c0 + t, leaf[t], out);                        \
    }                                                                                              \
  }                                                                                                \
  /* n rows (row stride d), each walked as above, added onto out (n, n_out) */         \
  void ts_rows_##T(const T* X, int64_t n, int32_t d, const ts_model* m, double* out) {           \
    for (int64_t r = 0; r < n; ++r) ts_row_##T(X + r * d, m, out + r * m->n_out);                 \
  }                                                                                                \
  /* one row, one output: the sum from m->init (no averaging) */                                  \
  double ts_row1_##T(const T* x, const ts_model* m) {                                              \
    double out = m->init;                                                                          \
    ts_row_##T(x, m, &out);                                                                        \
    return out;                                                                                    \
  }

DEFINE_ROW(float)
DEFINE_ROW(double)

int ts_kernel_abi(void) { return 6; }
