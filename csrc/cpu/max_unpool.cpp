// CPU kernels of max_unpool2d (forward gather / deterministic scatter, backward gather).
// Index math: csrc/common/max_unpool.h, the same functions the CUDA kernels call.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "../common/max_unpool.h"
#include "../common/max_unpool_checks.h"

namespace pydense {
namespace max_unpool {
namespace {

[[noreturn]] void bad_index(int64_t t, int64_t oh, int64_t ow, int64_t n, int64_t c, int64_t h,
                            int64_t w) {
  TORCH_CHECK_INDEX(false, "max_unpool2d: indices must lie in [0, ", oh * ow, ") (output plane ", oh,
                    "x", ow, "); found ", t, " at indices[", n, ", ", c, ", ", h, ", ", w, "]");
}

template <typename scalar_t>
void forward_plane(const scalar_t* x, const int64_t* idx, scalar_t* out, int64_t n, int64_t c,
                   const int64_t* xs, const int64_t* is, const int64_t* os, int64_t H, int64_t W,
                   int64_t OH, int64_t OW, const int64_t* k, const int64_t* s, const int64_t* p,
                   bool gather) {
  const int64_t plane = OH * OW;
  if (gather) {
    bool redo = false;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t ih = window_owner(oh, s[0], p[0], H);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t iw = window_owner(ow, s[1], p[1], W);
        scalar_t v = scalar_t(0);
        if (ih >= 0 && iw >= 0) {
          const int64_t t = idx[offset4(n, c, ih, iw, is)];
          if (!valid_target(t, plane)) bad_index(t, OH, OW, n, c, ih, iw);
          if (t == oh * OW + ow) {
            v = x[offset4(n, c, ih, iw, xs)];
          } else if (!in_window(t, OW, ih, iw, k[0], k[1], s[0], s[1], p[0], p[1])) {
            redo = true;
          }
        }
        out[offset4(n, c, oh, ow, os)] = v;
      }
    }
    if (!redo) return;
  }
  // Scatter in the input plane's row-major order: the later element wins a duplicate target.
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow) out[offset4(n, c, oh, ow, os)] = scalar_t(0);
  for (int64_t ih = 0; ih < H; ++ih) {
    for (int64_t iw = 0; iw < W; ++iw) {
      const int64_t t = idx[offset4(n, c, ih, iw, is)];
      if (!valid_target(t, plane)) bad_index(t, OH, OW, n, c, ih, iw);
      const int64_t th = t / OW;
      out[offset4(n, c, th, t - th * OW, os)] = x[offset4(n, c, ih, iw, xs)];
    }
  }
}

void forward_cpu(const at::Tensor& input, const at::Tensor& indices, at::IntArrayRef kernel_size,
                 at::IntArrayRef stride, at::IntArrayRef padding, bool gather, const at::Tensor& out) {
  check_forward_args(input, indices, kernel_size, stride, padding, out);
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t OH = out.size(2), OW = out.size(3);
  TORCH_CHECK(!gather || gather_ok(H, W, OH, OW, kernel_size[0], kernel_size[1], stride[0],
                                   stride[1], padding[0], padding[1]),
              "max_unpool2d: gather=True needs kernel_size == stride and windows that meet the output");
  const int64_t xs[4] = {input.stride(0), input.stride(1), input.stride(2), input.stride(3)};
  const int64_t is[4] = {indices.stride(0), indices.stride(1), indices.stride(2), indices.stride(3)};
  const int64_t os[4] = {out.stride(0), out.stride(1), out.stride(2), out.stride(3)};
  const int64_t k[2] = {kernel_size[0], kernel_size[1]};
  const int64_t s[2] = {stride[0], stride[1]};
  const int64_t p[2] = {padding[0], padding[1]};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "max_unpool2d_cpu", [&] {
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    const int64_t* idx = indices.const_data_ptr<int64_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc)
        forward_plane(x, idx, o, nc / C, nc % C, xs, is, os, H, W, OH, OW, k, s, p, gather);
    });
  });
}

void backward_cpu(const at::Tensor& grad_output, const at::Tensor& indices,
                  const at::Tensor& grad_input) {
  check_backward_args(grad_output, indices, grad_input);
  const int64_t C = indices.size(1), H = indices.size(2), W = indices.size(3);
  const int64_t OH = grad_output.size(2), OW = grad_output.size(3), plane = OH * OW;
  const int64_t gs[4] = {grad_output.stride(0), grad_output.stride(1), grad_output.stride(2),
                         grad_output.stride(3)};
  const int64_t is[4] = {indices.stride(0), indices.stride(1), indices.stride(2), indices.stride(3)};
  const int64_t xs[4] = {grad_input.stride(0), grad_input.stride(1), grad_input.stride(2),
                         grad_input.stride(3)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), "max_unpool2d_backward_cpu", [&] {
    const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
    const int64_t* idx = indices.const_data_ptr<int64_t>();
    scalar_t* gi = grad_input.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, indices.size(0) * C, 1, [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc) {
        const int64_t n = nc / C, c = nc % C;
        for (int64_t ih = 0; ih < H; ++ih)
          for (int64_t iw = 0; iw < W; ++iw) {
            const int64_t t = idx[offset4(n, c, ih, iw, is)];
            if (!valid_target(t, plane)) bad_index(t, OH, OW, n, c, ih, iw);
            const int64_t th = t / OW;
            gi[offset4(n, c, ih, iw, xs)] = go[offset4(n, c, th, t - th * OW, gs)];
          }
      }
    });
  });
}

}  // namespace
}  // namespace max_unpool
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CPU, m) {
  m.impl("_max_unpool2d_fwd", &pydense::max_unpool::forward_cpu);
  m.impl("_max_unpool2d_bwd", &pydense::max_unpool::backward_cpu);
}
