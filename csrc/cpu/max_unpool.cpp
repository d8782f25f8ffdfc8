// CPU kernels of max_unpool2d (forward gather / deterministic scatter, backward gather).
// Index math: csrc/common/max_unpool.h, the same functions the CUDA kernels call.
//
// Forward, kernel == stride: a gather that writes each output once and counts hits per plane
// (see the header: a plane is clean iff it scores H * W hits); planes that are not clean (an index
// outside its window, or out of range) are redone by the sequential scatter, which raises for an
// out-of-range index. Loop order follows the output's memory format: plane by plane for NCHW,
// channels innermost for channels_last. Indices are always checked here, whatever the caller asked.
// Indices are int64 (flat) or uint8 (compact window offsets, decoded by target_of in
// csrc/common/max_pool.h: a valid compact index always lies in its own window).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <memory>
#include <vector>

#include "../common/max_pool.h"
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

[[noreturn]] void bad_index(uint8_t k, int64_t oh, int64_t ow, int64_t n, int64_t c, int64_t h,
                            int64_t w) {
  TORCH_CHECK_INDEX(false, "max_unpool2d: compact indices must be window offsets whose tap lies in the ",
                    oh, "x", ow, " output plane; found ", int(k), " at indices[", n, ", ", c, ", ", h,
                    ", ", w, "]");
}

using Compact = CompactGeometry<int64_t>;

// v if keep else +0.0, without a branch (a data-dependent branch here mispredicts on 1 in k*k
// elements and the compiler turns a ?: select back into one).
template <typename T>
inline T keep_if(bool keep, T v) {
  using U = std::conditional_t<sizeof(T) == 8, uint64_t,
                               std::conditional_t<sizeof(T) == 4, uint32_t, uint16_t>>;
  static_assert(sizeof(T) == sizeof(U), "keep_if: unsupported element size");
  U bits;
  std::memcpy(&bits, &v, sizeof(T));
  bits &= U(0) - U(keep);
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

struct Geometry {
  int64_t N, C, H, W, OH, OW;
  int64_t xs[4], is[4], os[4];
};

// Owner input column of every output column (-1: none), computed once per call.
std::vector<int64_t> owners(int64_t out_size, int64_t stride, int64_t pad, int64_t in_size) {
  std::vector<int64_t> v(out_size);
  for (int64_t o = 0; o < out_size; ++o) v[o] = window_owner(o, stride, pad, in_size);
  return v;
}

// Gather of output row (n, oh) of channels [c0, c1); adds the hits of channel c to hits[c - c0].
// Output columns [0, ow_valid) have an owner (iw_of[ow] >= 0), the rest are zero. The input value
// is loaded unconditionally and masked (keep_if).
template <typename scalar_t, typename idx_t>
void gather_row(const scalar_t* x, const idx_t* idx, scalar_t* out, const Geometry& g,
                const Compact& cg, int64_t n, int64_t oh, int64_t ih, const int64_t* iw_of,
                int64_t ow_valid, int64_t c0, int64_t c1, int64_t* hits) {
  scalar_t* orow = out + n * g.os[0] + oh * g.os[2];
  const int64_t os1 = g.os[1], os3 = g.os[3], is1 = g.is[1], is3 = g.is[3];
  const int64_t xs1 = g.xs[1], xs3 = g.xs[3];
  if (ih < 0) ow_valid = 0;
  const idx_t* irow = idx + n * g.is[0] + (ih < 0 ? 0 : ih) * g.is[2];
  const scalar_t* xrow = x + n * g.xs[0] + (ih < 0 ? 0 : ih) * g.xs[2];
  const int64_t base = oh * g.OW;
  if (os1 == 1) {  // channels_last: channels innermost
    for (int64_t ow = 0; ow < ow_valid; ++ow) {
      const idx_t* ip = irow + iw_of[ow] * is3;
      const scalar_t* xp = xrow + iw_of[ow] * xs3;
      scalar_t* o = orow + ow * os3;
      for (int64_t c = c0; c < c1; ++c) {
        const bool hit = target_of(ip[c * is1], ih, iw_of[ow], cg) == base + ow;
        o[c] = keep_if(hit, xp[c * xs1]);
        hits[c - c0] += hit;
      }
    }
    for (int64_t ow = ow_valid; ow < g.OW; ++ow)
      for (int64_t c = c0; c < c1; ++c) orow[ow * os3 + c] = scalar_t(0);
    return;
  }
  for (int64_t c = c0; c < c1; ++c) {
    const idx_t* ip = irow + c * is1;
    const scalar_t* xp = xrow + c * xs1;
    scalar_t* o = orow + c * os1;
    int64_t h = 0;
    for (int64_t ow = 0; ow < ow_valid; ++ow) {
      const int64_t iw = iw_of[ow];
      const bool hit = target_of(ip[iw * is3], ih, iw, cg) == base + ow;
      o[ow * os3] = keep_if(hit, xp[iw * xs3]);
      h += hit;
    }
    for (int64_t ow = ow_valid; ow < g.OW; ++ow) o[ow * os3] = scalar_t(0);
    hits[c - c0] += h;
  }
}

// Scatter of plane (n, c) in the input plane's row-major order: the later element wins.
template <typename scalar_t, typename idx_t>
void scatter_plane(const scalar_t* x, const idx_t* idx, scalar_t* out, const Geometry& g,
                   const Compact& cg, int64_t n, int64_t c, bool zero_first) {
  scalar_t* o = out + n * g.os[0] + c * g.os[1];
  if (zero_first)
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) o[oh * g.os[2] + ow * g.os[3]] = scalar_t(0);
  const int64_t plane = g.OH * g.OW;
  for (int64_t ih = 0; ih < g.H; ++ih) {
    for (int64_t iw = 0; iw < g.W; ++iw) {
      const idx_t raw = idx[offset4(n, c, ih, iw, g.is)];
      const int64_t t = target_of(raw, ih, iw, cg);
      if (!valid_target(t, plane)) bad_index(raw, g.OH, g.OW, n, c, ih, iw);
      o[plane_offset(t, g.OW, g.os[2], g.os[3])] = x[offset4(n, c, ih, iw, g.xs)];
    }
  }
}

Geometry geometry(const at::Tensor& x, const at::Tensor& idx, const at::Tensor& out) {
  Geometry g{x.size(0), x.size(1), x.size(2), x.size(3), out.size(2), out.size(3), {}, {}, {}};
  for (int d = 0; d < 4; ++d) {
    g.xs[d] = x.stride(d);
    g.is[d] = idx.stride(d);
    g.os[d] = out.stride(d);
  }
  return g;
}

template <typename scalar_t, typename idx_t>
void forward_impl(const at::Tensor& input, const at::Tensor& indices, at::IntArrayRef stride,
                  at::IntArrayRef padding, bool gather, const at::Tensor& out, const Geometry& g,
                  const Compact& cg) {
  const int64_t planes = g.N * g.C;
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const idx_t* idx = indices.const_data_ptr<idx_t>();
  scalar_t* o = out.mutable_data_ptr<scalar_t>();
  if (!gather) {
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc) scatter_plane(x, idx, o, g, cg, nc / g.C, nc % g.C, true);
    });
    return;
  }
  const std::vector<int64_t> iw_of = owners(g.OW, stride[1], padding[1], g.W);
  // owners are non-decreasing in ow: the columns with one form a prefix
  const int64_t ow_valid = std::find(iw_of.begin(), iw_of.end(), int64_t(-1)) - iw_of.begin();
  std::unique_ptr<std::atomic<int64_t>[]> hits(new std::atomic<int64_t>[planes]);
  for (int64_t i = 0; i < planes; ++i) hits[i].store(0, std::memory_order_relaxed);
  if (g.os[1] == 1) {  // channels_last: rows (n, oh) in parallel, all channels per row
    at::parallel_for(0, g.N * g.OH, 1, [&](int64_t begin, int64_t end) {
      std::vector<int64_t> local(g.C);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t n = r / g.OH, oh = r % g.OH;
        std::fill(local.begin(), local.end(), 0);
        gather_row(x, idx, o, g, cg, n, oh, window_owner(oh, stride[0], padding[0], g.H),
                   iw_of.data(), ow_valid, 0, g.C, local.data());
        for (int64_t c = 0; c < g.C; ++c)
          hits[n * g.C + c].fetch_add(local[c], std::memory_order_relaxed);
      }
    });
  } else {  // planes in parallel
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc) {
        const int64_t n = nc / g.C, c = nc % g.C;
        int64_t h = 0;
        for (int64_t oh = 0; oh < g.OH; ++oh)
          gather_row(x, idx, o, g, cg, n, oh, window_owner(oh, stride[0], padding[0], g.H),
                     iw_of.data(), ow_valid, c, c + 1, &h);
        hits[nc].store(h, std::memory_order_relaxed);
      }
    });
  }
  at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc)
      if (hits[nc].load(std::memory_order_relaxed) != g.H * g.W)
        scatter_plane(x, idx, o, g, cg, nc / g.C, nc % g.C, true);
  });
}

void forward_cpu(const at::Tensor& input, const at::Tensor& indices, at::IntArrayRef kernel_size,
                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                 bool gather, const at::Tensor& out) {
  check_forward_args(input, indices, kernel_size, stride, padding, dilation, out);
  const Geometry g = geometry(input, indices, out);
  const Compact cg = compact_geometry<int64_t>(kernel_size, stride, padding, dilation, g.OH, g.OW);
  TORCH_CHECK(!gather || gather_ok(g.H, g.W, g.OH, g.OW, kernel_size[0], kernel_size[1], stride[0],
                                   stride[1], padding[0], padding[1]),
              "max_unpool2d: gather=True needs kernel_size == stride and windows that meet the output");
  if (out.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "max_unpool2d_cpu", [&] {
    if (indices.scalar_type() == at::kByte)
      forward_impl<scalar_t, uint8_t>(input, indices, stride, padding, gather, out, g, cg);
    else
      forward_impl<scalar_t, int64_t>(input, indices, stride, padding, gather, out, g, cg);
  });
}

template <typename scalar_t, typename idx_t>
void backward_impl(const at::Tensor& grad_output, const at::Tensor& indices,
                   const at::Tensor& grad_input, const Geometry& g, const Compact& cg) {
  const int64_t plane = g.OH * g.OW;
  {
    const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
    const idx_t* idx = indices.const_data_ptr<idx_t>();
    scalar_t* gi = grad_input.mutable_data_ptr<scalar_t>();
    // One input row (n, c, ih): gather grad_output at each index, with row pointers hoisted.
    const auto row = [&](int64_t n, int64_t c, int64_t ih) {
      const idx_t* ir = idx + n * g.is[0] + c * g.is[1] + ih * g.is[2];
      scalar_t* gr = gi + n * g.xs[0] + c * g.xs[1] + ih * g.xs[2];
      const scalar_t* gop = go + n * g.os[0] + c * g.os[1];
      const int64_t is3 = g.is[3], xs3 = g.xs[3], os2 = g.os[2], os3 = g.os[3], OW = g.OW;
      for (int64_t iw = 0; iw < g.W; ++iw) {
        const idx_t raw = ir[iw * is3];
        const int64_t t = target_of(raw, ih, iw, cg);
        if (!valid_target(t, plane)) bad_index(raw, g.OH, OW, n, c, ih, iw);
        gr[iw * xs3] = gop[plane_offset(t, OW, os2, os3)];
      }
    };
    if (g.xs[1] == 1) {  // channels_last grad_input: rows (n, ih) in parallel, all channels
      at::parallel_for(0, g.N * g.H, 1, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r)
          for (int64_t c = 0; c < g.C; ++c) row(r / g.H, c, r % g.H);
      });
    } else {
      at::parallel_for(0, g.N * g.C, 1, [&](int64_t begin, int64_t end) {
        for (int64_t nc = begin; nc < end; ++nc)
          for (int64_t ih = 0; ih < g.H; ++ih) row(nc / g.C, nc % g.C, ih);
      });
    }
  }
}

void backward_cpu(const at::Tensor& grad_output, const at::Tensor& indices,
                  at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                  at::IntArrayRef dilation, const at::Tensor& grad_input) {
  check_backward_args(grad_output, indices, kernel_size, stride, padding, dilation, grad_input);
  const Geometry g = geometry(grad_input, indices, grad_output);  // xs: grad_input, os: grad_output
  if (grad_input.numel() == 0) return;
  const Compact cg = compact_geometry<int64_t>(kernel_size, stride, padding, dilation, g.OH, g.OW);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), "max_unpool2d_backward_cpu", [&] {
    if (indices.scalar_type() == at::kByte)
      backward_impl<scalar_t, uint8_t>(grad_output, indices, grad_input, g, cg);
    else
      backward_impl<scalar_t, int64_t>(grad_output, indices, grad_input, g, cg);
  });
}

}  // namespace
}  // namespace max_unpool
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CPU, m) {
  m.impl("_max_unpool2d_fwd", &pydense::max_unpool::forward_cpu);
  m.impl("_max_unpool2d_bwd", &pydense::max_unpool::backward_cpu);
}
