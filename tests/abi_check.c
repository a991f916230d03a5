/* abi_check.c: a C program linked against a treeslim model library through its generated header,
 * for tests/test_kernel_library.py.
 *
 *   cc -I DIR -o abi_check abi_check.c DIR/model.so -Wl,-rpath,DIR -lm
 *   ./abi_check ROWS.f64 N OUT.f64
 *
 * Reads N float64 rows, scores them every way a C caller can, and writes six blocks of
 * N * treeslim_num_outputs() doubles to OUT.f64: float64 rows with margin 1 and 0, float32 rows
 * (cast in C) with margin 1 and 0, float64 rows one call per row (margin 1), and float64 rows in
 * calls of 3 rows (margin 1). Prints "cpu D K" (treeslim_cpu_supported, features, outputs).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "model.h"

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  const int64_t n = atoll(argv[2]), d = treeslim_num_features(), k = treeslim_num_outputs();
  if (d != TREESLIM_NUM_FEATURES || k != TREESLIM_NUM_OUTPUTS) return 3;
  if (treeslim_abi_version() != TREESLIM_ABI_VERSION) return 3;
  double* X = malloc((size_t)(n * d) * sizeof *X);
  float* X32 = malloc((size_t)(n * d) * sizeof *X32);
  double* out = malloc((size_t)(6 * n * k) * sizeof *out);
  FILE* fh = fopen(argv[1], "rb");
  if (!X || !X32 || !out || !fh || fread(X, sizeof *X, (size_t)(n * d), fh) != (size_t)(n * d))
    return 4;
  fclose(fh);
  for (int64_t i = 0; i < n * d; ++i) X32[i] = (float)X[i];
  treeslim_predict(X, n, 1, out);
  treeslim_predict(X, n, 0, out + n * k);
  treeslim_predict_f32(X32, n, 1, out + 2 * n * k);
  treeslim_predict_f32(X32, n, 0, out + 3 * n * k);
  for (int64_t i = 0; i < n; ++i) treeslim_predict(X + i * d, 1, 1, out + 4 * n * k + i * k);
  for (int64_t i = 0; i < n; i += 3)
    treeslim_predict(X + i * d, n - i < 3 ? n - i : 3, 1, out + 5 * n * k + i * k);
  fh = fopen(argv[3], "wb");
  if (!fh || fwrite(out, sizeof *out, (size_t)(6 * n * k), fh) != (size_t)(6 * n * k)) return 4;
  fclose(fh);
  printf("%d %lld %lld\n", (int)treeslim_cpu_supported(), (long long)d, (long long)k);
  free(X);
  free(X32);
  free(out);
  return 0;
}
