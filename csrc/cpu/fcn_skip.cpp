// CPU kernels of the fused FCN skip (bilinear deconvolution + cropped, scaled, optionally
// 1x1-scored skip, one pass) and of its skip gradient. Arithmetic: csrc/common/fcn_skip.h, shared
// with the CUDA kernels. Loops run in the written tensor's memory order.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "../common/cpu_loops.h"
#include "../common/fcn_skip.h"
#include "../common/fcn_skip_checks.h"

namespace pydense {
namespace fcn_skip {
namespace {

using cpu::for_each_element;

void forward_cpu(const at::Tensor& coarse, const at::Tensor& skip, const c10::optional<at::Tensor>& weight,
                 const c10::optional<at::Tensor>& bias, const at::Tensor& h_idx, const at::Tensor& h_lam,
                 const at::Tensor& w_idx, const at::Tensor& w_lam, at::IntArrayRef offset,
                 double skip_scale, const at::Tensor& out) {
  check_forward(coarse, skip, weight, bias, h_idx, h_lam, w_idx, w_lam, offset, out);
  if (out.numel() == 0) return;
  const auto cs = strides_of<int64_t>(coarse), ss = strides_of<int64_t>(skip), os = strides_of<int64_t>(out);
  const int64_t OH = out.size(2), OW = out.size(3), CS = skip.size(1), off_h = offset[0], off_w = offset[1];
  const int64_t CH = coarse.size(2), CW = coarse.size(3);
  const int64_t ws0 = weight ? weight->stride(0) : 0, ws1 = weight ? weight->stride(1) : 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, coarse.scalar_type(), "fcn_skip_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* c = coarse.const_data_ptr<scalar_t>();
    const scalar_t* s = skip.const_data_ptr<scalar_t>();
    const scalar_t* w = weight ? weight->const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* b = bias ? bias->const_data_ptr<scalar_t>() : nullptr;
    const int32_t* hi = h_idx.const_data_ptr<int32_t>();
    const int32_t* wi = w_idx.const_data_ptr<int32_t>();
    const acc_t* hl = h_lam.const_data_ptr<acc_t>();
    const acc_t* wl = w_lam.const_data_ptr<acc_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    for_each_element(out, [&](int64_t n, int64_t k, int64_t oh, int64_t ow) {
      const scalar_t* px = s + n * ss.v[0] + (oh + off_h) * ss.v[2] + (ow + off_w) * ss.v[3];
      o[n * os.v[0] + k * os.v[1] + oh * os.v[2] + ow * os.v[3]] = scalar_t(forward_value<acc_t>(
          c + n * cs.v[0] + k * cs.v[1], CH, CW, cs.v[2], cs.v[3], px, ss.v[1], w, ws0, ws1, b, CS, k, oh,
          ow, hi, hl, wi, wl, OH, OW, acc_t(skip_scale)));
    });
  });
}

void backward_cpu(const at::Tensor& grad_output, const c10::optional<at::Tensor>& weight,
                  at::IntArrayRef offset, double skip_scale, const at::Tensor& grad_skip) {
  check_backward(grad_output, weight, offset, grad_skip);
  if (grad_skip.numel() == 0) return;
  const auto gs = strides_of<int64_t>(grad_output), xs = strides_of<int64_t>(grad_skip);
  const int64_t K = grad_output.size(1), OH = grad_output.size(2), OW = grad_output.size(3);
  const int64_t ws0 = weight ? weight->stride(0) : 0, ws1 = weight ? weight->stride(1) : 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), "fcn_skip_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* g = grad_output.const_data_ptr<scalar_t>();
    const scalar_t* w = weight ? weight->const_data_ptr<scalar_t>() : nullptr;
    scalar_t* gx = grad_skip.mutable_data_ptr<scalar_t>();
    for_each_element(grad_skip, [&](int64_t n, int64_t c, int64_t h, int64_t wp) {
      gx[n * xs.v[0] + c * xs.v[1] + h * xs.v[2] + wp * xs.v[3]] = scalar_t(skip_grad_value<acc_t>(
          g + n * gs.v[0], gs, w, ws0, ws1, K, c, h, wp, offset[0], offset[1], OH, OW, acc_t(skip_scale)));
    });
  });
}

}  // namespace
}  // namespace fcn_skip
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CPU, m) {
  m.impl("_fcn_skip_fwd", &pydense::fcn_skip::forward_cpu);
  m.impl("_fcn_skip_bwd", &pydense::fcn_skip::backward_cpu);
}
