/* kernel_abi.c: the engine of a kernel model library. treeslim's kernel
 * (treeslim/runtime/csrc/forest_kernel.c, included as it is, its functions hidden in the library)
 * scoring a model embedded as static data (kernel_abi.h), plus what the C ABI adds around the
 * kernel's sums: the starting values, averaging, the base score and the link, computed as
 * treeslim.runtime.KernelForest.margin_prepared and Forest.predict compute them.
 *
 * - Up to M->row_walk_max rows (without categorical splits) are walked one at a time, eight trees
 *   side by side (ts_rows_*); more by the blocked, tree-at-a-time walk (ts_margin_*): the choice
 *   KernelForest makes, and the sums are identical either way.
 * - Single-threaded: a call scores its rows on the calling thread. Callers that want threads split
 *   the rows into ranges and call once per range (treeslim's Python side does, for big batches).
 * - Thread-safe: nothing global is written; concurrent calls are independent.
 * - Allocation: none when the rows come in the model's precision (float32 rows to an XGBoost or
 *   scikit-learn model, float64 rows to a LightGBM model): the kernel reads them in place and keeps
 *   its per-block state on the stack. Rows in the other precision are converted a block (up to 128
 *   rows) at a time into a 32 KB stack buffer; only when a block of the model's rows is wider than
 *   that (more than 64 float32 or 32 float64 features per row in a 128-row block; a single row is
 *   one block of one row) is one heap buffer of one block taken per call (malloc, freed before the
 *   call returns; if malloc fails, smaller blocks in the stack buffer).
 *
 * Model-independent: compiled once per compiler and target and cached (the model's own file is
 * small and quick to compile), so compiling a model costs little more than its data.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h> /* before the hidden region: system declarations keep their visibility */
#endif

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif
#include "forest_kernel.c"
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#include "kernel_abi.h"
#include "ts_link.h"

#define TS_ABI_BLOCK 128        /* rows converted at a time (the kernel's block) */
#define TS_ABI_BUF_BYTES 32768  /* the stack buffer for rows converted to the model's precision */

int32_t ts_abi_layout(void) { return TS_ABI_MODEL_LAYOUT; }

/* the summed leaves of n rows in the model's precision (row stride n_features), onto out */
static void ts_abi_sum(const ts_abi_model* M, const ts_model* m, const ts_cats* cats,
                       const void* Xt, int64_t n, int walk_rows, double* out) {
  const int32_t d = M->n_features;
  if (walk_rows) {
    if (M->f32) ts_rows_float((const float*)Xt, n, d, m, out);
    else ts_rows_double((const double*)Xt, n, d, m, out);
  } else if (M->f32) {
    ts_margin_float((const float*)Xt, n, d, (const float*)M->thr, M->child, M->fdl, M->roots,
                    M->depths, M->tree_out, M->n_trees, M->values, M->width, M->n_out, M->strict,
                    cats, M->f32sum, out);
  } else {
    ts_margin_double((const double*)Xt, n, d, (const double*)M->thr, M->child, M->fdl, M->roots,
                     M->depths, M->tree_out, M->n_trees, M->values, M->width, M->n_out, M->strict,
                     cats, M->f32sum, out);
  }
}

/* ts_abi_sum of rows in the other precision, converted a block at a time (rounded to float32 as
 * numpy's astype rounds: to nearest, beyond float32's range to +-inf; float32 to float64 is exact) */
static void ts_abi_sum_converted(const ts_abi_model* M, const ts_model* m, const ts_cats* cats,
                                 const void* X, int in_f32, int64_t n, int walk_rows,
                                 double* out) {
  const int64_t d = M->n_features, k = M->n_out;
  const size_t row_bytes = (size_t)d * (M->f32 ? sizeof(float) : sizeof(double));
  double stack[TS_ABI_BUF_BYTES / sizeof(double)];
  void *buf = stack, *heap = NULL;
  int64_t chunk = n < TS_ABI_BLOCK ? n : TS_ABI_BLOCK;
  if (row_bytes > 0 && (size_t)chunk * row_bytes > sizeof stack) {
    heap = malloc((size_t)chunk * row_bytes);
    if (heap != NULL) {
      buf = heap;
    } else {
      chunk = (int64_t)(sizeof stack / row_bytes);
      if (chunk == 0) {
        fprintf(stderr, "treeslim model library: out of memory converting a row\n");
        abort();
      }
    }
  }
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = n - r0 < chunk ? n - r0 : chunk;
    const int64_t count = rows * d;
    if (in_f32) {
      const float* src = (const float*)X + r0 * d;
      double* dst = (double*)buf;
      for (int64_t i = 0; i < count; ++i) dst[i] = (double)src[i];
    } else {
      const double* src = (const double*)X + r0 * d;
      float* dst = (float*)buf;
      for (int64_t i = 0; i < count; ++i) dst[i] = (float)src[i];
    }
    ts_abi_sum(M, m, cats, buf, rows, walk_rows, out + r0 * k);
  }
  free(heap);
}

void ts_abi_predict(const ts_abi_model* M, const void* X, int in_f32, int64_t n_rows,
                    int32_t margin, double* out) {
  const int64_t k = M->n_out;
  if (n_rows <= 0) return;
  /* the kernel's views of the model: a few words on the stack, nothing global */
  ts_model m;
  memset(&m, 0, sizeof m); /* fields the kernel may add later start at 0 */
  m.thr = M->thr;
  m.child = M->child;
  m.fdl = M->fdl;
  m.depths = M->depths;
  m.tree_out = M->tree_out;
  m.values = M->values;
  m.order = M->order;
  m.n_trees = M->n_trees;
  m.width = M->width;
  m.n_out = M->n_out;
  m.strict = M->strict;
  m.f32sum = M->f32sum;
  m.refill = M->refill;
  m.init = M->init[0];
  ts_cats c;
  const ts_cats* cats = NULL;
  memset(&c, 0, sizeof c);
  if (M->cat_set != NULL) {
    c.set = M->cat_set;
    c.bits = M->cat_bits;
    c.words = M->cat_words;
    c.lgb = M->cat_lgb;
    cats = &c;
  }
  for (int64_t i = 0; i < n_rows; ++i)
    for (int64_t j = 0; j < k; ++j) out[i * k + j] = M->init[j];
  const int walk_rows = n_rows <= M->row_walk_max && cats == NULL;
  if ((in_f32 != 0) == (M->f32 != 0)) ts_abi_sum(M, &m, cats, X, n_rows, walk_rows, out);
  else ts_abi_sum_converted(M, &m, cats, X, in_f32, n_rows, walk_rows, out);
  /* margin = sum / trees per output (random forests) + base score (float64 sums), then the link */
  for (int64_t i = 0; i < n_rows; ++i) {
    double* o = out + i * k;
    if (M->average)
      for (int64_t j = 0; j < k; ++j) o[j] /= (double)M->average;
    if (M->add_base)
      for (int64_t j = 0; j < k; ++j) o[j] += M->base[j];
    if (!margin) ts_link_apply(o, (int)k, M->link, M->alpha);
  }
}

double ts_abi_row1(const ts_abi_model* M, const void* x, int in_f32, int32_t margin) {
  double v = NAN;
  if (M->n_out == 1) ts_abi_predict(M, x, in_f32, 1, margin, &v);
  return v;
}
