"""A compiled model library's C ABI called through ctypes, the way a C program calls it (shared by
the serving and kernel-library tests)."""

from __future__ import annotations

import ctypes

import numpy as np


class CABI:
    """The library's public functions, called the way a C program calls them."""

    def __init__(self, path):
        self.lib = ctypes.CDLL(str(path))
        ptr, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
        for name in ("treeslim_predict", "treeslim_predict_f32"):
            getattr(self.lib, name).argtypes = [ptr, i64, i32, ptr]
            getattr(self.lib, name).restype = None
        self.lib.treeslim_model_info.restype = ctypes.c_char_p
        self.d = self.lib.treeslim_num_features()
        self.k = self.lib.treeslim_num_outputs()

    def predict(self, X, margin=0, f32=False):
        X = np.ascontiguousarray(X, dtype=np.float32 if f32 else np.float64)
        assert X.shape[1] == self.d
        out = np.full((len(X), self.k), np.nan)
        fn = self.lib.treeslim_predict_f32 if f32 else self.lib.treeslim_predict
        fn(X.ctypes.data, len(X), margin, out.ctypes.data)
        return out[:, 0] if self.k == 1 else out
