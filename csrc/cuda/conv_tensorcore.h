// The tensor-core convolution forward (conv_tensorcore.cu), called by the CUDA backend's
// _conv2d_fwd (conv.cu) for dense and grouped fp16/bf16 convolutions.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include "../common/conv.h"

namespace pydense {
namespace conv {

// fp16/bf16 with at least 16 input and 16 output channels per group.
bool tensorcore_eligible(const at::Tensor& x, const at::Tensor& w);

void forward_tensorcore(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                        const c10::optional<at::Tensor>& residual, const Geometry<int64_t>& G,
                        bool relu, double scale, int64_t shuffle, const at::Tensor& out);

}  // namespace conv
}  // namespace pydense
