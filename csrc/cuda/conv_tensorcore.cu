// Dense/grouped 2-D convolution forward on tensor cores (fp16/bf16, sm_80+): a hand-written
// implicit GEMM with WMMA (mma.sync underneath).
//
// Why WMMA and not CUTLASS: the extension must compile in CI on 2 cores within its time budget and
// without extra downloads; one small WMMA kernel adds seconds of nvcc time, a CUTLASS implicit-GEMM
// instantiation adds minutes and a header dependency. Peak-speed dense convolutions are the Triton
// backend's job (autotuned tiles, wgmma on sm_90); this kernel gives the CUDA backend a
// tensor-core path for dense convolutions instead of the direct kernel's scalar loops.
//
// GEMM per group g: M = N*OH*OW output positions, N = OCg output channels, K = Cg*KH*KW. A block
// computes a BM x BN tile with 4 warps (each 32x32 = 2x2 WMMA 16x16x16 fragments, fp32
// accumulators); K runs tap by tap (kh, kw) and, inside a tap, over BK-channel blocks: the A
// tile is gathered from the input at the tap's shifted position (zero outside the image), the B
// tile from the weight. The epilogue (bias, ReLU, scale, residual: csrc/common/conv.h) runs in
// fp32 from a shared-memory staging tile, written in the output's memory order (into the pixel
// shuffle of the output when asked: csrc/common/conv.h shuffled_target).
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "../common/conv.h"
#include "../common/cuda_launch.cuh"
#include "conv_tensorcore.h"

namespace pydense {
namespace conv {
namespace {

using namespace pydense::cuda;
using namespace nvcuda;

constexpr int BM = 64, BN = 64, BK = 32, THREADS = 128;
constexpr int A_LD = BK + 8, B_LD = BN + 8, C_LD = BN + 4;  // padded rows: fewer bank conflicts

template <typename scalar_t>
struct Native;
template <>
struct Native<c10::Half> {
  using type = __half;
  static __device__ __half zero() { return __float2half(0.0f); }
};
template <>
struct Native<c10::BFloat16> {
  using type = __nv_bfloat16;
  static __device__ __nv_bfloat16 zero() { return __float2bfloat16(0.0f); }
};

template <typename scalar_t, typename I>
__global__ void __launch_bounds__(THREADS)
conv2d_fwd_tensorcore_kernel(const scalar_t* __restrict__ x_, const scalar_t* __restrict__ w_,
                             const scalar_t* __restrict__ bias, const scalar_t* __restrict__ res,
                             scalar_t* __restrict__ out, Strides4<I> xs, Strides4<I> ws,
                             Strides4<I> rs, Strides4<I> os, Geometry<I> G, I M, bool relu,
                             float scale, I shuffle, bool channels_last) {
  using T = typename Native<scalar_t>::type;
  const T* x = reinterpret_cast<const T*>(x_);
  const T* w = reinterpret_cast<const T*>(w_);
  __shared__ __align__(32) T As[BM * A_LD];
  __shared__ __align__(32) T Bs[BK * B_LD];
  __shared__ __align__(32) float Cs[BM * C_LD];

  const I g = blockIdx.z, m0 = I(blockIdx.x) * BM, n0 = I(blockIdx.y) * BN;
  const int t = threadIdx.x, warp = t / 32;
  const int wm = warp / 2, wn = warp % 2;
  // A loads: thread t fills row ar, channels [ak, ak + 16) of the tile.
  const int ar = t / 2, ak = (t % 2) * 16;
  const I m = m0 + ar;
  const bool m_ok = m < M;
  const I ow = m_ok ? m % G.OW : 0, q = m_ok ? m / G.OW : 0, oh = q % G.OH, n = q / G.OH;
  // B loads: thread t fills weight row (channel) bk, output channels [bn, bn + 16).
  const int bk = t / 4, bn = (t % 4) * 16;
  const T zero = Native<scalar_t>::zero();

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (I kh = 0; kh < G.KH; ++kh) {
    const I ih = oh * G.sh - G.ph + kh * G.dh;
    for (I kw = 0; kw < G.KW; ++kw) {
      const I iw = ow * G.sw - G.pw + kw * G.dw;
      const bool row_ok = m_ok && ih >= 0 && ih < G.H && iw >= 0 && iw < G.W;
      const T* xrow = x + (row_ok ? n * xs.v[0] + ih * xs.v[2] + iw * xs.v[3] : 0);
      for (I c0 = 0; c0 < G.Cg; c0 += BK) {
#pragma unroll
        for (int k = 0; k < 16; ++k) {
          const I c = c0 + ak + k;
          As[ar * A_LD + ak + k] = (row_ok && c < G.Cg) ? xrow[(g * G.Cg + c) * xs.v[1]] : zero;
        }
        const I c = c0 + bk;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          const I oc = n0 + bn + j;
          Bs[bk * B_LD + bn + j] = (c < G.Cg && oc < G.OCg)
              ? w[(g * G.OCg + oc) * ws.v[0] + c * ws.v[1] + kh * ws.v[2] + kw * ws.v[3]]
              : zero;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b[2];
#pragma unroll
          for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], As + (wm * 32 + i * 16) * A_LD + kk, A_LD);
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], Bs + kk * B_LD + wn * 32 + j * 16, B_LD);
#pragma unroll
          for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wm * 32 + i * 16) * C_LD + wn * 32 + j * 16, acc[i][j], C_LD,
                              wmma::mem_row_major);
  __syncthreads();
  // Epilogue in the output's memory order: channels fastest for channels_last, else positions.
  // (c, yh, yw): the output coordinates of (ocg, ohh, oww), pixel-shuffled for shuffle > 1.
  for (int e = t; e < BM * BN; e += THREADS) {
    const int r = channels_last ? e / BN : e % BM, cc = channels_last ? e % BN : e / BM;
    const I mm = m0 + r, oc = n0 + cc;
    if (mm >= M || oc >= G.OCg) continue;
    const I oww = mm % G.OW, qq = mm / G.OW, ohh = qq % G.OH, nn = qq / G.OH, ocg = g * G.OCg + oc;
    I c, yh, yw;
    shuffled_target(shuffle, ocg, ohh, oww, c, yh, yw);
    const float rv = res ? float(res[nn * rs.v[0] + c * rs.v[1] + yh * rs.v[2] + yw * rs.v[3]]) : 0.0f;
    out[nn * os.v[0] + c * os.v[1] + yh * os.v[2] + yw * os.v[3]] = scalar_t(
        epilogue<float>(Cs[r * C_LD + cc], bias ? float(bias[ocg]) : 0.0f, relu, scale, rv));
  }
}

}  // namespace

bool tensorcore_eligible(const at::Tensor& x, const at::Tensor& w) {
  const auto dt = x.scalar_type();
  return (dt == at::kHalf || dt == at::kBFloat16) && w.size(1) >= 16 && w.size(0) / (x.size(1) / w.size(1)) >= 16;
}

void forward_tensorcore(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                        const c10::optional<at::Tensor>& residual, const Geometry<int64_t>& G,
                        bool relu, double scale, int64_t shuffle, const at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor& r = residual ? *residual : out;
  const int64_t M = out.size(0) * G.OH * G.OW, groups = G.C / G.Cg;
  TORCH_CHECK((M + BM - 1) / BM < (int64_t(1) << 31) && (G.OCg + BN - 1) / BN < 65536 && groups < 65536,
              "_conv2d_fwd: problem too large for the tensor-core grid");
  const dim3 grid(unsigned((M + BM - 1) / BM), unsigned((G.OCg + BN - 1) / BN), unsigned(groups));
  const bool small = fits_int32({&x, &w, &out, &r});
  const auto run = [&](auto scalar) {
    using scalar_t = decltype(scalar);
    const auto launch = [&](auto zero) {
      using I = decltype(zero);
      conv2d_fwd_tensorcore_kernel<scalar_t, I><<<grid, THREADS, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
          bias ? bias->const_data_ptr<scalar_t>() : nullptr,
          residual ? residual->const_data_ptr<scalar_t>() : nullptr, out.mutable_data_ptr<scalar_t>(),
          strides_of<I>(x), strides_of<I>(w), strides_of<I>(r), strides_of<I>(out),
          narrow_geometry<I>(G), I(M), relu, float(scale), I(shuffle), is_channels_last(out));
    };
    small ? launch(int32_t(0)) : launch(int64_t(0));
  };
  if (x.scalar_type() == at::kHalf)
    run(c10::Half());
  else
    run(c10::BFloat16());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace conv
}  // namespace pydense
