// CUDA kernels of the panoptic pair counts, deterministic.
//
// The grid is (blocks per image) x N, folded into one axis: block x = blk * N + n owns the pixel
// range [blk * per_block, (blk + 1) * per_block) of image n (threads stride through it, so loads
// are coalesced). Each thread looks up its pixel's gt and pred ids in the image's sorted table rows
// (fixed-step binary search, csrc/common/panoptic_pairs.h, shared with the CPU kernel) and counts
// the bin gi * (P + 1) + pj:
// - when the (G + 1) * (P + 1) bins fit in shared memory as 32-bit counters, in a per-block
//   histogram there, written to row x of partials (blocks * N, bins) int64; pass 2
//   (panoptic_pair_counts_reduce_kernel, with sum_rows of cuda_launch.cuh) sums the rows
//   blk = 0, 1, ... of each image in that fixed order (partials viewed as (blocks, N * bins));
// - else with 64-bit integer atomics straight into the zeroed output (exact whatever their order).
// No float atomics: the result is bitwise reproducible.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/cuda_launch.cuh"
#include "../common/panoptic_pairs.h"
#include "../common/panoptic_pairs_checks.h"

namespace pydense {
namespace panoptic_pairs {
namespace {

using namespace pydense::cuda;

constexpr int64_t kMaxBlocks = 1024;                    // blocks per image
constexpr int64_t kMaxPartialBins = int64_t(1) << 22;  // blocks * N * bins int64 (32 MiB)
constexpr int64_t kSharedBinsMax = 12288;               // 48 KiB of 32-bit counters

template <typename TG, typename TP, typename I>
__global__ void panoptic_pair_counts_histogram_kernel(const TG* __restrict__ gt,
                                                      const TP* __restrict__ pred,
                                                      const int64_t* __restrict__ gt_ids,
                                                      const int64_t* __restrict__ pred_ids,
                                                      int64_t* __restrict__ dst, Strides4<I> gs,
                                                      Strides4<I> ps, I W, I HW, I per_block,
                                                      int64_t N, int64_t G, int64_t P,
                                                      int64_t g_step, int64_t p_step, bool shared) {
  extern __shared__ unsigned int counts[];
  const int64_t bins = (G + 1) * (P + 1);
  const int64_t n = int64_t(blockIdx.x) % N, blk = int64_t(blockIdx.x) / N;
  if (shared) {
    for (int64_t b = threadIdx.x; b < bins; b += blockDim.x) counts[b] = 0;
    __syncthreads();
  }
  const int64_t* gtab = gt_ids + n * G;
  const int64_t* ptab = pred_ids + n * P;
  const TG* gimg = gt + I(n) * gs.v[0];
  const TP* pimg = pred + I(n) * ps.v[0];
  unsigned long long* image_counts = reinterpret_cast<unsigned long long*>(dst + n * bins);
  const I begin = I(blk) * per_block;
  const I end = begin + per_block < HW ? begin + per_block : HW;
  for (I l = begin + I(threadIdx.x); l < end; l += I(blockDim.x)) {
    const I h = l / W, w = l - h * W;
    const int64_t gi = index_of(gtab, G, g_step, int64_t(gimg[h * gs.v[1] + w * gs.v[2]]));
    const int64_t pj = index_of(ptab, P, p_step, int64_t(pimg[h * ps.v[1] + w * ps.v[2]]));
    const int64_t b = bin_of(gi, pj, P);
    if (shared) {
      atomicAdd(&counts[b], 1u);
    } else {
      atomicAdd(image_counts + b, 1ull);
    }
  }
  if (shared) {
    __syncthreads();
    int64_t* mine = dst + int64_t(blockIdx.x) * bins;
    for (int64_t b = threadIdx.x; b < bins; b += blockDim.x) mine[b] = int64_t(counts[b]);
  }
}

// Pass 2: out[b] = sum over the rows of partials, in row order (sum_rows, cuda_launch.cuh).
__global__ void panoptic_pair_counts_reduce_kernel(const int64_t* __restrict__ partials,
                                                   int64_t* __restrict__ out, int64_t rows,
                                                   int64_t cols) {
  sum_rows(partials, out, rows, cols);
}

void panoptic_pair_counts_cuda(const at::Tensor& gt, const at::Tensor& pred,
                               const at::Tensor& gt_ids_, const at::Tensor& pred_ids_,
                               const at::Tensor& out) {
  check_args(gt, pred, gt_ids_, pred_ids_, out);
  const c10::cuda::CUDAGuard guard(gt.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t N = gt.size(0), W = gt.size(2), HW = gt.size(1) * W;
  const int64_t G = gt_ids_.size(1), P = pred_ids_.size(1);
  const int64_t bins = (G + 1) * (P + 1), NB = N * bins;
  int64_t* o = out.mutable_data_ptr<int64_t>();
  const bool shared = bins <= kSharedBinsMax;
  if (gt.numel() == 0 || !shared) {
    C10_CUDA_CHECK(cudaMemsetAsync(o, 0, size_t(NB) * sizeof(int64_t), stream));
    if (gt.numel() == 0) return;
  }
  const at::Tensor gt_ids = gt_ids_.contiguous(), pred_ids = pred_ids_.contiguous();
  // Blocks per image: partials stay below kMaxPartialBins (shared path); pixels per block are a
  // multiple of kThreads, below 2^30 (32-bit shared counters cannot overflow).
  const int64_t cap = shared ? std::max<int64_t>(1, std::min<int64_t>(kMaxBlocks, kMaxPartialBins / NB))
                             : kMaxBlocks;
  int64_t blocks = std::min<int64_t>(cap, (HW + kThreads * 16 - 1) / (kThreads * 16));
  blocks = std::max<int64_t>({blocks, int64_t(1), (HW + (int64_t(1) << 30) - 1) >> 30});
  int64_t per_block = (HW + blocks - 1) / blocks;
  per_block = (per_block + kThreads - 1) / kThreads * kThreads;
  blocks = (HW + per_block - 1) / per_block;
  TORCH_CHECK(blocks * N < (int64_t(1) << 31), "panoptic_pair_counts: too many images, N=", N);
  const at::Tensor partials = shared ? at::empty({blocks * N, bins}, out.options()) : out;
  const size_t smem = shared ? size_t(bins) * sizeof(unsigned int) : 0;
  // 32-bit index math when both maps span < 2^30 elements and HW + per_block fits too.
  const bool narrow = fits_int32({&gt, &pred}) && HW + per_block < (int64_t(1) << 30);
  const auto strides = [](const at::Tensor& t, auto zero) {
    using I = decltype(zero);
    Strides4<I> s{{0, 0, 0, 0}};
    for (int d = 0; d < t.dim(); ++d) s.v[d] = I(t.stride(d));
    return s;
  };
  AT_DISPATCH_INDEX_TYPES(gt.scalar_type(), "panoptic_pair_counts_cuda", [&] {
    using TG = index_t;
    AT_DISPATCH_INDEX_TYPES(pred.scalar_type(), "panoptic_pair_counts_cuda", [&] {
      using TP = index_t;
      const auto launch = [&](auto zero) {
        using I = decltype(zero);
        panoptic_pair_counts_histogram_kernel<TG, TP, I><<<unsigned(blocks * N), kThreads, smem, stream>>>(
            gt.const_data_ptr<TG>(), pred.const_data_ptr<TP>(), gt_ids.const_data_ptr<int64_t>(),
            pred_ids.const_data_ptr<int64_t>(), partials.mutable_data_ptr<int64_t>(),
            strides(gt, zero), strides(pred, zero), I(W), I(HW), I(per_block), N, G, P,
            top_step(G), top_step(P), shared);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      narrow ? launch(int32_t(0)) : launch(int64_t(0));
    });
  });
  if (shared) {
    panoptic_pair_counts_reduce_kernel<<<unsigned((NB + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
        partials.const_data_ptr<int64_t>(), o, blocks, NB);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

}  // namespace
}  // namespace panoptic_pairs
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CUDA, m) {
  m.impl("_panoptic_pair_counts", &pydense::panoptic_pairs::panoptic_pair_counts_cuda);
}
