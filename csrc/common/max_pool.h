// Index math of max_pool2d_with_indices, shared by csrc/cpu/max_pool.cpp and csrc/cuda/max_pool.cu,
// and the decoding of compact (window-local) indices that the max_unpool2d kernels share.
// The Triton kernels (kernels/max_pool.py, kernels/max_unpool.py) mirror these functions.
//
// Forward (ATen's rule, aten/src/ATen/native/cpu/MaxPoolKernel.cpp and cuda/DilatedMaxPool2d.cu):
// the window of output (oh, ow) has taps (ih, iw) = (oh*sh - ph + kh*dh, ow*sw - pw + kw*dw) for
// kh < KH, kw < KW; out-of-bounds taps are skipped. Scanning the taps in row-major order from
// max = -inf, a tap replaces the running max iff (v > max || isnan(v)): the first of equal maxima
// wins, the last NaN wins. The running index starts at the first in-bounds tap (what an all -inf
// window returns). Index: flat ih * W + iw (int64, ATen's), or compact kh * KW + kw (uint8).
//
// Backward: a gather over the input (deterministic, no atomics): grad_input(ih, iw) sums, in
// tap order, grad_output over the windows (oh, ow) that hold (ih, iw) as tap (kh, kw) and whose
// index names that tap. Overlapping windows (stride < kernel) are handled by the same sum.
#pragma once

#include <c10/util/ArrayRef.h>

#include <cstdint>

#include "macros.h"

namespace pydense {
namespace max_pool {

// First in-bounds tap coordinate of a window starting at h0 (ATen: while (h0 < 0) h0 += d).
template <typename I>
PYDENSE_HD I first_tap(I h0, I d) {
  return h0 < 0 ? h0 + ((-h0 + d - 1) / d) * d : h0;
}

// Output window coordinate o (along one axis) that holds input coordinate i as tap k, or -1.
template <typename I>
PYDENSE_HD I window_of_tap(I i, I k, I stride, I pad, I dil, I out_size) {
  const I num = i + pad - k * dil;
  if (num < 0) return I(-1);
  const I o = num / stride;
  return (o * stride == num && o < out_size) ? o : I(-1);
}

template <typename T>
PYDENSE_HD bool is_nan(T v) { return v != v; }

}  // namespace max_pool

// Window geometry of compact indices: a compact index k = kh * KW + kw of pooled element (ih, iw)
// names the tap (ih * sh - ph + kh * dh, iw * sw - pw + kw * dw) of the unpooled plane. The pool
// kernels use the same struct for their window (out_h, out_w: the pooled input plane).
template <typename I>
struct CompactGeometry {
  I kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w;
};

// The geometry from an op's (kernel_size, stride, padding, dilation) and the size of the plane the
// taps index (the unpooled output, or the pooled input). Host code (CPU and CUDA wrappers).
template <typename I>
inline CompactGeometry<I> compact_geometry(c10::IntArrayRef k, c10::IntArrayRef s,
                                           c10::IntArrayRef p, c10::IntArrayRef d, int64_t out_h,
                                           int64_t out_w) {
  return {I(k[0]), I(k[1]), I(s[0]), I(s[1]), I(p[0]), I(p[1]), I(d[0]), I(d[1]), I(out_h), I(out_w)};
}

// Flat plane target of an index of pooled element (ih, iw): int64 indices are flat already;
// a compact index is decoded, and is -1 when k >= KH * KW or its tap lies outside the plane.
template <typename I>
PYDENSE_HD int64_t target_of(int64_t v, I, I, const CompactGeometry<I>&) { return v; }

template <typename I>
PYDENSE_HD int64_t target_of(uint8_t v, I ih, I iw, const CompactGeometry<I>& g) {
  const I k = I(v);
  const I q = k / g.kw;
  const I th = ih * g.sh - g.ph + q * g.dh;
  const I tw = iw * g.sw - g.pw + (k - q * g.kw) * g.dw;
  const bool ok = k < g.kh * g.kw && th >= 0 && th < g.out_h && tw >= 0 && tw < g.out_w;
  return ok ? int64_t(th) * g.out_w + tw : int64_t(-1);
}

}  // namespace pydense
