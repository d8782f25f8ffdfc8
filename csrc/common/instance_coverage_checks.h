// Argument checks of the compiled instance-coverage kernels, shared by the CPU and CUDA wrappers.
// The Python layer validates first (including the range of order) and with friendlier messages;
// these guard direct calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "instance_coverage.h"

namespace pydense {
namespace instance_coverage {

inline void check_args(const at::Tensor& masks, const at::Tensor& order, const at::Tensor& out) {
  TORCH_CHECK(masks.dim() == 3, "instance_coverage: masks must be 3-D (M, H, W), got ",
              masks.sizes());
  TORCH_CHECK(masks.scalar_type() == at::kBool || masks.scalar_type() == at::kByte,
              "instance_coverage: masks must be bool or uint8, got ", masks.scalar_type());
  TORCH_CHECK(order.dim() == 1 && order.scalar_type() == at::kLong,
              "instance_coverage: order must be a 1-D int64 tensor, got ", order.scalar_type(), " ",
              order.sizes());
  TORCH_CHECK(order.numel() == 0 || masks.size(0) > 0,
              "instance_coverage: order is not empty but masks has M=0 instances");
  const int64_t K = order.numel();
  const int64_t NW = num_words(K);
  TORCH_CHECK(out.dim() == 3 && out.size(0) == masks.size(1) && out.size(1) == masks.size(2) &&
                  out.size(2) == NW && out.is_contiguous() && out.scalar_type() == at::kLong,
              "instance_coverage: out must be a contiguous (H, W, NW=", NW,
              ") int64 tensor, got ", out.sizes());
  TORCH_CHECK(masks.device() == order.device() && masks.device() == out.device(),
              "instance_coverage: masks, order and out must be on one device");
}

}  // namespace instance_coverage
}  // namespace pydense
