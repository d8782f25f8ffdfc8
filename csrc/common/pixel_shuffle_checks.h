// Argument checks of the compiled pixel_shuffle kernels (CPU and CUDA wrappers).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace pydense {
namespace pixel_shuffle {

inline void check_args(const at::Tensor& input, int64_t r, bool upscale, const at::Tensor& out) {
  const char* op = upscale ? "pixel_shuffle" : "pixel_unshuffle";
  TORCH_CHECK(input.dim() == 4 && out.dim() == 4, op, ": input and out must be 4-D");
  TORCH_CHECK(r > 0, op, ": factor must be positive, got ", r);
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const bool ok = upscale
      ? C % (r * r) == 0 && out.sizes() == at::IntArrayRef({N, C / (r * r), H * r, W * r})
      : H % r == 0 && W % r == 0 && out.sizes() == at::IntArrayRef({N, C * r * r, H / r, W / r});
  TORCH_CHECK(ok, op, ": out shape ", out.sizes(), " does not match input ", input.sizes(),
              " and factor ", r);
  TORCH_CHECK(out.scalar_type() == input.scalar_type() && out.device() == input.device(), op,
              ": out must have the input's dtype and device");
}

}  // namespace pixel_shuffle
}  // namespace pydense
