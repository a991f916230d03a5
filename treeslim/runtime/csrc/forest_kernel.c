/* treeslim batch kernel: tree-at-a-time, level-synchronous traversal over blocks of rows.
 *
 * Layout (built by treeslim/_kernel.py): three arrays over nodes, thr, child and feat_dl (struct
 * of arrays, so the compiler can vectorise the row loop with gathers). An internal node's
 * children sit side by side (left = child, right = child + 1); feat_dl = feature * 2 + default_left.
 * A leaf loops onto itself: child = its own index, default_left = 1 and thr = NaN, so both the
 * "<" and the "<=" tests send every value, NaN included, "left" back to it. That makes each level
 * step branch-free, so a tree of depth D costs exactly D steps per row.
 *
 * NaN semantics: with default_left the test is !(x >= t) (NaN -> left), otherwise x < t (NaN ->
 * right); the "<=" variant uses !(x > t) and x <= t.
 *
 * Single-threaded on purpose: the caller splits big batches into row ranges and runs them on
 * blocking worker threads (treeslim/runtime/_kernel.py), so no thread ever spins waiting for work
 * and small batches never leave the calling thread.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 128

/* depth level steps for all rows of a block; NOT_LEFT_IF_DL / LEFT_IF are the tests for nodes
 * whose default side is left / right (the first is false for NaN, so NaN goes left) */
#define TS_LEVELS(T, NOT_LEFT_IF_DL, LEFT_IF)                                                      \
  for (int32_t l = 0; l < depth; ++l) {                                                            \
    for (int64_t r = 0; r < m; ++r) {                                                              \
      const int32_t i = idx[r];                                                                    \
      const int32_t fd = fdl[i];                                                                   \
      const T t = thr[i];                                                                          \
      const T x = Xb[r * d + (fd >> 1)];                                                           \
      const int left = (fd & 1) ? !(x NOT_LEFT_IF_DL t) : (x LEFT_IF t);                           \
      idx[r] = child[i] + !left;                                                                   \
    }                                                                                              \
  }

#define DEFINE_KERNELS(T)                                                                          \
  static inline void walk_##T(const T* restrict X, int64_t r0, int64_t m, int32_t d,              \
                              const T* restrict thr, const int32_t* restrict child,               \
                              const int32_t* restrict fdl, int32_t root, int32_t depth,           \
                              int strict, int32_t* restrict idx) {                                \
    for (int64_t r = 0; r < m; ++r) idx[r] = root;                                                 \
    const T* restrict Xb = X + r0 * d;                                                             \
    if (strict) {                                                                                  \
      TS_LEVELS(T, >=, <)                                                                          \
    } else {                                                                                       \
      TS_LEVELS(T, >, <=)                                                                          \
    }                                                                                              \
  }                                                                                                \
                                                                                                   \
  /* out (n, n_out) must be zeroed by the caller; values (n_nodes, width) by node. */              \
  void ts_margin_##T(const T* X, int64_t n, int32_t d, const T* thr, const int32_t* child,         \
                     const int32_t* fdl, const int32_t* roots, const int32_t* depths,              \
                     const int32_t* tree_out, int32_t n_trees, const double* values,               \
                     int32_t width, int32_t n_out, int strict, double* out) {                     \
    const int64_t nblocks = (n + BLOCK - 1) / BLOCK;                                               \
    for (int64_t b = 0; b < nblocks; ++b) {                                                        \
      int32_t idx[BLOCK];                                                                          \
      const int64_t r0 = b * BLOCK;                                                                \
      const int64_t m = (n - r0) < BLOCK ? (n - r0) : BLOCK;                                       \
      for (int32_t t = 0; t < n_trees; ++t) {                                                      \
        walk_##T(X, r0, m, d, thr, child, fdl, roots[t], depths[t], strict, idx);                  \
        if (width == 1) {                                                                          \
          const int32_t o = tree_out[t];                                                           \
          for (int64_t r = 0; r < m; ++r) out[(r0 + r) * n_out + o] += values[idx[r]];             \
        } else {                                                                                   \
          for (int64_t r = 0; r < m; ++r)                                                          \
            for (int32_t k = 0; k < width; ++k)                                                    \
              out[(r0 + r) * n_out + k] += values[(int64_t)idx[r] * width + k];                    \
        }                                                                                          \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
                                                                                                   \
  /* leaves (n, n_trees): the kernel's node index reached in each tree. */                         \
  void ts_leaves_##T(const T* X, int64_t n, int32_t d, const T* thr, const int32_t* child,         \
                     const int32_t* fdl, const int32_t* roots, const int32_t* depths,              \
                     int32_t n_trees, int strict, int32_t* leaves) {                              \
    const int64_t nblocks = (n + BLOCK - 1) / BLOCK;                                               \
    for (int64_t b = 0; b < nblocks; ++b) {                                                        \
      int32_t idx[BLOCK];                                                                          \
      const int64_t r0 = b * BLOCK;                                                                \
      const int64_t m = (n - r0) < BLOCK ? (n - r0) : BLOCK;                                       \
      for (int32_t t = 0; t < n_trees; ++t) {                                                      \
        walk_##T(X, r0, m, d, thr, child, fdl, roots[t], depths[t], strict, idx);                  \
        for (int64_t r = 0; r < m; ++r) leaves[(r0 + r) * n_trees + t] = idx[r];                   \
      }                                                                                            \
    }                                                                                              \
  }

DEFINE_KERNELS(float)
DEFINE_KERNELS(double)

int ts_kernel_abi(void) { return 3; }
