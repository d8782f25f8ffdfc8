// CUDA kernel of the instance coverage patterns: one thread per (pixel, word) in a grid-stride
// loop, pixel-major so that neighbouring threads read neighbouring mask elements (coalesced for
// row-major masks). The thread ORs the bits of its word's ranks [64 j, min(64 j + 64, K)) in
// registers and writes the word once: no atomics, deterministic.
// Word/bit math: csrc/common/instance_coverage.h, shared with the CPU kernel.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_launch.cuh"
#include "../common/instance_coverage.h"
#include "../common/instance_coverage_checks.h"

namespace pydense {
namespace instance_coverage {
namespace {

using namespace pydense::cuda;

// out[(h * W + w) * NW + j]; element index l = (h * W + w) * NW + j runs over H * W * NW.
template <typename I>
__global__ void instance_coverage_kernel(const uint8_t* __restrict__ masks,
                                         const int64_t* __restrict__ order,
                                         int64_t* __restrict__ out, I W, I NW, I K, I s0, I s1,
                                         I s2, I total) {
  for (I l = I(blockIdx.x) * blockDim.x + threadIdx.x; l < total; l += I(gridDim.x) * blockDim.x) {
    const I j = l % NW, p = l / NW, h = p / W, w = p - h * W;
    const uint8_t* px = masks + (h * s1 + w * s2);
    uint64_t word = 0;
    const int64_t end = rank_end(int64_t(j), int64_t(K));
    for (int64_t r = rank_begin(int64_t(j)); r < end; ++r) {
      if (inside(px[I(order[r]) * s0])) word |= bit_of(r);
    }
    out[l] = static_cast<int64_t>(word);
  }
}

void instance_coverage_cuda(const at::Tensor& masks, const at::Tensor& order, const at::Tensor& out) {
  check_args(masks, order, out);
  const int64_t H = masks.size(1), W = masks.size(2), K = order.numel();
  const int64_t NW = num_words(K);
  const int64_t total = H * W * NW;
  if (total == 0) return;
  const c10::cuda::CUDAGuard guard(masks.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor order_c = order.contiguous();
  const uint8_t* m = static_cast<const uint8_t*>(masks.const_data_ptr());
  const auto launch = [&](auto zero) {
    using I = decltype(zero);
    instance_coverage_kernel<I><<<blocks_for(total), kThreads, 0, stream>>>(
        m, order_c.const_data_ptr<int64_t>(), out.mutable_data_ptr<int64_t>(), I(W), I(NW), I(K),
        I(masks.stride(0)), I(masks.stride(1)), I(masks.stride(2)), I(total));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  // 32-bit index math when the masks and the output span < 2^30 elements.
  if (fits_int32({&masks, &out}) && total < (int64_t(1) << 30)) {
    launch(int32_t(0));
  } else {
    launch(int64_t(0));
  }
}

}  // namespace
}  // namespace instance_coverage
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CUDA, m) {
  m.impl("_instance_coverage", &pydense::instance_coverage::instance_coverage_cuda);
}
