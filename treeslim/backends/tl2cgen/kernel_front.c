/* kernel_front.c: the exported C ABI of a kernel model library (treeslim.h.in documents it),
 * included at the end of the model's generated file, which defines in front of it:
 *   ts_model_data   the model (static const ts_abi_model, kernel_abi.h) over its static arrays
 *   TS_ABI_VERSION  the C ABI version
 *   TS_MODEL_INFO   the JSON of treeslim_model_info()
 *   TS_TARGET       what the engine was compiled for ("default" or "-march=...")
 *   TS_CPU_OK       an expression: whether this CPU runs the engine (1 for the default target)
 * This file is compiled for the compiler's default target, so a library whose engine was built
 * for a newer CPU (treeslim.compile(..., march=...)) says so on an older one instead of dying of
 * an illegal instruction: treeslim_cpu_supported() returns 0 there, and the scoring functions
 * print the reason and abort. */
#include <stdio.h>
#include <stdlib.h>

#include "kernel_abi.h"

TS_EXPORT int32_t treeslim_cpu_supported(void) { return (TS_CPU_OK) ? 1 : 0; }

static void ts_require_cpu(void) {
  if (!(TS_CPU_OK)) {
    fprintf(stderr,
            "treeslim model library: built for %s, which this CPU does not support;"
            " recompile the model for the default target (treeslim.compile(model))\n",
            TS_TARGET);
    abort();
  }
}

TS_EXPORT void treeslim_predict(const double* X, int64_t n_rows, int32_t margin, double* out) {
  ts_require_cpu();
  ts_abi_predict(&ts_model_data, X, 0, n_rows, margin, out);
}

TS_EXPORT void treeslim_predict_f32(const float* X, int64_t n_rows, int32_t margin,
                                    double* out) {
  ts_require_cpu();
  ts_abi_predict(&ts_model_data, X, 1, n_rows, margin, out);
}

/* one row of a single-output model, the value returned (treeslim's Python one-row path) */
TS_EXPORT double ts_row1_f64(const double* x, int margin) {
  ts_require_cpu();
  return ts_abi_row1(&ts_model_data, x, 0, margin);
}

TS_EXPORT double ts_row1_f32(const float* x, int margin) {
  ts_require_cpu();
  return ts_abi_row1(&ts_model_data, x, 1, margin);
}

TS_EXPORT int32_t treeslim_abi_version(void) { return TS_ABI_VERSION; }
TS_EXPORT int32_t treeslim_num_features(void) { return ts_model_data.n_features; }
TS_EXPORT int32_t treeslim_num_outputs(void) { return ts_model_data.n_out; }
TS_EXPORT const char* treeslim_model_info(void) { return TS_MODEL_INFO; }
