// Index math of max_unpool2d, shared by csrc/cpu/max_unpool.cpp and csrc/cuda/max_unpool.cu.
// The Triton kernels (kernels/max_unpool.py) mirror these functions line by line.
//
// Semantics (torch.nn.functional.max_unpool2d): output plane of size OH x OW, zero everywhere
// except out[n, c, t] = input[n, c, i] where t = indices[n, c, i] is a flat index into the plane.
// Duplicate targets: the later input element (row-major order of the input plane) wins.
//
// Gather path: when kernel == stride, the pooling windows of the input tile the output plane and
// every output position (oh, ow) has at most one owner (ih, iw) = ((oh + ph) / sh, (ow + pw) / sw).
// The output is then written once: out = (indices[owner] == own flat index) ? input[owner] : 0.
// An index that points outside its own window is legal but cannot be found this way; the gather
// flags the plane and the plane is redone with the deterministic scatter. Two equivalent tests
// find such planes: in_window() per element (CUDA), or counting hits (CPU): when every window
// meets the output (gather_ok), each input element scores exactly one hit iff its index lies in
// its own window, so a plane is clean iff it has H * W hits.
#pragma once

#include <cstdint>

#include "macros.h"

namespace pydense {
namespace max_unpool {

// The index type I is int64_t, or int32_t where every tensor spans fewer than 2^30 elements
// (GPU integer division is much cheaper in 32 bits).

// Input row (or column) whose kernel==stride window holds output coordinate o, or -1 if none.
template <typename I>
PYDENSE_HD I window_owner(I o, I stride, I pad, I in_size) {
  const I i = (o + pad) / stride;  // o >= 0 and pad >= 0, so this is floor division
  return i < in_size ? i : I(-1);
}

// Whether flat plane index t is a legal target: inside [0, plane). Always compared in 64 bits.
PYDENSE_HD bool valid_target(int64_t t, int64_t plane) { return t >= 0 && t < plane; }

// Whether flat plane index t (a valid target) lies in the pooling window of input (ih, iw).
template <typename I>
PYDENSE_HD bool in_window(I t, I out_w, I ih, I iw, I kh, I kw, I sh, I sw, I ph, I pw) {
  const I th = t / out_w;
  const I tw = t - th * out_w;
  const I h0 = ih * sh - ph;
  const I w0 = iw * sw - pw;
  return th >= h0 && th < h0 + kh && tw >= w0 && tw < w0 + kw;
}

// Whether one axis allows the gather path: kernel == stride, and every input window along the
// axis intersects [0, out_size) (so every input element is visited by some output position).
PYDENSE_HD bool gather_axis_ok(int64_t in_size, int64_t out_size, int64_t k, int64_t s, int64_t p) {
  return k == s && p >= 0 && p < k && (in_size - 1) * s - p < out_size;
}

PYDENSE_HD bool gather_ok(int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w, int64_t kh,
                          int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  return gather_axis_ok(in_h, out_h, kh, sh, ph) && gather_axis_ok(in_w, out_w, kw, sw, pw);
}

// Offset of flat plane index t (= th * out_w + tw) for plane strides (s2, s3): no division when the
// plane is dense in memory order (NCHW or NHWC), the common case.
template <typename I>
PYDENSE_HD I plane_offset(I t, I out_w, I s2, I s3) {
  if (s2 == out_w * s3) return t * s3;
  const I th = t / out_w;
  return th * s2 + (t - th * out_w) * s3;
}

// Element offset of (n, c, h, w) for a 4-D tensor with the given strides.
template <typename I>
PYDENSE_HD I offset4(I n, I c, I h, I w, const I* st) {
  return n * st[0] + c * st[1] + h * st[2] + w * st[3];
}

}  // namespace max_unpool
}  // namespace pydense
