// CUDA kernels of bilinear upsampling: forward gather (one thread per output element, coalesced
// writes in the output's memory order) and backward gather over the input (one thread per input
// element, no atomics, fixed order: bitwise deterministic). 32-bit index math when every tensor
// spans < 2^30 elements. Arithmetic: csrc/common/upsample_bilinear.h (shared with the CPU kernels).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_launch.cuh"
#include "../common/upsample_bilinear.h"
#include "../common/upsample_bilinear_checks.h"

namespace pydense {
namespace upsample_bilinear {
namespace {

using namespace pydense::cuda;

// Output channels c < CX are upsampled from x; with a skip tensor, channels c >= CX copy
// skip[:, c - CX] (the fused UNet concat).
template <typename scalar_t, typename I, typename acc_t = at::opmath_type<scalar_t>>
__global__ void upsample_bilinear2d_fwd_kernel(const scalar_t* __restrict__ x,
                                               const scalar_t* __restrict__ skip,
                                               scalar_t* __restrict__ out,
                                               const int32_t* __restrict__ hi,
                                               const acc_t* __restrict__ hl,
                                               const int32_t* __restrict__ wi,
                                               const acc_t* __restrict__ wl, Strides4<I> xs,
                                               Strides4<I> ss, Strides4<I> os, I C, I CX, I H, I W,
                                               I OH, I OW, bool channels_last, I total) {
  for (I l = blockIdx.x * I(blockDim.x) + threadIdx.x; l < total; l += I(gridDim.x) * blockDim.x) {
    I n, c, oh, ow;
    decompose(l, C, OH, OW, channels_last, n, c, oh, ow);
    if (c >= CX) {
      out[n * os.v[0] + c * os.v[1] + oh * os.v[2] + ow * os.v[3]] =
          skip[n * ss.v[0] + (c - CX) * ss.v[1] + oh * ss.v[2] + ow * ss.v[3]];
      continue;
    }
    out[n * os.v[0] + c * os.v[1] + oh * os.v[2] + ow * os.v[3]] = scalar_t(gather<acc_t>(
        x + n * xs.v[0] + c * xs.v[1], H, W, xs.v[2], xs.v[3], hi, hl, wi, wl, OH, OW, oh, ow));
  }
}

template <typename scalar_t, typename I, typename acc_t = at::opmath_type<scalar_t>>
__global__ void upsample_bilinear2d_bwd_kernel(const scalar_t* __restrict__ g,
                                               scalar_t* __restrict__ gi,
                                               const int32_t* __restrict__ hi,
                                               const acc_t* __restrict__ hl,
                                               const int32_t* __restrict__ hr,
                                               const int32_t* __restrict__ wi,
                                               const acc_t* __restrict__ wl,
                                               const int32_t* __restrict__ wr, Strides4<I> gs,
                                               Strides4<I> xs, I C, I H, I W, I OH, I OW,
                                               bool channels_last, I total) {
  for (I l = blockIdx.x * I(blockDim.x) + threadIdx.x; l < total; l += I(gridDim.x) * blockDim.x) {
    I n, c, ih, iw;
    decompose(l, C, H, W, channels_last, n, c, ih, iw);
    const scalar_t* p = g + n * gs.v[0] + c * gs.v[1];
    acc_t acc = 0;
    I h_lo, h_hi, w_lo, w_hi;
    out_range(hr, ih, H, OH, h_lo, h_hi);
    out_range(wr, iw, W, OW, w_lo, w_hi);
    for (I oh = h_lo; oh < h_hi; ++oh) {
      acc_t row = 0;
      for (I ow = w_lo; ow < w_hi; ++ow)
        row += tap_weight(ow, iw, wi, wl, OW) * acc_t(p[oh * gs.v[2] + ow * gs.v[3]]);
      acc += tap_weight(oh, ih, hi, hl, OH) * row;
    }
    gi[n * xs.v[0] + c * xs.v[1] + ih * xs.v[2] + iw * xs.v[3]] = scalar_t(acc);
  }
}

void forward_cuda(const at::Tensor& input, const c10::optional<at::Tensor>& skip,
                  const at::Tensor& h_idx, const at::Tensor& h_lam, const at::Tensor& w_idx,
                  const at::Tensor& w_lam, const at::Tensor& out) {
  check_forward(input, skip, h_idx, h_lam, w_idx, w_lam, out);
  const int64_t C = out.size(1), OH = out.size(2), OW = out.size(3), total = out.numel();
  if (total == 0) return;
  const c10::cuda::CUDAGuard guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor& s = skip ? *skip : input;
  const bool narrow = fits_int32({&input, &s, &out});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "upsample_bilinear2d_cuda", [&] {
    const auto launch = [&](auto zero) {
      using I = decltype(zero);
      upsample_bilinear2d_fwd_kernel<scalar_t, I><<<blocks_for(total), kThreads, 0, stream>>>(
          input.const_data_ptr<scalar_t>(), skip ? s.const_data_ptr<scalar_t>() : nullptr,
          out.mutable_data_ptr<scalar_t>(), h_idx.const_data_ptr<int32_t>(),
          h_lam.const_data_ptr<at::opmath_type<scalar_t>>(), w_idx.const_data_ptr<int32_t>(),
          w_lam.const_data_ptr<at::opmath_type<scalar_t>>(), strides_of<I>(input), strides_of<I>(s),
          strides_of<I>(out), I(C), I(input.size(1)), I(input.size(2)), I(input.size(3)), I(OH), I(OW),
          is_channels_last(out), I(total));
    };
    narrow ? launch(int32_t(0)) : launch(int64_t(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void backward_cuda(const at::Tensor& grad_output, const at::Tensor& h_idx, const at::Tensor& h_lam,
                   const at::Tensor& h_rng, const at::Tensor& w_idx, const at::Tensor& w_lam,
                   const at::Tensor& w_rng, const at::Tensor& grad_input) {
  check_backward(grad_output, h_idx, h_lam, h_rng, w_idx, w_lam, w_rng, grad_input);
  const int64_t C = grad_input.size(1), H = grad_input.size(2), W = grad_input.size(3),
                OH = grad_output.size(2), OW = grad_output.size(3), total = grad_input.numel();
  if (total == 0) return;
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const bool narrow = fits_int32({&grad_input, &grad_output});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), "upsample_bilinear2d_backward_cuda", [&] {
    const auto launch = [&](auto zero) {
      using I = decltype(zero);
      upsample_bilinear2d_bwd_kernel<scalar_t, I><<<blocks_for(total), kThreads, 0, stream>>>(
          grad_output.const_data_ptr<scalar_t>(), grad_input.mutable_data_ptr<scalar_t>(),
          h_idx.const_data_ptr<int32_t>(), h_lam.const_data_ptr<at::opmath_type<scalar_t>>(),
          h_rng.const_data_ptr<int32_t>(), w_idx.const_data_ptr<int32_t>(),
          w_lam.const_data_ptr<at::opmath_type<scalar_t>>(), w_rng.const_data_ptr<int32_t>(),
          strides_of<I>(grad_output), strides_of<I>(grad_input), I(C), I(H), I(W), I(OH), I(OW),
          is_channels_last(grad_input), I(total));
    };
    narrow ? launch(int32_t(0)) : launch(int64_t(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace upsample_bilinear
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CUDA, m) {
  m.impl("_upsample_bilinear2d_fwd", &pydense::upsample_bilinear::forward_cuda);
  m.impl("_upsample_bilinear2d_bwd", &pydense::upsample_bilinear::backward_cuda);
}
