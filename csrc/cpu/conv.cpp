// CPU kernels of the direct 2-D convolution: forward with the fused epilogue (optionally into the
// pixel-shuffled layout), input gradient (a gather: each input element sums the taps that reach
// it) and weight gradient (each weight element sums its positions in row-major order:
// deterministic). Used by the cpu backend for
// depthwise and small-group convolutions (see pydense/ops/conv.py). The arithmetic is
// csrc/common/conv.h, shared with the CUDA kernels. Loops run in the written tensor's memory
// order (channels innermost for channels_last).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "../common/conv.h"
#include "../common/conv_checks.h"
#include "../common/cpu_loops.h"

namespace pydense {
namespace conv {
namespace {

using cpu::for_each_element;

void forward_cpu(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                 const c10::optional<at::Tensor>& residual, at::IntArrayRef stride,
                 at::IntArrayRef padding, at::IntArrayRef dilation, bool relu, double scale,
                 int64_t shuffle, const at::Tensor& out) {
  const Geometry<int64_t> G =
      check_forward(x, w, bias, residual, stride, padding, dilation, shuffle, out);
  if (out.numel() == 0) return;
  const auto xs = strides_of<int64_t>(x), ws = strides_of<int64_t>(w), os = strides_of<int64_t>(out);
  const auto rs = residual ? strides_of<int64_t>(*residual) : os;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "conv2d_fwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* bp = bias ? bias->const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* rp = residual ? residual->const_data_ptr<scalar_t>() : nullptr;
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    // (c, yh, yw): out's coordinates, the convolution's (oc, oh, ow) unless shuffled
    for_each_element(out, [&](int64_t n, int64_t c, int64_t yh, int64_t yw) {
      int64_t oc, oh, ow;
      shuffled_source(shuffle, c, yh, yw, oc, oh, ow);
      const acc_t acc = forward_sum<acc_t>(xp, wp, xs, ws, G, n, oc, oh, ow);
      const acc_t r = rp ? acc_t(rp[n * rs.v[0] + c * rs.v[1] + yh * rs.v[2] + yw * rs.v[3]]) : acc_t(0);
      o[n * os.v[0] + c * os.v[1] + yh * os.v[2] + yw * os.v[3]] =
          scalar_t(epilogue<acc_t>(acc, bp ? acc_t(bp[oc]) : acc_t(0), relu, acc_t(scale), r));
    });
  });
}

void dgrad_cpu(const at::Tensor& gy, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
               at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
               const at::Tensor& gx) {
  const Geometry<int64_t> G = check_dgrad(gy, w, bias, stride, padding, dilation, gx);
  if (gx.numel() == 0) return;
  const auto gs = strides_of<int64_t>(gy), ws = strides_of<int64_t>(w), xs = strides_of<int64_t>(gx);
  const auto th = tap_axis<int64_t>(G.sh, G.dh), tw = tap_axis<int64_t>(G.sw, G.dw);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gy.scalar_type(), "conv2d_dgrad_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* gp = gy.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* bp = bias ? bias->const_data_ptr<scalar_t>() : nullptr;
    scalar_t* o = gx.mutable_data_ptr<scalar_t>();
    for_each_element(gx, [&](int64_t n, int64_t c, int64_t ih, int64_t iw) {
      const acc_t acc = dgrad_sum<acc_t>(gp, wp, gs, ws, G, th, tw, n, c, ih, iw);
      o[n * xs.v[0] + c * xs.v[1] + ih * xs.v[2] + iw * xs.v[3]] = scalar_t(acc + (bp ? acc_t(bp[c]) : acc_t(0)));
    });
  });
}

void wgrad_cpu(const at::Tensor& gy, const at::Tensor& x, at::IntArrayRef stride,
               at::IntArrayRef padding, at::IntArrayRef dilation, const at::Tensor& gw) {
  const Geometry<int64_t> G = check_wgrad(gy, x, stride, padding, dilation, gw);
  if (gw.numel() == 0) return;
  const auto gs = strides_of<int64_t>(gy), xs = strides_of<int64_t>(x), ws = strides_of<int64_t>(gw);
  const int64_t P = gy.size(0) * G.OH * G.OW;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gy.scalar_type(), "conv2d_wgrad_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* gp = gy.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* o = gw.mutable_data_ptr<scalar_t>();
    const int64_t taps = G.KH * G.KW;
    at::parallel_for(0, G.OC * G.Cg * taps, 1, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const int64_t tap = e % taps, kh = tap / G.KW, kw = tap % G.KW;
        const int64_t c = (e / taps) % G.Cg, oc = e / (taps * G.Cg);
        const int64_t c_abs = (oc / G.OCg) * G.Cg + c;
        acc_t acc = 0;
        for (int64_t p = 0; p < P; ++p) acc += wgrad_term<acc_t>(gp, xp, gs, xs, G, oc, c_abs, kh, kw, p);
        o[oc * ws.v[0] + c * ws.v[1] + kh * ws.v[2] + kw * ws.v[3]] = scalar_t(acc);
      }
    });
  });
}

}  // namespace
}  // namespace conv
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CPU, m) {
  m.impl("_conv2d_fwd", &pydense::conv::forward_cpu);
  m.impl("_conv2d_dgrad", &pydense::conv::dgrad_cpu);
  m.impl("_conv2d_wgrad", &pydense::conv::wgrad_cpu);
}
