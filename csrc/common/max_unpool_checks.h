// Argument checks of the compiled max_unpool2d kernels, shared by the CPU and CUDA wrappers.
// The Python layer validates first and with friendlier messages; these guard direct calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "max_pool_checks.h"

namespace pydense {
namespace max_unpool {

// The window and index-dtype checks are the pool's (max_pool_checks.h): the same geometry
// decodes compact indices.
using max_pool::check_geometry;
using max_pool::check_index_dtype;

inline void check_forward_args(const at::Tensor& input, const at::Tensor& indices,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation,
                               const at::Tensor& out) {
  TORCH_CHECK(input.dim() == 4, "max_unpool2d: input must be 4-D (N, C, H, W), got ", input.dim(), "-D");
  TORCH_CHECK(indices.sizes() == input.sizes(), "max_unpool2d: indices must have the input's shape ",
              input.sizes(), ", got ", indices.sizes());
  check_geometry("max_unpool2d", kernel_size, stride, padding, dilation);
  check_index_dtype("max_unpool2d", indices, kernel_size);
  TORCH_CHECK(out.dim() == 4 && out.size(0) == input.size(0) && out.size(1) == input.size(1),
              "max_unpool2d: out must be (N, C, OH, OW) with the input's N and C, got ", out.sizes());
  TORCH_CHECK(out.scalar_type() == input.scalar_type(), "max_unpool2d: out dtype ",
              out.scalar_type(), " must equal the input dtype ", input.scalar_type());
  TORCH_CHECK(input.device() == indices.device() && input.device() == out.device(),
              "max_unpool2d: input, indices and out must be on one device");
  TORCH_CHECK(out.size(2) * out.size(3) < (int64_t(1) << 31) &&
                  input.size(2) * input.size(3) < (int64_t(1) << 31),
              "max_unpool2d: planes of 2^31 elements or more are not supported");
}

inline void check_backward_args(const at::Tensor& grad_output, const at::Tensor& indices,
                                at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation,
                                const at::Tensor& grad_input) {
  check_geometry("max_unpool2d_backward", kernel_size, stride, padding, dilation);
  TORCH_CHECK(grad_output.dim() == 4, "max_unpool2d_backward: grad_output must be 4-D, got ",
              grad_output.dim(), "-D");
  TORCH_CHECK(indices.dim() == 4 && indices.size(0) == grad_output.size(0) &&
                  indices.size(1) == grad_output.size(1),
              "max_unpool2d_backward: indices must be (N, C, H, W) with grad_output's N and C, got ",
              indices.sizes());
  check_index_dtype("max_unpool2d_backward", indices, kernel_size);
  TORCH_CHECK(grad_input.sizes() == indices.sizes() &&
                  grad_input.scalar_type() == grad_output.scalar_type(),
              "max_unpool2d_backward: grad_input must have the indices' shape and grad_output's dtype");
  TORCH_CHECK(grad_output.device() == indices.device() && grad_output.device() == grad_input.device(),
              "max_unpool2d_backward: grad_output, indices and grad_input must be on one device");
}

}  // namespace max_unpool
}  // namespace pydense
