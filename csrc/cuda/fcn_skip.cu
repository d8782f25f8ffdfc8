// CUDA kernels of the fused FCN skip: forward (one thread per output element in the output's
// memory order: the two-tap bilinear deconvolution of the coarse scores plus the cropped, scaled
// skip, scored by the 1x1 convolution when a weight is given) and the skip gradient (one thread
// per skip element; zero outside the crop). No atomics: deterministic. The score weight is tiny
// (K x CS) and read through the cache. Arithmetic: csrc/common/fcn_skip.h, shared with the CPU
// kernels. 32-bit index math when every tensor spans < 2^30 elements.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_launch.cuh"
#include "../common/fcn_skip.h"
#include "../common/fcn_skip_checks.h"

namespace pydense {
namespace fcn_skip {
namespace {

using namespace pydense::cuda;

template <typename scalar_t, typename I, typename acc_t = at::opmath_type<scalar_t>>
__global__ void fcn_skip_fwd_kernel(const scalar_t* __restrict__ coarse,
                                    const scalar_t* __restrict__ skip,
                                    const scalar_t* __restrict__ w, const scalar_t* __restrict__ b,
                                    scalar_t* __restrict__ out, const int32_t* __restrict__ hi,
                                    const acc_t* __restrict__ hl, const int32_t* __restrict__ wi,
                                    const acc_t* __restrict__ wl, Strides4<I> cs, Strides4<I> ss,
                                    Strides4<I> os, I ws0, I ws1, I K, I CS, I CH, I CW, I OH, I OW,
                                    I off_h, I off_w, acc_t scale, bool channels_last, I total) {
  for (I l = blockIdx.x * I(blockDim.x) + threadIdx.x; l < total; l += I(gridDim.x) * blockDim.x) {
    I n, k, oh, ow;
    decompose(l, K, OH, OW, channels_last, n, k, oh, ow);
    const scalar_t* px = skip + n * ss.v[0] + (oh + off_h) * ss.v[2] + (ow + off_w) * ss.v[3];
    out[n * os.v[0] + k * os.v[1] + oh * os.v[2] + ow * os.v[3]] = scalar_t(forward_value<acc_t>(
        coarse + n * cs.v[0] + k * cs.v[1], CH, CW, cs.v[2], cs.v[3], px, ss.v[1], w, ws0, ws1, b, CS, k, oh,
        ow, hi, hl, wi, wl, OH, OW, scale));
  }
}

template <typename scalar_t, typename I, typename acc_t = at::opmath_type<scalar_t>>
__global__ void fcn_skip_bwd_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ w,
                                    scalar_t* __restrict__ gx, Strides4<I> gs, Strides4<I> xs,
                                    I ws0, I ws1, I K, I CS, I HS, I WS, I OH, I OW, I off_h,
                                    I off_w, acc_t scale, bool channels_last, I total) {
  for (I l = blockIdx.x * I(blockDim.x) + threadIdx.x; l < total; l += I(gridDim.x) * blockDim.x) {
    I n, c, h, wp;
    decompose(l, CS, HS, WS, channels_last, n, c, h, wp);
    gx[n * xs.v[0] + c * xs.v[1] + h * xs.v[2] + wp * xs.v[3]] = scalar_t(skip_grad_value<acc_t>(
        g + n * gs.v[0], gs, w, ws0, ws1, K, c, h, wp, off_h, off_w, OH, OW, scale));
  }
}

void forward_cuda(const at::Tensor& coarse, const at::Tensor& skip, const c10::optional<at::Tensor>& weight,
                  const c10::optional<at::Tensor>& bias, const at::Tensor& h_idx, const at::Tensor& h_lam,
                  const at::Tensor& w_idx, const at::Tensor& w_lam, at::IntArrayRef offset,
                  double skip_scale, const at::Tensor& out) {
  check_forward(coarse, skip, weight, bias, h_idx, h_lam, w_idx, w_lam, offset, out);
  const int64_t total = out.numel();
  if (total == 0) return;
  const c10::cuda::CUDAGuard guard(coarse.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor& wt = weight ? *weight : out;
  const bool narrow = fits_int32({&coarse, &skip, &out, &wt});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, coarse.scalar_type(), "fcn_skip_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto launch = [&](auto zero) {
      using I = decltype(zero);
      fcn_skip_fwd_kernel<scalar_t, I><<<blocks_for(total), kThreads, 0, stream>>>(
          coarse.const_data_ptr<scalar_t>(), skip.const_data_ptr<scalar_t>(),
          weight ? weight->const_data_ptr<scalar_t>() : nullptr,
          bias ? bias->const_data_ptr<scalar_t>() : nullptr, out.mutable_data_ptr<scalar_t>(),
          h_idx.const_data_ptr<int32_t>(), h_lam.const_data_ptr<acc_t>(), w_idx.const_data_ptr<int32_t>(),
          w_lam.const_data_ptr<acc_t>(), strides_of<I>(coarse), strides_of<I>(skip), strides_of<I>(out),
          I(weight ? weight->stride(0) : 0), I(weight ? weight->stride(1) : 0), I(out.size(1)),
          I(skip.size(1)), I(coarse.size(2)), I(coarse.size(3)), I(out.size(2)), I(out.size(3)),
          I(offset[0]), I(offset[1]),
          acc_t(skip_scale), is_channels_last(out), I(total));
    };
    narrow ? launch(int32_t(0)) : launch(int64_t(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void backward_cuda(const at::Tensor& grad_output, const c10::optional<at::Tensor>& weight,
                   at::IntArrayRef offset, double skip_scale, const at::Tensor& grad_skip) {
  check_backward(grad_output, weight, offset, grad_skip);
  const int64_t total = grad_skip.numel();
  if (total == 0) return;
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor& wt = weight ? *weight : grad_skip;
  const bool narrow = fits_int32({&grad_output, &grad_skip, &wt});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), "fcn_skip_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto launch = [&](auto zero) {
      using I = decltype(zero);
      fcn_skip_bwd_kernel<scalar_t, I><<<blocks_for(total), kThreads, 0, stream>>>(
          grad_output.const_data_ptr<scalar_t>(), weight ? weight->const_data_ptr<scalar_t>() : nullptr,
          grad_skip.mutable_data_ptr<scalar_t>(), strides_of<I>(grad_output), strides_of<I>(grad_skip),
          I(weight ? weight->stride(0) : 0), I(weight ? weight->stride(1) : 0), I(grad_output.size(1)),
          I(grad_skip.size(1)), I(grad_skip.size(2)), I(grad_skip.size(3)), I(grad_output.size(2)),
          I(grad_output.size(3)), I(offset[0]), I(offset[1]), acc_t(skip_scale),
          is_channels_last(grad_skip), I(total));
    };
    narrow ? launch(int32_t(0)) : launch(int64_t(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace fcn_skip
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CUDA, m) {
  m.impl("_fcn_skip_fwd", &pydense::fcn_skip::forward_cuda);
  m.impl("_fcn_skip_bwd", &pydense::fcn_skip::backward_cuda);
}
