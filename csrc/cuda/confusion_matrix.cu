// CUDA kernels of the segmentation confusion matrix, deterministic in two passes.
//
// Pass 1 (confusion_matrix_histogram_kernel): block b owns the contiguous pixel range
// [b * per_block, (b + 1) * per_block) (threads stride through it, so loads are coalesced) and
// counts its bins t * K + p in a private histogram: 32-bit counters in shared memory when
// K * K * 4 bytes fit (K <= 110), else 64-bit counters in the block's own row of the zeroed
// partials buffer. Either way the counting uses integer atomics only (exact whatever their
// order), and the block's histogram lands in row b of partials (P, K * K) int64. Pass 2
// (confusion_matrix_reduce_kernel, with sum_rows of cuda_launch.cuh): cm[bin] = sum over
// b = 0..P-1 in that fixed order, one thread per bin. No float atomics, no atomics across blocks.
// Per-pixel math: csrc/common/confusion_matrix.h, shared with the CPU kernel.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>

#include "../common/confusion_matrix.h"
#include "../common/confusion_matrix_checks.h"
#include "../common/cuda_launch.cuh"

namespace pydense {
namespace confusion_matrix {
namespace {

using namespace pydense::cuda;

constexpr int64_t kMaxBlocks = 1024;
constexpr int64_t kMaxPartialBins = int64_t(1) << 22;  // blocks * K * K int64 (32 MiB)
constexpr int64_t kSharedBinsMax = 12288;               // 48 KiB of 32-bit counters

// pred: labels (LOGITS = false, strides ps.v[0..2]) or logits (N, K, H, W) with strides ps.v[0..3].
template <typename P, typename T, bool LOGITS, typename I>
__global__ void confusion_matrix_histogram_kernel(const P* __restrict__ pred,
                                                  const T* __restrict__ target,
                                                  int64_t* __restrict__ partials, Strides4<I> ps,
                                                  Strides4<I> ts, I H, I W, I total, I per_block,
                                                  int64_t K, int64_t ignore_index, bool shared) {
  extern __shared__ unsigned int counts[];
  const int64_t KK = K * K;
  int64_t* mine = partials + int64_t(blockIdx.x) * KK;
  if (shared) {
    for (int64_t b = threadIdx.x; b < KK; b += blockDim.x) counts[b] = 0;
    __syncthreads();
  }
  const I begin = I(blockIdx.x) * per_block;
  const I end = begin + per_block < total ? begin + per_block : total;
  const I HW = H * W;
  for (I l = begin + I(threadIdx.x); l < end; l += I(blockDim.x)) {
    const I n = l / HW, r = l - n * HW, h = r / W, w = r - h * W;
    const int64_t t = int64_t(target[n * ts.v[0] + h * ts.v[1] + w * ts.v[2]]);
    int64_t p;
    if constexpr (LOGITS) {
      using acc_t = at::opmath_type<P>;
      const P* px = pred + (n * ps.v[0] + h * ps.v[2] + w * ps.v[3]);
      acc_t best = acc_t(px[0]);
      I arg = 0;
      for (I c = 1; c < I(K); ++c) {
        const acc_t v = acc_t(px[c * ps.v[1]]);
        if (argmax_takes(v, best)) {
          best = v;
          arg = c;
        }
      }
      p = arg;
    } else {
      p = int64_t(pred[n * ps.v[0] + h * ps.v[1] + w * ps.v[2]]);
    }
    const int64_t b = bin_of(t, p, K, ignore_index);
    if (b < 0) continue;
    if (shared) {
      atomicAdd(&counts[b], 1u);
    } else {
      atomicAdd(reinterpret_cast<unsigned long long*>(mine + b), 1ull);
    }
  }
  if (shared) {
    __syncthreads();
    for (int64_t b = threadIdx.x; b < KK; b += blockDim.x) mine[b] = int64_t(counts[b]);
  }
}

// Pass 2: out[b] = sum over the rows of partials, in row order (sum_rows, cuda_launch.cuh).
__global__ void confusion_matrix_reduce_kernel(const int64_t* __restrict__ partials,
                                               int64_t* __restrict__ out, int64_t rows,
                                               int64_t cols) {
  sum_rows(partials, out, rows, cols);
}

void confusion_matrix_cuda(const at::Tensor& pred, const at::Tensor& target, int64_t K,
                           int64_t ignore_index, const at::Tensor& out) {
  check_args(pred, target, K, out);
  const c10::cuda::CUDAGuard guard(target.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t KK = K * K;
  const int64_t total = target.numel();
  if (total == 0) {
    C10_CUDA_CHECK(cudaMemsetAsync(out.mutable_data_ptr<int64_t>(), 0, KK * sizeof(int64_t), stream));
    return;
  }
  const int64_t cap = std::max<int64_t>(1, std::min<int64_t>(kMaxBlocks, kMaxPartialBins / KK));
  // Pixels per block: a multiple of kThreads, below 2^31 (32-bit shared counters cannot overflow).
  int64_t blocks = std::min<int64_t>(cap, (total + kThreads * 16 - 1) / (kThreads * 16));
  blocks = std::max<int64_t>({blocks, int64_t(1), (total + (int64_t(1) << 30) - 1) >> 30});
  int64_t per_block = (total + blocks - 1) / blocks;
  per_block = (per_block + kThreads - 1) / kThreads * kThreads;
  blocks = (total + per_block - 1) / per_block;
  const bool shared = KK <= kSharedBinsMax;
  const at::Tensor partials = shared ? at::empty({blocks, KK}, out.options())
                                     : at::zeros({blocks, KK}, out.options());
  const size_t smem = shared ? size_t(KK) * sizeof(unsigned int) : 0;
  const bool logits = pred.dim() == 4;
  // 32-bit index math when every tensor spans < 2^30 elements and total + per_block fits too.
  const bool narrow = fits_int32({&pred, &target}) && total + per_block < (int64_t(1) << 30);
  const auto strides = [](const at::Tensor& t, auto zero) {
    using I = decltype(zero);
    Strides4<I> s{{0, 0, 0, 0}};
    for (int d = 0; d < t.dim(); ++d) s.v[d] = I(t.stride(d));
    return s;
  };
  PYDENSE_DISPATCH_LABELS(target.scalar_type(), T, [&] {
    const auto launch = [&](const auto* p, auto is_logits, auto zero) {
      using P = std::remove_cv_t<std::remove_pointer_t<decltype(p)>>;
      using I = decltype(zero);
      confusion_matrix_histogram_kernel<P, T, decltype(is_logits)::value, I>
          <<<unsigned(blocks), kThreads, smem, stream>>>(
          p, target.const_data_ptr<T>(), partials.mutable_data_ptr<int64_t>(), strides(pred, zero),
          strides(target, zero), I(target.size(1)), I(target.size(2)), I(total), I(per_block), K,
          ignore_index, shared);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (logits) {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "confusion_matrix_cuda", [&] {
        const scalar_t* p = pred.const_data_ptr<scalar_t>();
        narrow ? launch(p, std::true_type{}, int32_t(0)) : launch(p, std::true_type{}, int64_t(0));
      });
    } else {
      PYDENSE_DISPATCH_LABELS(pred.scalar_type(), P, [&] {
        const P* p = pred.const_data_ptr<P>();
        narrow ? launch(p, std::false_type{}, int32_t(0)) : launch(p, std::false_type{}, int64_t(0));
      });
    }
  });
  confusion_matrix_reduce_kernel<<<unsigned((KK + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      partials.const_data_ptr<int64_t>(), out.mutable_data_ptr<int64_t>(), blocks, KK);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace
}  // namespace confusion_matrix
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CUDA, m) {
  m.impl("_confusion_matrix", &pydense::confusion_matrix::confusion_matrix_cuda);
}
