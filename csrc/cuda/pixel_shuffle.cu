// CUDA kernel of pixel_shuffle / pixel_unshuffle: one gather over the output in its memory order
// (coalesced writes), 32-bit index math when every tensor spans < 2^30 elements.
// Index math: csrc/common/pixel_shuffle.h, shared with the CPU kernel.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_launch.cuh"
#include "../common/pixel_shuffle.h"
#include "../common/pixel_shuffle_checks.h"

namespace pydense {
namespace pixel_shuffle {
namespace {

using namespace pydense::cuda;

template <typename scalar_t, typename I>
__global__ void pixel_shuffle_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                                     Strides4<I> xs, Strides4<I> os, I OC, I OH, I OW, I r,
                                     bool upscale, bool channels_last, I total) {
  for (I l = blockIdx.x * I(blockDim.x) + threadIdx.x; l < total; l += I(gridDim.x) * blockDim.x) {
    I n, oc, oh, ow;
    decompose(l, OC, OH, OW, channels_last, n, oc, oh, ow);
    I c, h, w;
    source(oc, oh, ow, r, upscale, c, h, w);
    out[n * os.v[0] + oc * os.v[1] + oh * os.v[2] + ow * os.v[3]] =
        x[n * xs.v[0] + c * xs.v[1] + h * xs.v[2] + w * xs.v[3]];
  }
}

void pixel_shuffle_cuda(const at::Tensor& input, int64_t r, bool upscale, const at::Tensor& out) {
  check_args(input, r, upscale, out);
  const int64_t total = out.numel();
  if (total == 0) return;
  const c10::cuda::CUDAGuard guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const bool channels_last = is_channels_last(out);
  const bool narrow = fits_int32({&input, &out});
  const unsigned blocks = blocks_for(total);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "pixel_shuffle_cuda", [&] {
    const auto launch = [&](auto zero) {
      using I = decltype(zero);
      pixel_shuffle_kernel<scalar_t, I><<<blocks, kThreads, 0, stream>>>(
          input.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), strides_of<I>(input),
          strides_of<I>(out), I(out.size(1)), I(out.size(2)), I(out.size(3)), I(r), upscale,
          channels_last, I(total));
    };
    narrow ? launch(int32_t(0)) : launch(int64_t(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace pixel_shuffle
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CUDA, m) {
  m.impl("_pixel_shuffle", &pydense::pixel_shuffle::pixel_shuffle_cuda);
}
