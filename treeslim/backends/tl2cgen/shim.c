/* treeslim's entry points around TL2cgen's generated predict(), compiled with TL2cgen's sources:
 * a one-row function for the Python fast path and the public C ABI (treeslim_*). TS_ENTRY_T,
 * TS_LEAF_T, TS_NFEAT, TS_INPUT_T, TS_LINK, TS_ALPHA, TS_ABI_VERSION, TS_MODEL_INFO and the
 * categorical TS_HAS_CAT, TS_CAT_LIGHTGBM, TS_CAT_WIDTH and ts_is_cat[] are
 * defined in front of this file by treeslim.backends.tl2cgen._codegen. A row's entries live on
 * the C stack, so nothing here allocates; only rows wider than TS_STACK_BYTES (a model with more
 * than 32,768 features) take a heap buffer, since a thread's stack may be smaller than the row
 * (8 MB for a million doubles). */
#include "header.h"
#include "ts_link.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TS_NOUT (N_TARGET * MAX_N_CLASS)
#define TS_STACK_BYTES 262144
#if TS_NFEAT * 8 > TS_STACK_BYTES
#define TS_ENTRIES(e)                                                    \
  union Entry* e = (union Entry*)malloc(sizeof(union Entry) * TS_NFEAT); \
  if (e == NULL) abort()
#define TS_FREE(e) free(e)
#else
#define TS_ENTRIES(e) union Entry e[TS_NFEAT]
#define TS_FREE(e) (void)0
#endif

void ts_predict_noq(union Entry* data, int pred_margin, TS_LEAF_T* result);

/* The link from raw scores to predictions (ts_link.h, shared with the kernel library):
 * TS_LINK 0 identity, 1 sigmoid (slope TS_ALPHA), 2 softmax, 3 exponential. */
#define ts_link(r, k) ts_link_apply((r), (k), TS_LINK, TS_ALPHA)

/* Categorical features (TS_HAS_CAT, with ts_is_cat[] flagging them) reach TL2cgen as exact codes:
 * a valid value (x >= 0, or x > -1 under LightGBM's rule TS_CAT_LIGHTGBM, and below the widest
 * category set TS_CAT_WIDTH) becomes the integer trunc(x), anything else 2^25, which TL2cgen's test
 * (0 <= x <= 2^24, then a bit lookup) takes for no member, as the Forest does. So TL2cgen never
 * casts a negative or huge value to unsigned, the (-1, 0) LightGBM codes are 0, and no double
 * reaching TL2cgen has the low word -1 it reads as "missing". */
#if TS_HAS_CAT
static inline TS_ENTRY_T ts_code(TS_ENTRY_T v) {
#if TS_CAT_LIGHTGBM
  if (v > -1 && v < TS_CAT_WIDTH) return (TS_ENTRY_T)(int32_t)v;
#else
  if (v >= 0 && v < TS_CAT_WIDTH) return (TS_ENTRY_T)(int32_t)v;
#endif
  return (TS_ENTRY_T)33554432.0;
}
#define TS_FILL_CAT(e, v, i) \
  if (ts_is_cat[i]) { (e).fvalue = ts_code(v); continue; }
#else
#define TS_FILL_CAT(e, v, i)
#endif

/* Entries are quantized here, not in TL2cgen's predict: TL2cgen marks a missing value by
 * writing -1 into the low 32 bits of the union, which a float64 value can also hold (LightGBM
 * thresholds often do), so it would take such a value for missing. Quantized indices are never
 * -1, so after this fill "missing" is unambiguous. */
#define TS_DEFINE(SUFFIX, IN_T)                                                     \
  static inline void ts_fill_##SUFFIX(union Entry* e, const IN_T* x, int d) {       \
    for (int i = 0; i < d; ++i) {                                                   \
      if (isnan(x[i])) { memset(&e[i], 0xff, sizeof(e[i])); continue; }             \
      TS_FILL_CAT(e[i], (TS_ENTRY_T)(TS_INPUT_T)x[i], i)                            \
      e[i].qvalue = quantize((TS_ENTRY_T)(TS_INPUT_T)x[i], (unsigned)i);            \
    }                                                                               \
  }                                                                                 \
  /* one row, one output: the value is returned, nothing is allocated */            \
  double ts_row1_##SUFFIX(const IN_T* x, int margin) {                              \
    TS_ENTRIES(e);                                                                  \
    TS_LEAF_T r[TS_NOUT] = {0};                                                     \
    double v;                                                                       \
    ts_fill_##SUFFIX(e, x, TS_NFEAT);                                               \
    ts_predict_noq(e, 1, r);                                                        \
    TS_FREE(e);                                                                     \
    v = (double)r[0];                                                               \
    if (!margin) ts_link(&v, 1);                                                    \
    return v;                                                                       \
  }

TS_DEFINE(f64, double)
TS_DEFINE(f32, float)

/* ------------------------------------------------------------------------------------------
 * The stable C ABI, documented in the generated header (treeslim.h.in). No global state is
 * written and nothing is allocated (but for rows wider than TS_STACK_BYTES, see above): every
 * call keeps its buffers on its own stack, so concurrent calls from any number of threads are
 * safe.
 * ------------------------------------------------------------------------------------------ */

#define TS_PUBLIC(NAME, IN_T, SUFFIX)                                               \
  void NAME(const IN_T* X, int64_t n_rows, int32_t margin, double* out) {          \
    TS_ENTRIES(e);                                                                  \
    for (int64_t i = 0; i < n_rows; ++i) {                                          \
      TS_LEAF_T r[TS_NOUT] = {0};                                                   \
      double* o = out + i * TS_NOUT;                                                \
      ts_fill_##SUFFIX(e, X + i * TS_NFEAT, TS_NFEAT);                              \
      ts_predict_noq(e, 1, r);                                                      \
      for (int k = 0; k < TS_NOUT; ++k) o[k] = (double)r[k];                        \
      if (!margin) ts_link(o, TS_NOUT);                                             \
    }                                                                               \
    TS_FREE(e);                                                                     \
  }

TS_PUBLIC(treeslim_predict, double, f64)
TS_PUBLIC(treeslim_predict_f32, float, f32)

int32_t treeslim_abi_version(void) { return TS_ABI_VERSION; }
int32_t treeslim_cpu_supported(void) { return 1; } /* built for the compiler's default target */
int32_t treeslim_num_features(void) { return TS_NFEAT; }
int32_t treeslim_num_outputs(void) { return TS_NOUT; }
const char* treeslim_model_info(void) { return TS_MODEL_INFO; }
