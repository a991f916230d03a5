/* serve.c: score one query's candidate rows with a model compiled by treeslim, print the ranking.
 *
 * The model library is loaded at run time with dlopen and called through its C ABI, documented in
 * the header treeslim writes next to it (`treeslim compile MODEL -o DIR/`, or
 * `treeslim.compile(model).save(DIR)` in Python): DIR/model.so and DIR/model.h.
 *
 *   cc -O2 -I DIR -o serve serve.c -ldl
 *   ./serve DIR/model.so candidates.csv [output]
 *
 * candidates.csv holds one candidate per line, its features as decimal numbers separated by
 * commas; an empty field, "nan" or "NA" is a missing value. A first line that does not start with
 * a number is taken as a header and skipped. Prints "rank,row,score" lines, best score first (row
 * is the 0-based line of the candidate; score is the model's prediction, output `output`, default
 * 0). Nothing here is specific to one model: the row width and the outputs come from the library.
 */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h" /* the generated header: the ABI's declarations and TREESLIM_ABI_VERSION */

typedef int32_t (*count_fn)(void);
typedef void (*predict_fn)(const double*, int64_t, int32_t, double*);

static const double* g_scores; /* for the comparison function of qsort */
static int64_t g_width;

static int by_score(const void* a, const void* b) {
  double x = g_scores[*(const int64_t*)a * g_width], y = g_scores[*(const int64_t*)b * g_width];
  if (x != y) return x < y ? 1 : -1; /* descending */
  return *(const int64_t*)a < *(const int64_t*)b ? -1 : 1; /* ties: earlier row first */
}

static double parse_field(const char* s, const char* end, int* ok) {
  while (s < end && (*s == ' ' || *s == '\t')) ++s;
  while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) --end;
  if (s == end || (end - s == 2 && strncmp(s, "NA", 2) == 0)) return NAN;
  char buf[128];
  size_t n = (size_t)(end - s);
  if (n >= sizeof buf) { *ok = 0; return 0.0; }
  memcpy(buf, s, n);
  buf[n] = '\0';
  char* stop;
  errno = 0;
  double v = strtod(buf, &stop); /* also reads nan, inf, -inf */
  if (*stop != '\0') *ok = 0;
  return v;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL.so CANDIDATES.csv [output]\n", argv[0]);
    return 2;
  }
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) { fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror()); return 2; }
  count_fn abi = (count_fn)dlsym(lib, "treeslim_abi_version");
  count_fn n_features = (count_fn)dlsym(lib, "treeslim_num_features");
  count_fn n_outputs = (count_fn)dlsym(lib, "treeslim_num_outputs");
  predict_fn predict = (predict_fn)dlsym(lib, "treeslim_predict");
  if (!abi || !n_features || !n_outputs || !predict || abi() != TREESLIM_ABI_VERSION) {
    fprintf(stderr, "%s is not a treeslim model of C ABI version %d\n", argv[1],
            TREESLIM_ABI_VERSION);
    return 2;
  }
  count_fn cpu_ok = (count_fn)dlsym(lib, "treeslim_cpu_supported");
  if (!cpu_ok || !cpu_ok()) { /* compiled with march=... for a newer CPU than this one */
    fprintf(stderr, "%s was compiled for CPU extensions this machine lacks\n", argv[1]);
    return 2;
  }
  const int64_t d = n_features(), k = n_outputs();
  const int64_t column = argc > 3 ? atoll(argv[3]) : 0;
  if (column < 0 || column >= k) { fprintf(stderr, "output must be in [0, %lld)\n", (long long)k); return 2; }

  FILE* fh = fopen(argv[2], "r");
  if (!fh) { fprintf(stderr, "cannot open %s\n", argv[2]); return 2; }
  int64_t n = 0, cap = 256;
  double* X = malloc((size_t)(cap * d) * sizeof *X);
  char line[1 << 16];
  int first = 1;
  while (X && fgets(line, sizeof line, fh)) {
    size_t len = strcspn(line, "\r\n");
    line[len] = '\0';
    if (len == 0) continue;
    if (first) {
      first = 0;
      char* stop;
      strtod(line, &stop);
      if (stop == line && line[0] != ',' && strncmp(line, "NA", 2) != 0) continue; /* header */
    }
    if (n == cap) {
      cap *= 2;
      double* grown = realloc(X, (size_t)(cap * d) * sizeof *X);
      if (!grown) { free(X); X = NULL; break; }
      X = grown;
    }
    int64_t j = 0;
    int ok = 1;
    const char* s = line;
    for (;;) {
      const char* comma = strchr(s, ',');
      const char* end = comma ? comma : line + len;
      if (j < d) X[n * d + j] = parse_field(s, end, &ok);
      ++j;
      if (!comma) break;
      s = comma + 1;
    }
    if (!ok || j != d) {
      fprintf(stderr, "%s: line %lld has %lld fields or an unreadable one; the model takes %lld\n",
              argv[2], (long long)(n + 1), (long long)j, (long long)d);
      return 2;
    }
    ++n;
  }
  fclose(fh);
  if (!X) { fprintf(stderr, "out of memory\n"); return 2; }

  double* out = malloc((size_t)((n ? n : 1) * k) * sizeof *out);
  int64_t* order = malloc((size_t)(n ? n : 1) * sizeof *order);
  if (!out || !order) { fprintf(stderr, "out of memory\n"); return 2; }
  predict(X, n, 0, out); /* one call scores every candidate of the query */
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  g_scores = out + column;
  g_width = k;
  qsort(order, (size_t)n, sizeof *order, by_score);
  printf("rank,row,score\n");
  for (int64_t r = 0; r < n; ++r)
    printf("%lld,%lld,%.17g\n", (long long)(r + 1), (long long)order[r], out[order[r] * k + column]);
  free(order);
  free(out);
  free(X);
  dlclose(lib);
  return 0;
}
