/* abi_bench.c: time a treeslim model library through its C ABI, as a C service calls it.
 *
 *   cc -O2 -o abi_bench abi_bench.c -ldl
 *   ./abi_bench MODEL.so ROWS.f64 N_ROWS QUERY_ROWS CALLS
 *
 * ROWS.f64 holds N_ROWS rows of float64 (row-major, the model's feature count). Prints one JSON
 * object: single-row p50/p99 in microseconds over CALLS calls on distinct rows, the p50 of a call
 * scoring QUERY_ROWS rows, and batch rows/s over all rows (best of 3). One thread.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef int32_t (*count_fn)(void);
typedef void (*predict_fn)(const double*, int64_t, int32_t, double*);

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  if (argc < 6) { fprintf(stderr, "usage: %s MODEL.so ROWS.f64 N QUERY CALLS\n", argv[0]); return 2; }
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 2; }
  count_fn nf = (count_fn)dlsym(lib, "treeslim_num_features");
  count_fn no = (count_fn)dlsym(lib, "treeslim_num_outputs");
  predict_fn predict = (predict_fn)dlsym(lib, "treeslim_predict");
  if (!nf || !no || !predict) { fprintf(stderr, "not a treeslim model\n"); return 2; }
  const int64_t d = nf(), k = no(), n = atoll(argv[3]), q = atoll(argv[4]), calls = atoll(argv[5]);
  double* X = malloc((size_t)(n * d) * sizeof *X);
  double* out = malloc((size_t)(n * k) * sizeof *out);
  double* t = malloc((size_t)calls * sizeof *t);
  FILE* fh = fopen(argv[2], "rb");
  if (!X || !out || !t || !fh || fread(X, sizeof *X, (size_t)(n * d), fh) != (size_t)(n * d)) {
    fprintf(stderr, "cannot read %lld rows of %lld features\n", (long long)n, (long long)d);
    return 2;
  }
  fclose(fh);
  double sink = 0.0;
  for (int64_t i = 0; i < 1000; ++i) predict(X + (i % n) * d, 1, 0, out); /* warm-up */
  for (int64_t i = 0; i < calls; ++i) {
    double t0 = now_us();
    predict(X + (i % n) * d, 1, 0, out);
    t[i] = now_us() - t0;
    sink += out[0];
  }
  qsort(t, (size_t)calls, sizeof *t, cmp);
  double p50 = t[calls / 2], p99 = t[(calls * 99) / 100];
  int64_t qcalls = calls / 10 > 10 ? calls / 10 : 10;
  for (int64_t i = 0; i < qcalls; ++i) {
    int64_t start = (i * q) % (n - q + 1);
    double t0 = now_us();
    predict(X + start * d, q, 0, out);
    t[i] = now_us() - t0;
    sink += out[0];
  }
  qsort(t, (size_t)qcalls, sizeof *t, cmp);
  double q50 = t[qcalls / 2];
  double best = 1e300;
  for (int r = 0; r < 3; ++r) {
    double t0 = now_us();
    predict(X, n, 0, out);
    double dt = now_us() - t0;
    best = dt < best ? dt : best;
    sink += out[0];
  }
  printf("{\"row_p50_us\": %.3f, \"row_p99_us\": %.3f, \"query_p50_us\": %.3f, "
         "\"batch_rows_per_s\": %.1f, \"sink\": %g}\n", p50, p99, q50, n / (best / 1e6), sink);
  return 0;
}
