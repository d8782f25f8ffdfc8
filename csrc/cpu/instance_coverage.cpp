// CPU kernel of the instance coverage patterns. Rows h run in parallel (at::parallel_for); for each
// word j of a row, the ranks of the word OR their bits into a row of W accumulators, branch-free,
// walking masks[order[r], h, :] (contiguous and vectorised for row-major masks); the row of words
// is then stored. Each output word is written by one thread only: the result does not depend on
// the thread count.
// Word/bit math: csrc/common/instance_coverage.h, shared with the CUDA kernel.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/instance_coverage.h"
#include "../common/instance_coverage_checks.h"

namespace pydense {
namespace instance_coverage {
namespace {

void instance_coverage_cpu(const at::Tensor& masks, const at::Tensor& order, const at::Tensor& out) {
  check_args(masks, order, out);
  const int64_t H = masks.size(1), W = masks.size(2), K = order.numel();
  const int64_t NW = num_words(K);
  if (H == 0 || W == 0 || NW == 0) return;
  const int64_t s0 = masks.stride(0), s1 = masks.stride(1), s2 = masks.stride(2);
  // bool and uint8 share one byte per element: read both as uint8.
  const uint8_t* m = static_cast<const uint8_t*>(masks.const_data_ptr());
  const at::Tensor order_c = order.contiguous();
  const int64_t* ord = order_c.const_data_ptr<int64_t>();
  for (int64_t r = 0; r < K; ++r)
    TORCH_CHECK(ord[r] >= 0 && ord[r] < masks.size(0), "instance_coverage: order[", r, "] = ",
                ord[r], " is not an instance index in [0, ", masks.size(0), ")");
  int64_t* o = out.mutable_data_ptr<int64_t>();
  at::parallel_for(0, H, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint64_t> acc(static_cast<size_t>(W));
    for (int64_t h = begin; h < end; ++h) {
      int64_t* row = o + h * W * NW;
      for (int64_t j = 0; j < NW; ++j) {
        std::fill(acc.begin(), acc.end(), uint64_t(0));
        for (int64_t r = rank_begin(j); r < rank_end(j, K); ++r) {
          const uint8_t* mrow = m + ord[r] * s0 + h * s1;
          const uint64_t bit = bit_of(r);
          uint64_t* a = acc.data();
          if (s2 == 1) {  // branch-free and contiguous: vectorised
            for (int64_t w = 0; w < W; ++w) a[w] |= uint64_t(inside(mrow[w])) * bit;
          } else {
            for (int64_t w = 0; w < W; ++w) a[w] |= uint64_t(inside(mrow[w * s2])) * bit;
          }
        }
        for (int64_t w = 0; w < W; ++w) row[w * NW + j] = static_cast<int64_t>(acc[size_t(w)]);
      }
    }
  });
}

}  // namespace
}  // namespace instance_coverage
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CPU, m) {
  m.impl("_instance_coverage", &pydense::instance_coverage::instance_coverage_cpu);
}
