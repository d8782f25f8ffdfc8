// Argument checks of the compiled convolution kernels (CPU and CUDA wrappers) and the geometry
// they derive from the tensors. The Python layer validates user input with clear messages first;
// these checks keep the compiled ops safe when called directly.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include "conv.h"

namespace pydense {
namespace conv {

inline void check_same(const char* op, const char* name, const at::Tensor& t, const at::Tensor& ref) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type() && t.device() == ref.device(), op, ": ", name,
              " must have dtype ", ref.scalar_type(), " on ", ref.device(), ", got ", t.scalar_type(),
              " on ", t.device());
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
// is whatever the caller allocated (padding at the bottom/right is implicit in it). For the input
// gradient, x is the gradient being written and y the output gradient.
inline Geometry<int64_t> geometry(const char* op, const at::Tensor& x, const at::Tensor& w,
                                  const at::Tensor& y, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation) {
  check_params(op, stride, padding, dilation);
  TORCH_CHECK(x.dim() == 4 && w.dim() == 4 && y.dim() == 4, op, ": tensors must be 4-D");
  const int64_t C = x.size(1), OC = w.size(0), Cg = w.size(1);
  TORCH_CHECK(Cg > 0 && C % Cg == 0, op, ": input channels ", C, " not a multiple of weight.size(1) ", Cg);
  const int64_t groups = C / Cg;
  TORCH_CHECK(OC % groups == 0, op, ": weight.size(0) ", OC, " not divisible by groups ", groups);
  TORCH_CHECK(y.size(0) == x.size(0) && y.size(1) == OC, op, ": output shape ", y.sizes(),
              " does not match input ", x.sizes(), " and weight ", w.sizes());
  const Geometry<int64_t> G{C, x.size(2), x.size(3), OC, y.size(2), y.size(3), w.size(2), w.size(3),
                            Cg, OC / groups, stride[0], stride[1], padding[0], padding[1],
                            dilation[0], dilation[1]};
  // Any output size is memory-safe: every input coordinate a kernel forms is bounds-checked.
  return G;
}

inline void check_forward(const at::Tensor& x, const at::Tensor& w,
                          const c10::optional<at::Tensor>& bias,
                          const c10::optional<at::Tensor>& residual, const at::Tensor& out) {
  const char* op = "_conv2d_fwd";
  check_same(op, "weight", w, x);
  check_same(op, "out", out, x);
  if (bias) {
    check_same(op, "bias", *bias, x);
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == w.size(0), op, ": bias must be (", w.size(0), ",)");
  }
  if (residual) {
    check_same(op, "residual", *residual, x);
    TORCH_CHECK(residual->sizes() == out.sizes(), op, ": residual must have the output's shape ",
                out.sizes(), ", got ", residual->sizes());
  }
}

}  // namespace conv
}  // namespace pydense
