// Arithmetic of the direct 2-D convolution kernels, shared by csrc/cpu/conv.cpp and
// csrc/cuda/conv.cu (compiled as host code for one, device code for the other), so the CPU tests
// exercise the very index math and summation order the GPU kernels run. The Triton kernels
// (kernels/conv/) implement the same enumeration.
//
// Notation: input x (N, C, H, W), weight w (OC, Cg, KH, KW), Cg = C / groups, OCg = OC / groups,
// output y (N, OC, OH, OW); stride (sh, sw), top/left padding (ph, pw), dilation (dh, dw).
//
//   forward:  y[n, oc, oh, ow] = sum_{c < Cg, kh, kw} x[n, g*Cg + c, oh*sh - ph + kh*dh, ...] * w[oc, c, kh, kw]
//   dgrad:    dx[n, c, ih, iw] = sum over the taps (kh, kw) and output channels oc of c's group
//             with ih + ph - kh*dh = oh*sh, 0 <= oh < OH (same for w) of dy[n, oc, oh, ow] * w[oc, c', kh, kw]
//   wgrad:    dw[oc, c, kh, kw] = sum_{n, oh, ow} dy[n, oc, oh, ow] * x[n, g*Cg + c, ih, iw]
//
// Sub-pixel convolution (EDSR's upsampler): the forward may write the pixel shuffle by r of its
// output, Y (N, OC / r^2, OH*r, OW*r), with Y[n, c, oh*r + i, ow*r + j] = y[n, c*r*r + i*r + j, oh, ow];
// the geometry stays the convolution's, shuffled_source maps Y's coordinates to y's.
//
// The dgrad visits only the taps that reach an input index (no divisibility test per tap): with
// g = gcd(d, s), step = s / g and inv = (d / g)^-1 mod step, the taps of index i are
// k = k0 + j * step with r = (i + p) % s, k0 = (r / g * inv) % step, none unless g | r.
#pragma once

#include <cstdint>

#include "macros.h"
#include "strides.h"

namespace pydense {
namespace conv {

template <typename I>
struct Geometry {
  I C, H, W, OC, OH, OW, KH, KW, Cg, OCg, sh, sw, ph, pw, dh, dw;
};

template <typename I>
Geometry<I> narrow_geometry(const Geometry<int64_t>& G) {
  return {I(G.C),  I(G.H),   I(G.W),  I(G.OC), I(G.OH), I(G.OW), I(G.KH), I(G.KW),
          I(G.Cg), I(G.OCg), I(G.sh), I(G.sw), I(G.ph), I(G.pw), I(G.dh), I(G.dw)};
}

// Per-axis constants of the dgrad tap enumeration.
template <typename I>
struct TapAxis {
  I g, step, inv;
};

inline int64_t gcd64(int64_t a, int64_t b) {
  while (b) {
    const int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

template <typename I>
TapAxis<I> tap_axis(int64_t s, int64_t d) {
  const int64_t g = gcd64(s, d), step = s / g, dd = (d / g) % step;
  int64_t inv = 0;
  for (int64_t v = 1; v < step; ++v)  // step <= stride: a short search
    if ((dd * v) % step == 1) inv = v;
  return {I(g), I(step), I(inv)};
}

// First tap k0 and tap count of input index i along one axis (K taps).
template <typename I>
PYDENSE_HD void tap_range(I i, I p, I s, TapAxis<I> a, I K, I& k0, I& count) {
  const I r = (i + p) % s;
  k0 = ((r / a.g) * a.inv) % a.step;
  count = (r % a.g == 0 && k0 < K) ? (K - k0 + a.step - 1) / a.step : I(0);
}

// The convolution output (oc, oh, ow) that element (c, yh, yw) of its pixel shuffle by r holds
// (identity for r = 1).
template <typename I>
PYDENSE_HD void shuffled_source(I r, I c, I yh, I yw, I& oc, I& oh, I& ow) {
  if (r == 1) {
    oc = c, oh = yh, ow = yw;
    return;
  }
  oh = yh / r, ow = yw / r;
  oc = (c * r + (yh - oh * r)) * r + (yw - ow * r);
}

// The inverse: where convolution output (oc, oh, ow) lands in the pixel shuffle by r (c, yh, yw).
template <typename I>
PYDENSE_HD void shuffled_target(I r, I oc, I oh, I ow, I& c, I& yh, I& yw) {
  if (r == 1) {
    c = oc, yh = oh, yw = ow;
    return;
  }
  const I ij = oc % (r * r);
  c = oc / (r * r), yh = oh * r + ij / r, yw = ow * r + ij % r;
}

template <typename acc_t>
PYDENSE_HD acc_t epilogue(acc_t acc, acc_t bias, bool relu, acc_t scale, acc_t residual) {
  acc += bias;
  if (relu) acc = acc < acc_t(0) ? acc_t(0) : acc;  // NaN stays NaN, as F.relu
  return residual + scale * acc;
}

// Forward sum (before the epilogue) of output element (n, oc, oh, ow).
template <typename acc_t, typename scalar_t, typename I>
PYDENSE_HD acc_t forward_sum(const scalar_t* x, const scalar_t* w, Strides4<I> xs, Strides4<I> ws,
                             const Geometry<I>& G, I n, I oc, I oh, I ow) {
  const I g = oc / G.OCg;
  const scalar_t* xb = x + n * xs.v[0] + g * G.Cg * xs.v[1];
  const scalar_t* wb = w + oc * ws.v[0];
  acc_t acc = 0;
  for (I kh = 0; kh < G.KH; ++kh) {
    const I ih = oh * G.sh - G.ph + kh * G.dh;
    const bool h_in = ih >= 0 && ih < G.H;
    for (I kw = 0; kw < G.KW; ++kw) {
      const I iw = ow * G.sw - G.pw + kw * G.dw;
      const scalar_t* wp = wb + kh * ws.v[2] + kw * ws.v[3];
      if (h_in && iw >= 0 && iw < G.W) {
        const scalar_t* xp = xb + ih * xs.v[2] + iw * xs.v[3];
        for (I c = 0; c < G.Cg; ++c) acc += acc_t(xp[c * xs.v[1]]) * acc_t(wp[c * ws.v[1]]);
      } else {
        // A padding tap multiplies the zero padding: 0 * w, so that a non-finite weight gives NaN
        // there as in PyTorch's zero-padded convolution (and the GEMM kernels), instead of being
        // skipped. Border outputs only.
        for (I c = 0; c < G.Cg; ++c) acc += acc_t(0) * acc_t(wp[c * ws.v[1]]);
      }
    }
  }
  return acc;
}

// Input-gradient sum of input element (n, c, ih, iw).
template <typename acc_t, typename scalar_t, typename I>
PYDENSE_HD acc_t dgrad_sum(const scalar_t* gy, const scalar_t* w, Strides4<I> gs, Strides4<I> ws,
                           const Geometry<I>& G, TapAxis<I> th, TapAxis<I> tw, I n, I c, I ih, I iw) {
  const I g = c / G.Cg, cl = c - g * G.Cg;
  I kh0, nkh, kw0, nkw;
  tap_range(ih, G.ph, G.sh, th, G.KH, kh0, nkh);
  tap_range(iw, G.pw, G.sw, tw, G.KW, kw0, nkw);
  const scalar_t* gb = gy + n * gs.v[0] + g * G.OCg * gs.v[1];
  const scalar_t* wb = w + g * G.OCg * ws.v[0] + cl * ws.v[1];
  acc_t acc = 0;
  for (I a = 0; a < nkh; ++a) {
    const I kh = kh0 + a * th.step;
    const I oh = (ih + G.ph - kh * G.dh) / G.sh;  // exact
    if (oh < 0 || oh >= G.OH) continue;
    for (I b = 0; b < nkw; ++b) {
      const I kw = kw0 + b * tw.step;
      const I ow = (iw + G.pw - kw * G.dw) / G.sw;
      if (ow < 0 || ow >= G.OW) continue;
      const scalar_t* gp = gb + oh * gs.v[2] + ow * gs.v[3];
      const scalar_t* wp = wb + kh * ws.v[2] + kw * ws.v[3];
      for (I j = 0; j < G.OCg; ++j) acc += acc_t(gp[j * gs.v[1]]) * acc_t(wp[j * ws.v[0]]);
    }
  }
  return acc;
}

// One term of the weight gradient of (oc, c, kh, kw): position p = (n, oh, ow) in row-major
// order; 0 where the tap falls in the padding.
template <typename acc_t, typename scalar_t, typename I>
PYDENSE_HD acc_t wgrad_term(const scalar_t* gy, const scalar_t* x, Strides4<I> gs, Strides4<I> xs,
                            const Geometry<I>& G, I oc, I c_abs, I kh, I kw, I p) {
  const I ow = p % G.OW, t = p / G.OW, oh = t % G.OH, n = t / G.OH;
  const I ih = oh * G.sh - G.ph + kh * G.dh, iw = ow * G.sw - G.pw + kw * G.dw;
  if (ih < 0 || ih >= G.H || iw < 0 || iw >= G.W) return acc_t(0);
  return acc_t(gy[n * gs.v[0] + oc * gs.v[1] + oh * gs.v[2] + ow * gs.v[3]]) *
         acc_t(x[n * xs.v[0] + c_abs * xs.v[1] + ih * xs.v[2] + iw * xs.v[3]]);
}

}  // namespace conv
}  // namespace pydense
