// Strides of a 4-D tensor in a kernel's index type, shared by the CPU and CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>

namespace pydense {

template <typename I>
struct Strides4 {
  I v[4];
};

template <typename I>
Strides4<I> strides_of(const at::Tensor& t) {
  return {{I(t.stride(0)), I(t.stride(1)), I(t.stride(2)), I(t.stride(3))}};
}

}  // namespace pydense
