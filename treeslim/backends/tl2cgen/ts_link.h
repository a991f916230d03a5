/* ts_link.h: the link from raw scores to predictions, shared by both engines of a compiled model
 * (the TL2cgen shim, shim.c, and the kernel library, kernel_abi.c). In double precision, as
 * Forest.predict computes it: link 0 identity, 1 sigmoid (slope alpha), 2 softmax, 3 exponential.
 * The shim passes compile-time constants, the kernel library the model's values. */
#ifndef TS_LINK_H
#define TS_LINK_H
#include <math.h>

static inline void ts_link_apply(double* r, int k, int link, double alpha) {
  if (link == 1) {
    for (int j = 0; j < k; ++j) r[j] = 1.0 / (1.0 + exp(-(alpha) * r[j]));
  } else if (link == 2) {
    double top = r[0], sum = 0.0;
    for (int j = 1; j < k; ++j) top = r[j] > top ? r[j] : top;
    for (int j = 0; j < k; ++j) { r[j] = exp(r[j] - top); sum += r[j]; }
    for (int j = 0; j < k; ++j) r[j] /= sum;
  } else if (link == 3) {
    for (int j = 0; j < k; ++j) r[j] = exp(r[j]);
  }
}

#endif /* TS_LINK_H */
