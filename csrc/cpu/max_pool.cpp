// CPU kernels of max_pool2d_with_indices: forward (ATen's max and index rule) and the backward
// as a deterministic gather over the input. Index math: csrc/common/max_pool.h.
//
// Loop order follows the memory format: rows (n, c, h) with w innermost for NCHW; positions
// (n, h, w) with channels innermost for channels_last. Indices are int64 (flat ih * W + iw) or
// uint8 (compact kh * KW + kw), chosen by the indices tensor's dtype.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <limits>
#include <type_traits>
#include <vector>

#include "../common/max_pool.h"
#include "../common/max_pool_checks.h"

namespace pydense {
namespace max_pool {
namespace {

struct Geometry {
  int64_t N, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw;
  int64_t xs[4], os[4], is[4];
};

Geometry geometry(const at::Tensor& x, const at::Tensor& out, const at::Tensor& idx,
                  at::IntArrayRef k, at::IntArrayRef s, at::IntArrayRef p, at::IntArrayRef d) {
  Geometry g{x.size(0), x.size(1), x.size(2), x.size(3), out.size(2), out.size(3),
             k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], {}, {}, {}};
  for (int i = 0; i < 4; ++i) {
    g.xs[i] = x.stride(i);
    g.os[i] = out.stride(i);
    g.is[i] = idx.stride(i);
  }
  return g;
}

// Runs f(n, c, h, w) over an N x C x H x W grid in parallel, channels innermost if asked.
template <typename F>
void for_each(int64_t N, int64_t C, int64_t H, int64_t W, bool channels_inner, const F& f) {
  if (channels_inner) {
    at::parallel_for(0, N * H * W, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t w = r % W, h = (r / W) % H, n = r / (W * H);
        for (int64_t c = 0; c < C; ++c) f(n, c, h, w);
      }
    });
  } else {
    at::parallel_for(0, N * C * H, 1, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t h = r % H, c = (r / H) % C, n = r / (H * C);
        for (int64_t w = 0; w < W; ++w) f(n, c, h, w);
      }
    });
  }
}

template <typename scalar_t, typename idx_t>
void forward_impl(const at::Tensor& input, const at::Tensor& out, const at::Tensor& indices,
                  const Geometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool compact = std::is_same_v<idx_t, uint8_t>;
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  scalar_t* o = out.mutable_data_ptr<scalar_t>();
  idx_t* ix = indices.mutable_data_ptr<idx_t>();
  const bool channels_inner = g.os[1] == 1 && g.C > 1;
  for_each(g.N, g.C, g.OH, g.OW, channels_inner, [&](int64_t n, int64_t c, int64_t oh, int64_t ow) {
    const int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
    const int64_t hf = first_tap(h0, g.dh), wf = first_tap(w0, g.dw);
    int64_t arg = compact ? ((hf - h0) / g.dh) * g.kw + (wf - w0) / g.dw : hf * g.W + wf;
    acc_t best = -std::numeric_limits<acc_t>::infinity();
    const scalar_t* xp = x + n * g.xs[0] + c * g.xs[1];
    for (int64_t kh = 0; kh < g.kh; ++kh) {
      const int64_t ih = h0 + kh * g.dh;
      if (ih < 0 || ih >= g.H) continue;
      for (int64_t kw = 0; kw < g.kw; ++kw) {
        const int64_t iw = w0 + kw * g.dw;
        if (iw < 0 || iw >= g.W) continue;
        const acc_t v = acc_t(xp[ih * g.xs[2] + iw * g.xs[3]]);
        if (v > best || is_nan(v)) {
          best = v;
          arg = compact ? kh * g.kw + kw : ih * g.W + iw;
        }
      }
    }
    o[n * g.os[0] + c * g.os[1] + oh * g.os[2] + ow * g.os[3]] = scalar_t(best);
    ix[n * g.is[0] + c * g.is[1] + oh * g.is[2] + ow * g.is[3]] = idx_t(arg);
  });
}

template <typename scalar_t, typename idx_t>
void backward_impl(const at::Tensor& grad_output, const at::Tensor& indices,
                   const at::Tensor& grad_input, const Geometry& g) {
  // g: xs = grad_input's strides, os = grad_output's, is = the indices'.
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool compact = std::is_same_v<idx_t, uint8_t>;
  const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
  const idx_t* ix = indices.const_data_ptr<idx_t>();
  scalar_t* gi = grad_input.mutable_data_ptr<scalar_t>();
  const bool channels_inner = g.xs[1] == 1 && g.C > 1;
  for_each(g.N, g.C, g.H, g.W, channels_inner, [&](int64_t n, int64_t c, int64_t ih, int64_t iw) {
    acc_t acc = acc_t(0);
    const scalar_t* gp = go + n * g.os[0] + c * g.os[1];
    const idx_t* ip = ix + n * g.is[0] + c * g.is[1];
    for (int64_t kh = 0; kh < g.kh; ++kh) {
      const int64_t oh = window_of_tap(ih, kh, g.sh, g.ph, g.dh, g.OH);
      if (oh < 0) continue;
      for (int64_t kw = 0; kw < g.kw; ++kw) {
        const int64_t ow = window_of_tap(iw, kw, g.sw, g.pw, g.dw, g.OW);
        if (ow < 0) continue;
        const int64_t want = compact ? kh * g.kw + kw : ih * g.W + iw;
        if (int64_t(ip[oh * g.is[2] + ow * g.is[3]]) == want)
          acc += acc_t(gp[oh * g.os[2] + ow * g.os[3]]);
      }
    }
    gi[n * g.xs[0] + c * g.xs[1] + ih * g.xs[2] + iw * g.xs[3]] = scalar_t(acc);
  });
}

void forward_cpu(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                 at::IntArrayRef padding, at::IntArrayRef dilation, const at::Tensor& out,
                 const at::Tensor& indices) {
  check_forward_args(input, kernel_size, stride, padding, dilation, out, indices);
  if (out.numel() == 0) return;
  const Geometry g = geometry(input, out, indices, kernel_size, stride, padding, dilation);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "max_pool2d_cpu", [&] {
    if (indices.scalar_type() == at::kByte)
      forward_impl<scalar_t, uint8_t>(input, out, indices, g);
    else
      forward_impl<scalar_t, int64_t>(input, out, indices, g);
  });
}

void backward_cpu(const at::Tensor& grad_output, const at::Tensor& indices,
                  at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                  at::IntArrayRef dilation, const at::Tensor& grad_input) {
  check_backward_args(grad_output, indices, kernel_size, stride, padding, dilation, grad_input);
  if (grad_input.numel() == 0) return;
  const Geometry g = geometry(grad_input, grad_output, indices, kernel_size, stride, padding, dilation);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), "max_pool2d_backward_cpu", [&] {
    if (indices.scalar_type() == at::kByte)
      backward_impl<scalar_t, uint8_t>(grad_output, indices, grad_input, g);
    else
      backward_impl<scalar_t, int64_t>(grad_output, indices, grad_input, g);
  });
}

}  // namespace
}  // namespace max_pool
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CPU, m) {
  m.impl("_max_pool2d_fwd", &pydense::max_pool::forward_cpu);
  m.impl("_max_pool2d_bwd", &pydense::max_pool::backward_cpu);
}
