// CUDA kernels of the direct 2-D convolution (any groups; the backend's kernels for depthwise and
// grouped convolutions; dense fp16/bf16 forwards go to the tensor-core kernel of
// conv_tensorcore.cu): forward with the fused epilogue, optionally into the pixel-shuffled
// layout (one thread per output element in the output's memory order, so channels_last reads
// and writes coalesce across channels), input
// gradient as a gather (one thread per input element, only the taps that reach it; no atomics)
// and weight gradient as a block reduction (one block per weight element, a fixed strided split
// of the positions over the threads and a fixed shared-memory tree: bitwise deterministic).
// Arithmetic: csrc/common/conv.h, shared with the CPU kernels. 32-bit index math when every
// tensor spans < 2^30 elements.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/conv.h"
#include "../common/conv_checks.h"
#include "../common/cuda_launch.cuh"
#include "conv_tensorcore.h"

namespace pydense {
namespace conv {
namespace {

using namespace pydense::cuda;

// One thread per element of out in out's memory order; out is the convolution's output or, for
// shuffle > 1, its pixel shuffle (then (c, yh, yw) are mapped to the convolution's (oc, oh, ow)).
template <typename scalar_t, typename I, typename acc_t = at::opmath_type<scalar_t>>
__global__ void conv2d_fwd_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ w,
                                  const scalar_t* __restrict__ bias,
                                  const scalar_t* __restrict__ res, scalar_t* __restrict__ out,
                                  Strides4<I> xs, Strides4<I> ws, Strides4<I> rs, Strides4<I> os,
                                  Geometry<I> G, bool relu, acc_t scale, I shuffle,
                                  bool channels_last, I total) {
  const I YC = G.OC / (shuffle * shuffle), YH = G.OH * shuffle, YW = G.OW * shuffle;
  for (I l = blockIdx.x * I(blockDim.x) + threadIdx.x; l < total; l += I(gridDim.x) * blockDim.x) {
    I n, c, yh, yw, oc, oh, ow;
    decompose(l, YC, YH, YW, channels_last, n, c, yh, yw);
    shuffled_source(shuffle, c, yh, yw, oc, oh, ow);
    const acc_t acc = forward_sum<acc_t>(x, w, xs, ws, G, n, oc, oh, ow);
    const acc_t r = res ? acc_t(res[n * rs.v[0] + c * rs.v[1] + yh * rs.v[2] + yw * rs.v[3]]) : acc_t(0);
    out[n * os.v[0] + c * os.v[1] + yh * os.v[2] + yw * os.v[3]] =
        scalar_t(epilogue<acc_t>(acc, bias ? acc_t(bias[oc]) : acc_t(0), relu, scale, r));
  }
}

template <typename scalar_t, typename I, typename acc_t = at::opmath_type<scalar_t>>
__global__ void conv2d_dgrad_kernel(const scalar_t* __restrict__ gy, const scalar_t* __restrict__ w,
                                    const scalar_t* __restrict__ bias, scalar_t* __restrict__ gx,
                                    Strides4<I> gs, Strides4<I> ws, Strides4<I> xs, Geometry<I> G,
                                    TapAxis<I> th, TapAxis<I> tw, bool channels_last, I total) {
  for (I l = blockIdx.x * I(blockDim.x) + threadIdx.x; l < total; l += I(gridDim.x) * blockDim.x) {
    I n, c, ih, iw;
    decompose(l, G.C, G.H, G.W, channels_last, n, c, ih, iw);
    const acc_t acc = dgrad_sum<acc_t>(gy, w, gs, ws, G, th, tw, n, c, ih, iw);
    gx[n * xs.v[0] + c * xs.v[1] + ih * xs.v[2] + iw * xs.v[3]] =
        scalar_t(acc + (bias ? acc_t(bias[c]) : acc_t(0)));
  }
}

template <typename scalar_t, typename I, typename acc_t = at::opmath_type<scalar_t>>
__global__ void __launch_bounds__(kThreads)
conv2d_wgrad_kernel(const scalar_t* __restrict__ gy, const scalar_t* __restrict__ x,
                    scalar_t* __restrict__ gw, Strides4<I> gs, Strides4<I> xs, Strides4<I> ws,
                    Geometry<I> G, I P, I elements) {
  __shared__ acc_t partial[kThreads];
  const I taps = G.KH * G.KW;
  for (I e = blockIdx.x; e < elements; e += gridDim.x) {
    const I tap = e % taps, kh = tap / G.KW, kw = tap % G.KW;
    const I c = (e / taps) % G.Cg, oc = e / (taps * G.Cg);
    const I c_abs = (oc / G.OCg) * G.Cg + c;
    acc_t acc = 0;
    for (I p = threadIdx.x; p < P; p += kThreads) acc += wgrad_term<acc_t>(gy, x, gs, xs, G, oc, c_abs, kh, kw, p);
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half /= 2) {
      if (int(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
      __syncthreads();
    }
    if (threadIdx.x == 0) gw[oc * ws.v[0] + c * ws.v[1] + kh * ws.v[2] + kw * ws.v[3]] = scalar_t(partial[0]);
    __syncthreads();
  }
}

void forward_cuda(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                  const c10::optional<at::Tensor>& residual, at::IntArrayRef stride,
                  at::IntArrayRef padding, at::IntArrayRef dilation, bool relu, double scale,
                  int64_t shuffle, const at::Tensor& out) {
  const Geometry<int64_t> G =
      check_forward(x, w, bias, residual, stride, padding, dilation, shuffle, out);
  const int64_t total = out.numel();
  if (total == 0) return;
  if (tensorcore_eligible(x, w))
    return forward_tensorcore(x, w, bias, residual, G, relu, scale, shuffle, out);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor& r = residual ? *residual : out;
  const bool small = fits_int32({&x, &w, &out, &r});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "conv2d_fwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto launch = [&](auto zero) {
      using I = decltype(zero);
      conv2d_fwd_kernel<scalar_t, I><<<blocks_for(total), kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
          bias ? bias->const_data_ptr<scalar_t>() : nullptr,
          residual ? residual->const_data_ptr<scalar_t>() : nullptr, out.mutable_data_ptr<scalar_t>(),
          strides_of<I>(x), strides_of<I>(w), strides_of<I>(r), strides_of<I>(out), narrow_geometry<I>(G), relu,
          acc_t(scale), I(shuffle), is_channels_last(out), I(total));
    };
    small ? launch(int32_t(0)) : launch(int64_t(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void dgrad_cuda(const at::Tensor& gy, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                const at::Tensor& gx) {
  const Geometry<int64_t> G = check_dgrad(gy, w, bias, stride, padding, dilation, gx);
  const int64_t total = gx.numel();
  if (total == 0) return;
  const c10::cuda::CUDAGuard guard(gy.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const bool small = fits_int32({&gy, &w, &gx});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gy.scalar_type(), "conv2d_dgrad_cuda", [&] {
    const auto launch = [&](auto zero) {
      using I = decltype(zero);
      conv2d_dgrad_kernel<scalar_t, I><<<blocks_for(total), kThreads, 0, stream>>>(
          gy.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
          bias ? bias->const_data_ptr<scalar_t>() : nullptr, gx.mutable_data_ptr<scalar_t>(),
          strides_of<I>(gy), strides_of<I>(w), strides_of<I>(gx), narrow_geometry<I>(G),
          tap_axis<I>(G.sh, G.dh), tap_axis<I>(G.sw, G.dw), is_channels_last(gx), I(total));
    };
    small ? launch(int32_t(0)) : launch(int64_t(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void wgrad_cuda(const at::Tensor& gy, const at::Tensor& x, at::IntArrayRef stride,
                at::IntArrayRef padding, at::IntArrayRef dilation, const at::Tensor& gw) {
  const Geometry<int64_t> G = check_wgrad(gy, x, stride, padding, dilation, gw);
  const int64_t elements = gw.numel();
  if (elements == 0) return;
  const c10::cuda::CUDAGuard guard(gy.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const bool small = fits_int32({&gy, &x, &gw});
  const int64_t P = gy.size(0) * G.OH * G.OW;
  const unsigned blocks = unsigned(std::min<int64_t>(elements, 1 << 20));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gy.scalar_type(), "conv2d_wgrad_cuda", [&] {
    const auto launch = [&](auto zero) {
      using I = decltype(zero);
      conv2d_wgrad_kernel<scalar_t, I><<<blocks, kThreads, 0, stream>>>(
          gy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), gw.mutable_data_ptr<scalar_t>(),
          strides_of<I>(gy), strides_of<I>(x), strides_of<I>(gw), narrow_geometry<I>(G), I(P), I(elements));
    };
    small ? launch(int32_t(0)) : launch(int64_t(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace conv
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CUDA, m) {
  m.impl("_conv2d_fwd", &pydense::conv::forward_cuda);
  m.impl("_conv2d_dgrad", &pydense::conv::dgrad_cuda);
  m.impl("_conv2d_wgrad", &pydense::conv::wgrad_cuda);
}
