// CPU kernel of the segmentation confusion matrix. The rows (n, h) are cut into chunks of rows
// (cpu::chunked_histogram: a fixed number of chunks, independent of the thread count, each with
// its own int64 histogram of K*K bins, summed in chunk order). Logits: the argmax of a row runs
// channel by channel over the row (contiguous loads in NCHW), or pixel by pixel when channels are
// innermost (channels_last). Per-pixel math: csrc/common/confusion_matrix.h, shared with the CUDA
// kernel.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/confusion_matrix.h"
#include "../common/cpu_loops.h"
#include "../common/confusion_matrix_checks.h"

namespace pydense {
namespace confusion_matrix {
namespace {

// Counts the kept pixels of target into out (K*K int64), chunks of rows (n, h) in parallel
// (cpu::chunked_histogram); row_pred(n, h, p) writes the predictions of row (n, h) into p[0..W).
template <typename T, typename RowPredFn>
void histogram(const at::Tensor& target, int64_t K, int64_t ignore_index, const RowPredFn& row_pred,
               int64_t* out) {
  const int64_t N = target.size(0), H = target.size(1), W = target.size(2);
  const int64_t rows = N * H, KK = K * K;
  const int64_t ts0 = target.stride(0), ts1 = target.stride(1), ts2 = target.stride(2);
  const T* t = target.const_data_ptr<T>();
  cpu::chunked_histogram(rows, W, KK, out, [&](int64_t lo, int64_t hi, int64_t* hist) {
    std::vector<int64_t> preds(static_cast<size_t>(W));
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t n = row / H, h = row % H;
      row_pred(n, h, preds.data());
      const T* trow = t + n * ts0 + h * ts1;
      for (int64_t w = 0; w < W; ++w) {
        const int64_t b = bin_of(int64_t(trow[w * ts2]), preds[size_t(w)], K, ignore_index);
        if (b >= 0) ++hist[b];
      }
    }
  });
}

void confusion_matrix_cpu(const at::Tensor& pred, const at::Tensor& target, int64_t K,
                          int64_t ignore_index, const at::Tensor& out) {
  check_args(pred, target, K, out);
  int64_t* o = out.mutable_data_ptr<int64_t>();
  if (target.numel() == 0) {
    std::fill(o, o + K * K, int64_t(0));
    return;
  }
  const int64_t W = target.size(2);
  PYDENSE_DISPATCH_LABELS(target.scalar_type(), T, [&] {
    if (pred.dim() == 3) {
      const int64_t s0 = pred.stride(0), s1 = pred.stride(1), s2 = pred.stride(2);
      PYDENSE_DISPATCH_LABELS(pred.scalar_type(), P, [&] {
        const P* p = pred.const_data_ptr<P>();
        histogram<T>(target, K, ignore_index, [&](int64_t n, int64_t h, int64_t* dst) {
          const P* prow = p + n * s0 + h * s1;
          for (int64_t w = 0; w < W; ++w) dst[w] = int64_t(prow[w * s2]);
        }, o);
      });
    } else {
      const int64_t s0 = pred.stride(0), s1 = pred.stride(1), s2 = pred.stride(2), s3 = pred.stride(3);
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "confusion_matrix_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* x = pred.const_data_ptr<scalar_t>();
        // Channels innermost in memory (channels_last): per pixel; else channel by channel over the
        // row, so every load walks a contiguous row.
        const bool pixel_major = s1 < s3 || W == 1;
        histogram<T>(target, K, ignore_index, [&](int64_t n, int64_t h, int64_t* dst) {
          const scalar_t* xrow = x + n * s0 + h * s2;
          if (pixel_major) {
            for (int64_t w = 0; w < W; ++w) {
              const scalar_t* px = xrow + w * s3;
              acc_t best = acc_t(px[0]);
              int64_t arg = 0;
              for (int64_t c = 1; c < K; ++c) {
                const acc_t v = acc_t(px[c * s1]);
                if (argmax_takes(v, best)) {
                  best = v;
                  arg = c;
                }
              }
              dst[w] = arg;
            }
            return;
          }
          thread_local std::vector<acc_t> best;
          best.resize(size_t(W));
          for (int64_t w = 0; w < W; ++w) {
            best[size_t(w)] = acc_t(xrow[w * s3]);
            dst[w] = 0;
          }
          for (int64_t c = 1; c < K; ++c) {
            const scalar_t* xc = xrow + c * s1;
            for (int64_t w = 0; w < W; ++w) {
              const acc_t v = acc_t(xc[w * s3]);
              if (argmax_takes(v, best[size_t(w)])) {
                best[size_t(w)] = v;
                dst[w] = c;
              }
            }
          }
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
