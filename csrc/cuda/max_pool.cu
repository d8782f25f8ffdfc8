// CUDA kernels of max_pool2d_with_indices. Index math: csrc/common/max_pool.h (shared with the
// CPU kernels). Forward: one thread per output element, taps in row-major order with ATen's
// (v > max || isnan(v)) rule. Backward: one thread per input element gathers the gradient of
// every window that names it (a fixed-order sum: deterministic, no atomics, overlapping windows
// included). Indices are int64 (flat) or uint8 (compact kh * KW + kw), by the tensor's dtype.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <type_traits>

#include "../common/cuda_launch.cuh"
#include "../common/max_pool.h"
#include "../common/max_pool_checks.h"

namespace pydense {
namespace max_pool {
namespace {

using namespace pydense::cuda;

template <typename scalar_t, typename idx_t, typename I>
__global__ void max_pool2d_fwd_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                                      idx_t* __restrict__ idx, Strides4<I> xs, Strides4<I> os,
                                      Strides4<I> is, I C, I H, I W, I OH, I OW,
                                      CompactGeometry<I> k, bool channels_last, I total) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool compact = std::is_same_v<idx_t, uint8_t>;
  for (I l = blockIdx.x * I(blockDim.x) + threadIdx.x; l < total; l += I(gridDim.x) * blockDim.x) {
    I n, c, oh, ow;
    decompose(l, C, OH, OW, channels_last, n, c, oh, ow);
    const I h0 = oh * k.sh - k.ph, w0 = ow * k.sw - k.pw;
    const I hf = first_tap(h0, k.dh), wf = first_tap(w0, k.dw);
    int64_t arg = compact ? int64_t(((hf - h0) / k.dh) * k.kw + (wf - w0) / k.dw)
                          : int64_t(hf) * W + wf;
    acc_t best = -INFINITY;
    const scalar_t* xp = x + n * xs.v[0] + c * xs.v[1];
    for (I kh = 0; kh < k.kh; ++kh) {
      const I ih = h0 + kh * k.dh;
      if (ih < 0 || ih >= H) continue;
      for (I kw = 0; kw < k.kw; ++kw) {
        const I iw = w0 + kw * k.dw;
        if (iw < 0 || iw >= W) continue;
        const acc_t v = acc_t(xp[ih * xs.v[2] + iw * xs.v[3]]);
        if (v > best || is_nan(v)) {
          best = v;
          arg = compact ? int64_t(kh * k.kw + kw) : int64_t(ih) * W + iw;
        }
      }
    }
    out[n * os.v[0] + c * os.v[1] + oh * os.v[2] + ow * os.v[3]] = scalar_t(best);
    idx[n * is.v[0] + c * is.v[1] + oh * is.v[2] + ow * is.v[3]] = idx_t(arg);
  }
}

template <typename scalar_t, typename idx_t, typename I>
__global__ void max_pool2d_bwd_kernel(const scalar_t* __restrict__ go,
                                      const idx_t* __restrict__ idx, scalar_t* __restrict__ gi,
                                      Strides4<I> gs, Strides4<I> is, Strides4<I> xs, I C, I H, I W,
                                      I OH, I OW, CompactGeometry<I> k, bool channels_last, I total) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool compact = std::is_same_v<idx_t, uint8_t>;
  for (I l = blockIdx.x * I(blockDim.x) + threadIdx.x; l < total; l += I(gridDim.x) * blockDim.x) {
    I n, c, ih, iw;
    decompose(l, C, H, W, channels_last, n, c, ih, iw);
    const scalar_t* gp = go + n * gs.v[0] + c * gs.v[1];
    const idx_t* ip = idx + n * is.v[0] + c * is.v[1];
    acc_t acc = acc_t(0);
    for (I kh = 0; kh < k.kh; ++kh) {
      const I oh = window_of_tap(ih, kh, k.sh, k.ph, k.dh, OH);
      if (oh < 0) continue;
      for (I kw = 0; kw < k.kw; ++kw) {
        const I ow = window_of_tap(iw, kw, k.sw, k.pw, k.dw, OW);
        if (ow < 0) continue;
        const int64_t want = compact ? int64_t(kh * k.kw + kw) : int64_t(ih) * W + iw;
        if (int64_t(ip[oh * is.v[2] + ow * is.v[3]]) == want) acc += acc_t(gp[oh * gs.v[2] + ow * gs.v[3]]);
      }
    }
    gi[n * xs.v[0] + c * xs.v[1] + ih * xs.v[2] + iw * xs.v[3]] = scalar_t(acc);
  }
}

void forward_cuda(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                  at::IntArrayRef padding, at::IntArrayRef dilation, const at::Tensor& out,
                  const at::Tensor& indices) {
  check_forward_args(input, kernel_size, stride, padding, dilation, out, indices);
  const c10::cuda::CUDAGuard guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t total = out.numel();
  if (total == 0) return;
  const int64_t C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t OH = out.size(2), OW = out.size(3);
  const bool narrow = fits_int32({&input, &out, &indices});
  const bool compact = indices.scalar_type() == at::kByte;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "max_pool2d_cuda", [&] {
    const auto launch = [&](auto zero, auto idx_zero) {
      using I = decltype(zero);
      using idx_t = decltype(idx_zero);
      max_pool2d_fwd_kernel<scalar_t, idx_t, I><<<blocks_for(total), kThreads, 0, stream>>>(
          input.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
          indices.mutable_data_ptr<idx_t>(), strides_of<I>(input), strides_of<I>(out),
          strides_of<I>(indices), I(C), I(H), I(W), I(OH), I(OW),
          compact_geometry<I>(kernel_size, stride, padding, dilation, H, W), is_channels_last(out), I(total));
    };
    if (compact) narrow ? launch(int32_t(0), uint8_t(0)) : launch(int64_t(0), uint8_t(0));
    else narrow ? launch(int32_t(0), int64_t(0)) : launch(int64_t(0), int64_t(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void backward_cuda(const at::Tensor& grad_output, const at::Tensor& indices,
                   at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                   at::IntArrayRef dilation, const at::Tensor& grad_input) {
  check_backward_args(grad_output, indices, kernel_size, stride, padding, dilation, grad_input);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t total = grad_input.numel();
  if (total == 0) return;
  const int64_t C = grad_input.size(1), H = grad_input.size(2), W = grad_input.size(3);
  const int64_t OH = grad_output.size(2), OW = grad_output.size(3);
  const bool narrow = fits_int32({&grad_output, &indices, &grad_input});
  const bool compact = indices.scalar_type() == at::kByte;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), "max_pool2d_backward_cuda", [&] {
    const auto launch = [&](auto zero, auto idx_zero) {
      using I = decltype(zero);
      using idx_t = decltype(idx_zero);
      max_pool2d_bwd_kernel<scalar_t, idx_t, I><<<blocks_for(total), kThreads, 0, stream>>>(
          grad_output.const_data_ptr<scalar_t>(), indices.const_data_ptr<idx_t>(),
          grad_input.mutable_data_ptr<scalar_t>(), strides_of<I>(grad_output),
          strides_of<I>(indices), strides_of<I>(grad_input), I(C), I(H), I(W), I(OH), I(OW),
          compact_geometry<I>(kernel_size, stride, padding, dilation, H, W), is_channels_last(grad_input),
          I(total));
    };
    if (compact) narrow ? launch(int32_t(0), uint8_t(0)) : launch(int64_t(0), uint8_t(0));
    else narrow ? launch(int32_t(0), int64_t(0)) : launch(int64_t(0), int64_t(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace max_pool
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CUDA, m) {
  m.impl("_max_pool2d_fwd", &pydense::max_pool::forward_cuda);
  m.impl("_max_pool2d_bwd", &pydense::max_pool::backward_cuda);
}
