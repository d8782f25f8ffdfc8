// Argument checks of the compiled max_pool2d_with_indices kernels, shared by the CPU and CUDA
// wrappers. The Python layer validates first and with friendlier messages; these guard direct calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace pydense {
namespace max_pool {

inline void check_geometry(const char* op, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation) {
  TORCH_CHECK(kernel_size.size() == 2 && stride.size() == 2 && padding.size() == 2 &&
                  dilation.size() == 2,
              op, ": kernel_size, stride, padding and dilation must have 2 elements each");
  for (int d = 0; d < 2; ++d) {
    TORCH_CHECK(kernel_size[d] > 0, op, ": kernel_size must be positive, got ", kernel_size);
    TORCH_CHECK(stride[d] > 0, op, ": stride must be positive, got ", stride);
    TORCH_CHECK(padding[d] >= 0, op, ": padding must be non-negative, got ", padding);
    TORCH_CHECK(dilation[d] > 0, op, ": dilation must be positive, got ", dilation);
  }
}

inline void check_index_dtype(const char* op, const at::Tensor& indices, at::IntArrayRef kernel_size) {
  TORCH_CHECK(indices.scalar_type() == at::kLong || indices.scalar_type() == at::kByte, op,
              ": indices must be int64 (flat) or uint8 (compact window offsets), got ",
              indices.scalar_type());
  TORCH_CHECK(indices.scalar_type() != at::kByte || kernel_size[0] * kernel_size[1] <= 256, op,
              ": uint8 (compact) indices need kernel_size[0] * kernel_size[1] <= 256, got ",
              kernel_size);
}

inline void check_forward_args(const at::Tensor& input, at::IntArrayRef kernel_size,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, const at::Tensor& out,
                               const at::Tensor& indices) {
  const char* op = "max_pool2d_with_indices";
  TORCH_CHECK(input.dim() == 4, op, ": input must be 4-D (N, C, H, W), got ", input.dim(), "-D");
  check_geometry(op, kernel_size, stride, padding, dilation);
  TORCH_CHECK(out.dim() == 4 && out.size(0) == input.size(0) && out.size(1) == input.size(1), op,
              ": out must be (N, C, OH, OW) with the input's N and C, got ", out.sizes());
  TORCH_CHECK(out.scalar_type() == input.scalar_type(), op, ": out dtype ", out.scalar_type(),
              " must equal the input dtype ", input.scalar_type());
  TORCH_CHECK(indices.sizes() == out.sizes(), op, ": indices must have out's shape ", out.sizes(),
              ", got ", indices.sizes());
  check_index_dtype(op, indices, kernel_size);
  TORCH_CHECK(input.device() == out.device() && input.device() == indices.device(), op,
              ": input, out and indices must be on one device");
  TORCH_CHECK(input.size(2) * input.size(3) < (int64_t(1) << 31), op,
              ": planes of 2^31 elements or more are not supported");
}

inline void check_backward_args(const at::Tensor& grad_output, const at::Tensor& indices,
                                at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation,
                                const at::Tensor& grad_input) {
  const char* op = "max_pool2d_backward";
  TORCH_CHECK(grad_output.dim() == 4, op, ": grad_output must be 4-D, got ", grad_output.dim(), "-D");
  check_geometry(op, kernel_size, stride, padding, dilation);
  TORCH_CHECK(indices.sizes() == grad_output.sizes(), op, ": indices must have grad_output's shape ",
              grad_output.sizes(), ", got ", indices.sizes());
  check_index_dtype(op, indices, kernel_size);
  TORCH_CHECK(grad_input.dim() == 4 && grad_input.size(0) == grad_output.size(0) &&
                  grad_input.size(1) == grad_output.size(1) &&
                  grad_input.scalar_type() == grad_output.scalar_type(),
              op, ": grad_input must be (N, C, H, W) with grad_output's N, C and dtype, got ",
              grad_input.sizes());
  TORCH_CHECK(grad_output.device() == indices.device() && grad_output.device() == grad_input.device(),
              op, ": grad_output, indices and grad_input must be on one device");
}

}  // namespace max_pool
}  // namespace pydense
