// Launch helpers shared by the CUDA kernels (csrc/cuda/*.cu): strides in the kernel's index type,
// 32- vs 64-bit index choice, grid size, and linear-position decomposition in NCHW/NHWC order.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "strides.h"

namespace pydense {
namespace cuda {

constexpr int kThreads = 256;

using ::pydense::Strides4;
using ::pydense::strides_of;

// Whether every tensor's addressed span fits 32-bit index math. The bound is 2^30, not 2^31: a
// grid-stride loop adds up to 2^28 (blocks_for's cap x kThreads) to a position below the total,
// which must not wrap a 32-bit index.
inline bool fits_int32(std::initializer_list<const at::Tensor*> tensors) {
  for (const at::Tensor* t : tensors) {
    int64_t span = 1;
    for (int d = 0; d < t->dim(); ++d) span += (t->size(d) - 1) * t->stride(d);
    if (span >= (int64_t(1) << 30)) return false;
  }
  return true;
}

// Blocks of kThreads for a grid-stride loop over total elements.
inline unsigned blocks_for(int64_t total) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, 1 << 20)));
}

// Whether a 4-D tensor we allocated is channels_last (then loops run channels innermost).
inline bool is_channels_last(const at::Tensor& t) { return t.stride(1) == 1 && t.size(1) > 1; }

// Decompose a linear position in a tensor's memory order (NCHW or NHWC) into (n, c, h, w).
template <typename I>
__device__ __forceinline__ void decompose(I l, I C, I H, I W, bool channels_last, I& n, I& c, I& h,
                                          I& w) {
  if (channels_last) {
    c = l % C; l /= C;
    w = l % W; l /= W;
    h = l % H; n = l / H;
  } else {
    w = l % W; l /= W;
    h = l % H; l /= H;
    c = l % C; n = l / C;
  }
}

// out[b] = sum over rows r = 0..rows-1 of partials[r * cols + b], in that fixed order (one thread
// per column b): the deterministic second pass of the histogram kernels, run by each op's own
// <op>_reduce_kernel (so that a profile names the op).
template <typename T>
__device__ __forceinline__ void sum_rows(const T* __restrict__ partials, T* __restrict__ out,
                                         int64_t rows, int64_t cols) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= cols) return;
  T acc = 0;
  for (int64_t r = 0; r < rows; ++r) acc += partials[r * cols + b];  // fixed order
  out[b] = acc;
}

}  // namespace cuda
}  // namespace pydense
