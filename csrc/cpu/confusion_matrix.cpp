// CPU kernel of the segmentation confusion matrix. The pixels (n, h, w) in row-major order are cut
// into a fixed number of contiguous chunks (independent of the thread count); each chunk counts
// into its own int64 histogram (K*K bins), chunks run in parallel, and the histograms are summed
// in chunk order. Per-pixel math: csrc/common/confusion_matrix.h, shared with the CUDA kernel.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/confusion_matrix.h"
#include "../common/confusion_matrix_checks.h"

namespace pydense {
namespace confusion_matrix {
namespace {

constexpr int64_t kChunkPixels = 1 << 16;
constexpr int64_t kMaxChunks = 64;
constexpr int64_t kMaxPartialBins = int64_t(1) << 24;  // chunks * K * K int64 (128 MiB)

// Calls count(chunk, bin) for every kept pixel; pixel_pred(n, h, w) gives the prediction.
template <typename T, typename PredFn>
void histogram(const at::Tensor& target, int64_t K, int64_t ignore_index, const PredFn& pixel_pred,
               int64_t* out) {
  const int64_t N = target.size(0), H = target.size(1), W = target.size(2);
  const int64_t total = N * H * W, KK = K * K;
  const int64_t ts0 = target.stride(0), ts1 = target.stride(1), ts2 = target.stride(2);
  const T* t = target.const_data_ptr<T>();
  int64_t chunks = std::min<int64_t>({(total + kChunkPixels - 1) / kChunkPixels, kMaxChunks,
                                      std::max<int64_t>(1, kMaxPartialBins / KK)});
  chunks = std::max<int64_t>(chunks, 1);
  const int64_t per = (total + chunks - 1) / chunks;
  std::vector<int64_t> partials(size_t(chunks * KK), 0);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch) {
      int64_t* hist = partials.data() + ch * KK;
      const int64_t lo = ch * per, hi = std::min(total, lo + per);
      for (int64_t l = lo; l < hi; ++l) {
        const int64_t n = l / (H * W), r = l - n * (H * W), h = r / W, w = r - h * W;
        const int64_t b = bin_of(int64_t(t[n * ts0 + h * ts1 + w * ts2]), pixel_pred(n, h, w), K,
                                 ignore_index);
        if (b >= 0) ++hist[b];
      }
    }
  });
  std::fill(out, out + KK, int64_t(0));
  for (int64_t ch = 0; ch < chunks; ++ch)  // fixed order
    for (int64_t b = 0; b < KK; ++b) out[b] += partials[size_t(ch * KK + b)];
}

void confusion_matrix_cpu(const at::Tensor& pred, const at::Tensor& target, int64_t K,
                          int64_t ignore_index, const at::Tensor& out) {
  check_args(pred, target, K, out);
  int64_t* o = out.mutable_data_ptr<int64_t>();
  if (target.numel() == 0) {
    std::fill(o, o + K * K, int64_t(0));
    return;
  }
  PYDENSE_DISPATCH_LABELS(target.scalar_type(), T, [&] {
    if (pred.dim() == 3) {
      const int64_t s0 = pred.stride(0), s1 = pred.stride(1), s2 = pred.stride(2);
      PYDENSE_DISPATCH_LABELS(pred.scalar_type(), P, [&] {
        const P* p = pred.const_data_ptr<P>();
        histogram<T>(target, K, ignore_index,
                     [&](int64_t n, int64_t h, int64_t w) { return int64_t(p[n * s0 + h * s1 + w * s2]); },
                     o);
      });
    } else {
      const int64_t s0 = pred.stride(0), s1 = pred.stride(1), s2 = pred.stride(2), s3 = pred.stride(3);
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "confusion_matrix_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* x = pred.const_data_ptr<scalar_t>();
        histogram<T>(target, K, ignore_index, [&](int64_t n, int64_t h, int64_t w) {
          const scalar_t* px = x + n * s0 + h * s2 + w * s3;
          acc_t best = acc_t(px[0]);
          int64_t arg = 0;
          for (int64_t c = 1; c < K; ++c) {
            const acc_t v = acc_t(px[c * s1]);
            if (argmax_takes(v, best)) {
              best = v;
              arg = c;
            }
          }
          return arg;
        }, o);
      });
    }
  });
}

}  // namespace
}  // namespace confusion_matrix
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CPU, m) {
  m.impl("_confusion_matrix", &pydense::confusion_matrix::confusion_matrix_cpu);
}
