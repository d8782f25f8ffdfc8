// Argument checks of the compiled bilinear upsampling kernels (CPU and CUDA wrappers).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

namespace pydense {
namespace upsample_bilinear {

// The weight tables' dtype: the data's accumulation type (fp64 for fp64 data, else fp32).
inline at::ScalarType lam_type(const at::Tensor& data) {
  return data.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_table(const at::Tensor& t, at::ScalarType dtype, int64_t len, const char* name,
                        const at::Tensor& like) {
  TORCH_CHECK(t.scalar_type() == dtype && t.dim() == 2 && t.size(0) == 2 && t.size(1) == len &&
                  t.is_contiguous() && t.device() == like.device(),
              "upsample_bilinear2d: ", name, " must be a contiguous (2, ", len, ") ", dtype,
              " table on ", like.device(), ", got ", t.sizes(), " ", t.scalar_type());
}

inline void check_pair(const at::Tensor& small, const at::Tensor& big, const char* what) {
  TORCH_CHECK(small.dim() == 4 && big.dim() == 4 && small.size(0) == big.size(0) &&
                  small.size(1) == big.size(1) && small.scalar_type() == big.scalar_type() &&
                  small.device() == big.device(),
              "upsample_bilinear2d: ", what, " must be 4-D with the same N, C, dtype and device");
}

// All checks of the forward op: out is (N, C, OH, OW) (C + C_skip channels with a skip tensor
// of size (N, C_skip, OH, OW)), tables sized by OH and OW.
inline void check_forward(const at::Tensor& input, const c10::optional<at::Tensor>& skip,
                          const at::Tensor& h_idx, const at::Tensor& h_lam, const at::Tensor& w_idx,
                          const at::Tensor& w_lam, const at::Tensor& out) {
  const int64_t OH = out.size(2), OW = out.size(3);
  if (skip) {
    TORCH_CHECK(input.dim() == 4 && skip->dim() == 4 && out.dim() == 4 &&
                    skip->size(0) == out.size(0) && input.size(0) == out.size(0) &&
                    out.size(1) == input.size(1) + skip->size(1) && skip->size(2) == OH &&
                    skip->size(3) == OW && skip->scalar_type() == input.scalar_type() &&
                    out.scalar_type() == input.scalar_type() && skip->device() == input.device() &&
                    out.device() == input.device(),
                "upsample_bilinear2d: out must be (N, C + C_skip, OH, OW) for input (N, C, H, W) "
                "and skip (N, C_skip, OH, OW), all of one dtype and device");
  } else {
    check_pair(input, out, "input and out");
  }
  check_table(h_idx, at::kInt, OH, "h_idx", input);
  check_table(h_lam, lam_type(input), OH, "h_lam", input);
  check_table(w_idx, at::kInt, OW, "w_idx", input);
  check_table(w_lam, lam_type(input), OW, "w_lam", input);
}

// All checks of the backward op: ranges sized by the input's H and W.
inline void check_backward(const at::Tensor& grad_output, const at::Tensor& h_idx,
                           const at::Tensor& h_lam, const at::Tensor& h_rng, const at::Tensor& w_idx,
                           const at::Tensor& w_lam, const at::Tensor& w_rng,
                           const at::Tensor& grad_input) {
  check_pair(grad_input, grad_output, "grad_input and grad_output");
  const int64_t H = grad_input.size(2), W = grad_input.size(3);
  const int64_t OH = grad_output.size(2), OW = grad_output.size(3);
  check_table(h_idx, at::kInt, OH, "h_idx", grad_output);
  check_table(h_lam, lam_type(grad_output), OH, "h_lam", grad_output);
  check_table(h_rng, at::kInt, H, "h_rng", grad_output);
  check_table(w_idx, at::kInt, OW, "w_idx", grad_output);
  check_table(w_lam, lam_type(grad_output), OW, "w_lam", grad_output);
  check_table(w_rng, at::kInt, W, "w_rng", grad_output);
}

}  // namespace upsample_bilinear
}  // namespace pydense
