// CUDA kernels of max_unpool2d. Index math: csrc/common/max_unpool.h (shared with the CPU kernels).
//
// Forward, kernel == stride (SegNet): one gather pass writes every output element exactly once and
// flags the planes that hold an index outside its own pooling window. Forward otherwise, and for
// flagged planes: a deterministic scatter in three passes (zero + winner := -1; atomicMax of the
// input position into winner[target]; write where winner[target] is this position), so the later
// input element wins a duplicate target whatever the thread order. The scatter kernels loop over
// the planes of a (plane, split) grid and return at once for unflagged planes, so after a clean
// gather they cost three tiny launches. Invalid indices (outside [0, OH*OW)) are never used as an
// address: they are dropped on the device; the Python layer raises for them when checking is on.
// Backward: a gather, one pass over grad_input.
// Indices are int64 (flat) or uint8 (compact window offsets, decoded to the flat target by
// target_of, csrc/common/max_pool.h); every kernel is templated on the index type.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/cuda_launch.cuh"
#include "../common/max_pool.h"
#include "../common/max_unpool.h"
#include "../common/max_unpool_checks.h"

namespace pydense {
namespace max_unpool {
namespace {

constexpr int kMaxSplits = 16;

using namespace pydense::cuda;

template <typename scalar_t, typename idx_t, typename I>
__global__ void max_unpool2d_gather_kernel(const scalar_t* __restrict__ x,
                                           const idx_t* __restrict__ idx,
                                           scalar_t* __restrict__ out, int* __restrict__ flags,
                                           Strides4<I> xs, Strides4<I> is, Strides4<I> os, I C, I H,
                                           I W, I OH, I OW, CompactGeometry<I> cg,
                                           bool channels_last, I total) {
  const I kh = cg.kh, kw = cg.kw, sh = cg.sh, sw = cg.sw, ph = cg.ph, pw = cg.pw;
  const int64_t plane = int64_t(OH) * OW;
  for (I l = blockIdx.x * I(blockDim.x) + threadIdx.x; l < total; l += I(gridDim.x) * blockDim.x) {
    I n, c, oh, ow;
    decompose(l, C, OH, OW, channels_last, n, c, oh, ow);
    const I ih = window_owner(oh, sh, ph, H);
    const I iw = window_owner(ow, sw, pw, W);
    scalar_t v = scalar_t(0);
    if (ih >= 0 && iw >= 0) {
      const int64_t t = target_of(idx[offset4(n, c, ih, iw, is.v)], ih, iw, cg);
      if (t == int64_t(oh) * OW + ow) {
        v = x[offset4(n, c, ih, iw, xs.v)];
      } else if (!valid_target(t, plane) || !in_window(I(t), OW, ih, iw, kh, kw, sh, sw, ph, pw)) {
        flags[n * C + c] = 1;  // every writer stores the same value
      }
    }
    out[offset4(n, c, oh, ow, os.v)] = v;
  }
}

// Planes are blockIdx.x, splits blockIdx.y; flags == nullptr means every plane.
template <typename scalar_t>
__global__ void max_unpool2d_scatter_init_kernel(scalar_t* __restrict__ out,
                                                 int* __restrict__ winner,
                                                 const int* __restrict__ flags,
                                                 Strides4<int64_t> os, int64_t C, int64_t OH,
                                                 int64_t OW) {
  const int64_t pl = blockIdx.x;
  if (flags != nullptr && flags[pl] == 0) return;
  const int64_t n = pl / C, c = pl % C, plane = OH * OW;
  for (int64_t j = blockIdx.y * int64_t(blockDim.x) + threadIdx.x; j < plane;
       j += int64_t(gridDim.y) * blockDim.x) {
    const int64_t oh = j / OW;
    out[offset4(n, c, oh, j - oh * OW, os.v)] = scalar_t(0);
    winner[pl * plane + j] = -1;
  }
}

template <typename idx_t>
__global__ void max_unpool2d_scatter_argmax_kernel(const idx_t* __restrict__ idx,
                                                   int* __restrict__ winner,
                                                   const int* __restrict__ flags,
                                                   Strides4<int64_t> is, int64_t C, int64_t H,
                                                   int64_t W, int64_t plane,
                                                   CompactGeometry<int64_t> cg) {
  const int64_t pl = blockIdx.x;
  if (flags != nullptr && flags[pl] == 0) return;
  const int64_t n = pl / C, c = pl % C;
  for (int64_t i = blockIdx.y * int64_t(blockDim.x) + threadIdx.x; i < H * W;
       i += int64_t(gridDim.y) * blockDim.x) {
    const int64_t ih = i / W, iw = i - ih * W;
    const int64_t t = target_of(idx[offset4(n, c, ih, iw, is.v)], ih, iw, cg);
    if (valid_target(t, plane)) atomicMax(&winner[pl * plane + t], int(i));
  }
}

template <typename scalar_t, typename idx_t>
__global__ void max_unpool2d_scatter_write_kernel(const scalar_t* __restrict__ x,
                                                  const idx_t* __restrict__ idx,
                                                  scalar_t* __restrict__ out,
                                                  const int* __restrict__ winner,
                                                  const int* __restrict__ flags,
                                                  Strides4<int64_t> xs, Strides4<int64_t> is,
                                                  Strides4<int64_t> os, int64_t C, int64_t H,
                                                  int64_t W, int64_t OW, int64_t plane,
                                                  CompactGeometry<int64_t> cg) {
  const int64_t pl = blockIdx.x;
  if (flags != nullptr && flags[pl] == 0) return;
  const int64_t n = pl / C, c = pl % C;
  for (int64_t i = blockIdx.y * int64_t(blockDim.x) + threadIdx.x; i < H * W;
       i += int64_t(gridDim.y) * blockDim.x) {
    const int64_t ih = i / W, iw = i - ih * W;
    const int64_t t = target_of(idx[offset4(n, c, ih, iw, is.v)], ih, iw, cg);
    if (valid_target(t, plane) && winner[pl * plane + t] == int(i)) {
      const int64_t th = t / OW;
      out[offset4(n, c, th, t - th * OW, os.v)] = x[offset4(n, c, ih, iw, xs.v)];
    }
  }
}

template <typename scalar_t, typename idx_t, typename I>
__global__ void max_unpool2d_bwd_kernel(const scalar_t* __restrict__ go,
                                        const idx_t* __restrict__ idx, scalar_t* __restrict__ gi,
                                        Strides4<I> gs, Strides4<I> is, Strides4<I> xs, I C, I H,
                                        I W, I OW, int64_t plane, CompactGeometry<I> cg,
                                        bool channels_last, I total) {
  for (I l = blockIdx.x * I(blockDim.x) + threadIdx.x; l < total; l += I(gridDim.x) * blockDim.x) {
    I n, c, ih, iw;
    decompose(l, C, H, W, channels_last, n, c, ih, iw);
    const int64_t t = target_of(idx[offset4(n, c, ih, iw, is.v)], ih, iw, cg);
    scalar_t v = scalar_t(0);
    if (valid_target(t, plane)) {
      const I th = I(t) / OW;
      v = go[offset4(n, c, th, I(t) - th * OW, gs.v)];
    }
    gi[offset4(n, c, ih, iw, xs.v)] = v;
  }
}

void forward_cuda(const at::Tensor& input, const at::Tensor& indices, at::IntArrayRef kernel_size,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                  bool gather, const at::Tensor& out) {
  check_forward_args(input, indices, kernel_size, stride, padding, dilation, out);
  const c10::cuda::CUDAGuard guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t OH = out.size(2), OW = out.size(3), plane = OH * OW;
  const int64_t kh = kernel_size[0], kw = kernel_size[1], sh = stride[0], sw = stride[1];
  const int64_t ph = padding[0], pw = padding[1];
  TORCH_CHECK(!gather || gather_ok(H, W, OH, OW, kh, kw, sh, sw, ph, pw),
              "max_unpool2d: gather=True needs kernel_size == stride and windows that meet the output");
  TORCH_CHECK(N * C <= int64_t(INT32_MAX), "max_unpool2d: N*C must be below 2^31");
  if (out.numel() == 0) return;
  const auto xs = strides_of<int64_t>(input), is = strides_of<int64_t>(indices);
  const auto os = strides_of<int64_t>(out);
  const auto cg64 = compact_geometry<int64_t>(kernel_size, stride, padding, dilation, OH, OW);
  const bool narrow = fits_int32({&input, &indices, &out});
  at::Tensor flags;
  if (gather) flags = at::zeros({N * C}, input.options().dtype(at::kInt));
  at::Tensor winner = at::empty({N * C * plane}, input.options().dtype(at::kInt));
  const int* flag_ptr = gather ? flags.const_data_ptr<int>() : nullptr;
  const dim3 plane_grid(unsigned(N * C), unsigned(std::min<int64_t>(
                                             kMaxSplits, std::max<int64_t>(1, (std::max(plane, H * W) + kThreads - 1) / kThreads))));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "max_unpool2d_cuda", [&] {
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    int* win = winner.mutable_data_ptr<int>();
    const auto run = [&](auto idx_zero) {
      using idx_t = decltype(idx_zero);
      const idx_t* idx = indices.const_data_ptr<idx_t>();
      if (gather) {
        const int64_t total = out.numel();
        const auto launch = [&](auto zero) {
          using I = decltype(zero);
          max_unpool2d_gather_kernel<scalar_t, idx_t, I><<<blocks_for(total), kThreads, 0, stream>>>(
              x, idx, o, flags.mutable_data_ptr<int>(), strides_of<I>(input), strides_of<I>(indices),
              strides_of<I>(out), I(C), I(H), I(W), I(OH), I(OW),
              compact_geometry<I>(kernel_size, stride, padding, dilation, OH, OW),
              is_channels_last(out), I(total));
        };
        narrow ? launch(int32_t(0)) : launch(int64_t(0));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      max_unpool2d_scatter_init_kernel<scalar_t><<<plane_grid, kThreads, 0, stream>>>(
          o, win, flag_ptr, os, C, OH, OW);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      max_unpool2d_scatter_argmax_kernel<idx_t><<<plane_grid, kThreads, 0, stream>>>(
          idx, win, flag_ptr, is, C, H, W, plane, cg64);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      max_unpool2d_scatter_write_kernel<scalar_t, idx_t><<<plane_grid, kThreads, 0, stream>>>(
          x, idx, o, win, flag_ptr, xs, is, os, C, H, W, OW, plane, cg64);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    indices.scalar_type() == at::kByte ? run(uint8_t(0)) : run(int64_t(0));
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
  const int64_t C = indices.size(1), H = indices.size(2), W = indices.size(3);
  const int64_t OH = grad_output.size(2), OW = grad_output.size(3), plane = OH * OW;
  const bool narrow = fits_int32({&grad_output, &indices, &grad_input});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), "max_unpool2d_backward_cuda", [&] {
    const auto launch = [&](auto zero, auto idx_zero) {
      using I = decltype(zero);
      using idx_t = decltype(idx_zero);
      max_unpool2d_bwd_kernel<scalar_t, idx_t, I><<<blocks_for(total), kThreads, 0, stream>>>(
          grad_output.const_data_ptr<scalar_t>(), indices.const_data_ptr<idx_t>(),
          grad_input.mutable_data_ptr<scalar_t>(), strides_of<I>(grad_output),
          strides_of<I>(indices), strides_of<I>(grad_input), I(C), I(H), I(W), I(OW), plane,
          compact_geometry<I>(kernel_size, stride, padding, dilation, OH, OW),
          is_channels_last(grad_input), I(total));
    };
    if (indices.scalar_type() == at::kByte)
      narrow ? launch(int32_t(0), uint8_t(0)) : launch(int64_t(0), uint8_t(0));
    else
      narrow ? launch(int32_t(0), int64_t(0)) : launch(int64_t(0), int64_t(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace max_unpool
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CUDA, m) {
  m.impl("_max_unpool2d_fwd", &pydense::max_unpool::forward_cuda);
  m.impl("_max_unpool2d_bwd", &pydense::max_unpool::backward_cuda);
}
