// Argument checks of the compiled convolution kernels (CPU and CUDA wrappers) and the geometry
// they derive from the tensors. The Python layer validates user input with clear messages first;
// these checks keep the compiled ops safe when called directly.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <array>

#include "conv.h"

namespace pydense {
namespace conv {

inline void check_same(const char* op, const char* name, const at::Tensor& t, const at::Tensor& ref) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type() && t.device() == ref.device(), op, ": ", name,
              " must have dtype ", ref.scalar_type(), " on ", ref.device(), ", got ", t.scalar_type(),
              " on ", t.device());
}

// An optional bias: ref's dtype and device, shape (channels,).
inline void check_bias(const char* op, const c10::optional<at::Tensor>& bias, const at::Tensor& ref,
                       int64_t channels) {
  if (!bias) return;
  check_same(op, "bias", *bias, ref);
  TORCH_CHECK(bias->dim() == 1 && bias->size(0) == channels, op, ": bias must be (", channels, ",)");
  TORCH_CHECK(bias->is_contiguous(), op, ": bias must be contiguous (the kernels read bias[c]), got stride ",
              bias->strides());
}

inline void check_params(const char* op, at::IntArrayRef stride, at::IntArrayRef padding,
                         at::IntArrayRef dilation) {
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, op,
              ": stride, padding and dilation must have 2 elements");
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0, op, ": stride must be positive, got ", stride);
  TORCH_CHECK(dilation[0] > 0 && dilation[1] > 0, op, ": dilation must be positive, got ", dilation);
  TORCH_CHECK(padding[0] >= 0 && padding[1] >= 0, op, ": padding must be non-negative, got ", padding);
}

// Geometry of x (N, C, H, W) -> y (N, OC, OH, OW) with weight (OC, Cg, KH, KW); y's spatial size
// (ysize, y's sizes) is whatever the caller allocated (padding at the bottom/right is implicit in
// it). For the input gradient, x is the gradient being written and y the output gradient.
inline Geometry<int64_t> geometry(const char* op, const at::Tensor& x, const at::Tensor& w,
                                  at::IntArrayRef ysize, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation) {
  check_params(op, stride, padding, dilation);
  TORCH_CHECK(x.dim() == 4 && w.dim() == 4 && ysize.size() == 4, op, ": tensors must be 4-D");
  const int64_t C = x.size(1), OC = w.size(0), Cg = w.size(1);
  TORCH_CHECK(Cg > 0 && C % Cg == 0, op, ": input channels ", C, " not a multiple of weight.size(1) ", Cg);
  const int64_t groups = C / Cg;
  TORCH_CHECK(OC % groups == 0, op, ": weight.size(0) ", OC, " not divisible by groups ", groups);
  TORCH_CHECK(ysize[0] == x.size(0) && ysize[1] == OC, op, ": output shape ", ysize,
              " does not match input ", x.sizes(), " and weight ", w.sizes());
  const Geometry<int64_t> G{C, x.size(2), x.size(3), OC, ysize[2], ysize[3], w.size(2), w.size(3),
                            Cg, OC / groups, stride[0], stride[1], padding[0], padding[1],
                            dilation[0], dilation[1]};
  // Any output size is memory-safe: every input coordinate a kernel forms is bounds-checked.
  return G;
}

// Checks of _conv2d_fwd; returns the convolution's geometry. With shuffle = r > 1, out is the
// pixel shuffle of the convolution's output: (N, OC / r^2, OH*r, OW*r), OC divisible by r^2.
inline Geometry<int64_t> check_forward(const at::Tensor& x, const at::Tensor& w,
                                       const c10::optional<at::Tensor>& bias,
                                       const c10::optional<at::Tensor>& residual,
                                       at::IntArrayRef stride, at::IntArrayRef padding,
                                       at::IntArrayRef dilation, int64_t shuffle,
                                       const at::Tensor& out) {
  const char* op = "_conv2d_fwd";
  TORCH_CHECK(w.dim() == 4 && out.dim() == 4, op, ": tensors must be 4-D");
  TORCH_CHECK(shuffle >= 1, op, ": shuffle must be positive, got ", shuffle);
  const int64_t r = shuffle;
  TORCH_CHECK(w.size(0) % (r * r) == 0, op, ": weight.size(0) ", w.size(0),
              " not divisible by shuffle^2 = ", r * r);
  TORCH_CHECK(r == 1 || (out.size(1) * r * r == w.size(0) && out.size(2) % r == 0 && out.size(3) % r == 0),
              op, ": output shape ", out.sizes(), " is not a pixel shuffle by ", r,
              " of a convolution with weight ", w.sizes());
  const std::array<int64_t, 4> conv_size{out.size(0), out.size(1) * r * r, out.size(2) / r, out.size(3) / r};
  const Geometry<int64_t> G = geometry(op, x, w, conv_size, stride, padding, dilation);
  check_same(op, "weight", w, x);
  check_same(op, "out", out, x);
  check_bias(op, bias, x, w.size(0));
  if (residual) {
    check_same(op, "residual", *residual, x);
    TORCH_CHECK(residual->sizes() == out.sizes(), op, ": residual must have the output's shape ",
                out.sizes(), ", got ", residual->sizes());
  }
  return G;
}

// Checks of _conv2d_dgrad (gx written from gy and w); returns the geometry (x = gx, y = gy).
inline Geometry<int64_t> check_dgrad(const at::Tensor& gy, const at::Tensor& w,
                                     const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                     at::IntArrayRef padding, at::IntArrayRef dilation,
                                     const at::Tensor& gx) {
  const char* op = "_conv2d_dgrad";
  const Geometry<int64_t> G = geometry(op, gx, w, gy.sizes(), stride, padding, dilation);
  check_same(op, "weight", w, gy);
  check_same(op, "grad_input", gx, gy);
  check_bias(op, bias, gy, G.C);
  return G;
}

// Checks of _conv2d_wgrad (gw written from gy and x); returns the geometry.
inline Geometry<int64_t> check_wgrad(const at::Tensor& gy, const at::Tensor& x, at::IntArrayRef stride,
                                     at::IntArrayRef padding, at::IntArrayRef dilation,
                                     const at::Tensor& gw) {
  const char* op = "_conv2d_wgrad";
  const Geometry<int64_t> G = geometry(op, x, gw, gy.sizes(), stride, padding, dilation);
  check_same(op, "input", x, gy);
  check_same(op, "grad_weight", gw, gy);
  return G;
}

}  // namespace conv
}  // namespace pydense
