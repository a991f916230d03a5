/* treeslim's row entry points around TL2cgen's generated predict(), compiled with TL2cgen's
 * sources. TS_ENTRY_T, TS_LEAF_T, TS_NFEAT and TS_INPUT_T are defined in front of this file by
 * treeslim.backends.tl2cgen._codegen. Nothing here allocates. */
#include "header.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#define TS_NOUT (N_TARGET * MAX_N_CLASS)

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
    union Entry e[TS_NFEAT];                                                        \
    TS_LEAF_T r[TS_NOUT] = {0};                                                     \
    ts_fill_##SUFFIX(e, x, TS_NFEAT);                                               \
    ts_predict_noq(e, margin, r);                                                   \
    return (double)r[0];                                                            \
  }                                                                                 \
  /* n rows, row at a time (TL2cgen's own way), outputs into out (n, TS_NOUT) */    \
  void ts_rows_##SUFFIX(const IN_T* X, int64_t n, int margin, double* out) {        \
    union Entry e[TS_NFEAT];                                                        \
    for (int64_t i = 0; i < n; ++i) {                                               \
      TS_LEAF_T r[TS_NOUT] = {0};                                                   \
      ts_fill_##SUFFIX(e, X + i * TS_NFEAT, TS_NFEAT);                              \
      ts_predict_noq(e, margin, r);                                                 \
      for (int k = 0; k < TS_NOUT; ++k) out[i * TS_NOUT + k] = (double)r[k];        \
    }                                                                               \
  }

TS_DEFINE(f64, double)
TS_DEFINE(f32, float)

int ts_nout(void) { return TS_NOUT; }
