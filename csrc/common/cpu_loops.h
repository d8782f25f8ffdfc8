// Loop helpers of the CPU kernels (csrc/cpu/*.cpp).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <vector>

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

// Deterministic histogram of `rows` rows of W pixels into out[0..bins) (int64): the rows are cut
// into a fixed number of chunks of contiguous rows (independent of the thread count), each chunk
// counts its rows with count(lo, hi, hist) into its own zeroed histogram hist[0..bins), chunks run
// in parallel, and the histograms are summed into out in chunk order.
template <typename F>
void chunked_histogram(int64_t rows, int64_t W, int64_t bins, int64_t* out, const F& count) {
  constexpr int64_t kChunkPixels = 1 << 16;
  constexpr int64_t kMaxChunks = 64;
  constexpr int64_t kMaxPartialBins = int64_t(1) << 24;  // chunks * bins int64 (128 MiB)
  const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkPixels / std::max<int64_t>(W, 1));
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(
      {(rows + rows_per_chunk - 1) / rows_per_chunk, kMaxChunks, kMaxPartialBins / bins}));
  const int64_t per = (rows + chunks - 1) / chunks;
  std::vector<int64_t> partials(size_t(chunks * bins), 0);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch)
      count(ch * per, std::min(rows, ch * per + per), partials.data() + ch * bins);
  });
  std::fill(out, out + bins, int64_t(0));
  for (int64_t ch = 0; ch < chunks; ++ch)  // fixed order
    for (int64_t b = 0; b < bins; ++b) out[b] += partials[size_t(ch * bins + b)];
}

}  // namespace cpu
}  // namespace pydense
