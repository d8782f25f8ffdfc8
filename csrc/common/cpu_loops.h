// Loop helpers of the CPU kernels (csrc/cpu/*.cpp).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

namespace pydense {
namespace cpu {

// Calls f(n, c, h, w) for every element of the 4-D tensor t in its memory order, rows in parallel.
template <typename F>
void for_each_element(const at::Tensor& t, const F& f) {
  const int64_t N = t.size(0), C = t.size(1), H = t.size(2), W = t.size(3);
  if (t.stride(1) == 1 && C > 1) {  // channels_last
    at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row)
        for (int64_t w = 0; w < W; ++w)
          for (int64_t c = 0; c < C; ++c) f(row / H, c, row % H, w);
    });
  } else {
    at::parallel_for(0, N * C * H, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row)
        for (int64_t w = 0; w < W; ++w) f(row / (C * H), (row / H) % C, row % H, w);
    });
  }
}

}  // namespace cpu
}  // namespace pydense
