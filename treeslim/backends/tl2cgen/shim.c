/* treeslim's row entry points around TL2cgen's generated predict(), compiled with TL2cgen's
 * sources. TS_ENTRY_T, TS_LEAF_T, TS_NFEAT and TS_INPUT_T are defined in front of this file by
 * treeslim.backends.tl2cgen._codegen. A row's entries live on the C stack, so nothing here
 * allocates; only rows wider than TS_STACK_BYTES (a model with more than 32,768 features) take a
 * heap buffer, since a thread's stack may be smaller than the row (8 MB for a million doubles). */
#include "header.h"
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

/* Entries are quantized here, not in TL2cgen's predict: TL2cgen marks a missing value by
 * writing -1 into the low 32 bits of the union, which a float64 value can also hold (LightGBM
 * thresholds often do), so it would take such a value for missing. Quantized indices are never
 * -1, so after this fill "missing" is unambiguous. */
#define TS_DEFINE(SUFFIX, IN_T)                                                     \
  static inline void ts_fill_##SUFFIX(union Entry* e, const IN_T* x, int d) {       \
    for (int i = 0; i < d; ++i) {                                                   \
      if (isnan(x[i])) { memset(&e[i], 0xff, sizeof(e[i])); }                       \
      else { e[i].qvalue = quantize((TS_ENTRY_T)(TS_INPUT_T)x[i], (unsigned)i); }   \
    }                                                                               \
  }                                                                                 \
  /* one row, one output: the value is returned, nothing is allocated */            \
  double ts_row1_##SUFFIX(const IN_T* x, int margin) {                              \
    TS_ENTRIES(e);                                                                  \
    TS_LEAF_T r[TS_NOUT] = {0};                                                     \
    ts_fill_##SUFFIX(e, x, TS_NFEAT);                                               \
    ts_predict_noq(e, margin, r);                                                   \
    TS_FREE(e);                                                                     \
    return (double)r[0];                                                            \
  }                                                                                 \
  /* n rows, row at a time (TL2cgen's own way), outputs into out (n, TS_NOUT) */    \
  void ts_rows_##SUFFIX(const IN_T* X, int64_t n, int margin, double* out) {        \
    TS_ENTRIES(e);                                                                  \
    for (int64_t i = 0; i < n; ++i) {                                               \
      TS_LEAF_T r[TS_NOUT] = {0};                                                   \
      ts_fill_##SUFFIX(e, X + i * TS_NFEAT, TS_NFEAT);                              \
      ts_predict_noq(e, margin, r);                                                 \
      for (int k = 0; k < TS_NOUT; ++k) out[i * TS_NOUT + k] = (double)r[k];        \
    }                                                                               \
    TS_FREE(e);                                                                     \
  }

TS_DEFINE(f64, double)
TS_DEFINE(f32, float)

int ts_nout(void) { return TS_NOUT; }
