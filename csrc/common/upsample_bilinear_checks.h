// Argument checks of the compiled bilinear upsampling kernels (CPU and CUDA wrappers).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

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

}  // namespace upsample_bilinear
}  // namespace pydense
