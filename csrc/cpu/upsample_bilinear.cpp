// CPU kernels of bilinear upsampling: forward gather, backward gather over the input (no
// scatter, fixed order: deterministic). Arithmetic: csrc/common/upsample_bilinear.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/cpu_loops.h"
#include "../common/upsample_bilinear.h"
#include "../common/upsample_bilinear_checks.h"

namespace pydense {
namespace upsample_bilinear {
namespace {

// Output channels c < CX are upsampled from input; with a skip tensor, channels c >= CX copy
// skip[:, c - CX] (the fused UNet concat).
void forward_cpu(const at::Tensor& input, const c10::optional<at::Tensor>& skip,
                 const at::Tensor& h_idx, const at::Tensor& h_lam, const at::Tensor& w_idx,
                 const at::Tensor& w_lam, const at::Tensor& out) {
  check_forward(input, skip, h_idx, h_lam, w_idx, w_lam, out);
  const int64_t OH = out.size(2), OW = out.size(3), CX = input.size(1), H = input.size(2),
                W = input.size(3);
  if (out.numel() == 0) return;
  const int32_t* hi = h_idx.const_data_ptr<int32_t>();
  const int32_t* wi = w_idx.const_data_ptr<int32_t>();
  const int64_t xs0 = input.stride(0), xs1 = input.stride(1), xs2 = input.stride(2), xs3 = input.stride(3);
  const int64_t os0 = out.stride(0), os1 = out.stride(1), os2 = out.stride(2), os3 = out.stride(3);
  const at::Tensor& sk = skip ? *skip : input;
  const int64_t ss0 = sk.stride(0), ss1 = sk.stride(1), ss2 = sk.stride(2), ss3 = sk.stride(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "upsample_bilinear2d_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* hl = h_lam.const_data_ptr<acc_t>();
    const acc_t* wl = w_lam.const_data_ptr<acc_t>();
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    const scalar_t* s = sk.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const auto one = [&](int64_t n, int64_t c, int64_t oh, int64_t ow) {
      if (c >= CX) {
        o[n * os0 + c * os1 + oh * os2 + ow * os3] = s[n * ss0 + (c - CX) * ss1 + oh * ss2 + ow * ss3];
        return;
      }
      o[n * os0 + c * os1 + oh * os2 + ow * os3] = scalar_t(gather<acc_t>(
          x + n * xs0 + c * xs1, H, W, xs2, xs3, hi, hl, wi, wl, OH, OW, oh, ow));
    };
    cpu::for_each_element(out, one);
  });
}

void backward_cpu(const at::Tensor& grad_output, const at::Tensor& h_idx, const at::Tensor& h_lam,
                  const at::Tensor& h_rng, const at::Tensor& w_idx, const at::Tensor& w_lam,
                  const at::Tensor& w_rng, const at::Tensor& grad_input) {
  check_backward(grad_output, h_idx, h_lam, h_rng, w_idx, w_lam, w_rng, grad_input);
  const int64_t N = grad_input.size(0), C = grad_input.size(1), H = grad_input.size(2),
                W = grad_input.size(3), OH = grad_output.size(2), OW = grad_output.size(3);
  if (grad_input.numel() == 0) return;
  const int32_t* hi = h_idx.const_data_ptr<int32_t>();
  const int32_t* wi = w_idx.const_data_ptr<int32_t>();
  const int32_t* hr = h_rng.const_data_ptr<int32_t>();
  const int32_t* wr = w_rng.const_data_ptr<int32_t>();
  const int64_t gs0 = grad_output.stride(0), gs1 = grad_output.stride(1),
                gs2 = grad_output.stride(2), gs3 = grad_output.stride(3);
  const int64_t xs0 = grad_input.stride(0), xs1 = grad_input.stride(1),
                xs2 = grad_input.stride(2), xs3 = grad_input.stride(3);
  // The channels-innermost path needs unit channel strides on both sides.
  const bool channels_last = xs1 == 1 && gs1 == 1 && C > 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), "upsample_bilinear2d_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* hl = h_lam.const_data_ptr<acc_t>();
    const acc_t* wl = w_lam.const_data_ptr<acc_t>();
    const scalar_t* g = grad_output.const_data_ptr<scalar_t>();
    scalar_t* gi = grad_input.mutable_data_ptr<scalar_t>();
    const auto one = [&](int64_t n, int64_t c, int64_t ih, int64_t iw) {
      const scalar_t* p = g + n * gs0 + c * gs1;
      acc_t acc = 0;
      int64_t h_lo, h_hi, w_lo, w_hi;
      out_range(hr, ih, H, OH, h_lo, h_hi);
      out_range(wr, iw, W, OW, w_lo, w_hi);
      for (int64_t oh = h_lo; oh < h_hi; ++oh) {
        acc_t row = 0;
        for (int64_t ow = w_lo; ow < w_hi; ++ow)
          row += tap_weight(ow, iw, wi, wl, OW) * acc_t(p[oh * gs2 + ow * gs3]);
        acc += tap_weight(oh, ih, hi, hl, OH) * row;
      }
      gi[n * xs0 + c * xs1 + ih * xs2 + iw * xs3] = scalar_t(acc);
    };
    if (channels_last) {
      // Channels innermost: each stencil element is one contiguous run of C gradients. Same
      // summation nesting as one() (row sums over ow, then weighted by wh), so same results.
      at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
        std::vector<acc_t> acc(C), row(C);
        for (int64_t r = begin; r < end; ++r) {
          const int64_t n = r / H, ih = r % H;
          for (int64_t iw = 0; iw < W; ++iw) {
            std::fill(acc.begin(), acc.end(), acc_t(0));
            int64_t h_lo, h_hi, w_lo, w_hi;
            out_range(hr, ih, H, OH, h_lo, h_hi);
            out_range(wr, iw, W, OW, w_lo, w_hi);
            for (int64_t oh = h_lo; oh < h_hi; ++oh) {
              std::fill(row.begin(), row.end(), acc_t(0));
              for (int64_t ow = w_lo; ow < w_hi; ++ow) {
                const acc_t ww = tap_weight(ow, iw, wi, wl, OW);
                const scalar_t* p = g + n * gs0 + oh * gs2 + ow * gs3;
                for (int64_t c = 0; c < C; ++c) row[c] += ww * acc_t(p[c]);
              }
              const acc_t wh = tap_weight(oh, ih, hi, hl, OH);
              for (int64_t c = 0; c < C; ++c) acc[c] += wh * row[c];
            }
            scalar_t* q = gi + n * xs0 + ih * xs2 + iw * xs3;
            for (int64_t c = 0; c < C; ++c) q[c] = scalar_t(acc[c]);
          }
        }
      });
    } else {
      at::parallel_for(0, N * C * H, 1, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r)
          for (int64_t iw = 0; iw < W; ++iw) one(r / (C * H), (r / H) % C, r % H, iw);
      });
    }
  });
}

}  // namespace
}  // namespace upsample_bilinear
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CPU, m) {
  m.impl("_upsample_bilinear2d_fwd", &pydense::upsample_bilinear::forward_cpu);
  m.impl("_upsample_bilinear2d_bwd", &pydense::upsample_bilinear::backward_cpu);
}
