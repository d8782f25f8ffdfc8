// Argument checks of the compiled fused FCN skip kernels (CPU and CUDA wrappers). The Python layer
// (pydense/ops/fcn_skip.py) validates user input with clear messages first; these checks keep the
// compiled ops memory-safe when called directly.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include "upsample_bilinear_checks.h"

namespace pydense {
namespace fcn_skip {

inline void check_like(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type() && t.device() == ref.device(), "_fcn_skip: ", name,
              " must have dtype ", ref.scalar_type(), " on ", ref.device());
}

// The score weight (K, CS) and bias (K,), when given; otherwise CS == K.
inline void check_score(const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                        int64_t K, int64_t CS, const at::Tensor& ref) {
  if (weight) {
    check_like(*weight, ref, "weight");
    TORCH_CHECK(CS > 0, "_fcn_skip: a score weight needs at least one skip channel, got skip with 0");
    TORCH_CHECK(weight->dim() == 2 && weight->size(0) == K && weight->size(1) == CS,
                "_fcn_skip: weight must be (", K, ", ", CS, "), got ", weight->sizes());
  } else {
    TORCH_CHECK(CS == K, "_fcn_skip: without a score weight skip must have ", K, " channels, got ", CS);
    TORCH_CHECK(!bias, "_fcn_skip: a bias needs a score weight");
  }
  if (bias) {
    check_like(*bias, ref, "bias");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == K, "_fcn_skip: bias must be (", K, ",)");
    TORCH_CHECK(bias->is_contiguous(), "_fcn_skip: bias must be contiguous (the kernels read bias[k]), got stride ",
                bias->strides());
  }
}

// The crop window [off, off + out) must lie inside the skip tensor.
inline void check_crop(at::IntArrayRef offset, int64_t OH, int64_t OW, const at::Tensor& skip) {
  TORCH_CHECK(offset.size() == 2 && offset[0] >= 0 && offset[1] >= 0 &&
                  offset[0] + OH <= skip.size(2) && offset[1] + OW <= skip.size(3),
              "_fcn_skip: offset ", offset, " + output size (", OH, ", ", OW,
              ") must lie inside skip's ", skip.sizes());
}

inline void check_forward(const at::Tensor& coarse, const at::Tensor& skip,
                          const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
                          const at::Tensor& h_idx, const at::Tensor& h_lam, const at::Tensor& w_idx,
                          const at::Tensor& w_lam, at::IntArrayRef offset, const at::Tensor& out) {
  upsample_bilinear::check_forward(coarse, c10::nullopt, h_idx, h_lam, w_idx, w_lam, out);
  TORCH_CHECK(skip.dim() == 4 && skip.size(0) == out.size(0), "_fcn_skip: skip must be 4-D with out's batch");
  check_like(skip, coarse, "skip");
  check_score(weight, bias, out.size(1), skip.size(1), coarse);
  check_crop(offset, out.size(2), out.size(3), skip);
}

inline void check_backward(const at::Tensor& grad_output, const c10::optional<at::Tensor>& weight,
                           at::IntArrayRef offset, const at::Tensor& grad_skip) {
  TORCH_CHECK(grad_output.dim() == 4 && grad_skip.dim() == 4 && grad_skip.size(0) == grad_output.size(0),
              "_fcn_skip_bwd: grad_output and grad_skip must be 4-D with one batch size");
  check_like(grad_skip, grad_output, "grad_skip");
  check_score(weight, c10::nullopt, grad_output.size(1), grad_skip.size(1), grad_output);
  check_crop(offset, grad_output.size(2), grad_output.size(3), grad_skip);
}

}  // namespace fcn_skip
}  // namespace pydense
