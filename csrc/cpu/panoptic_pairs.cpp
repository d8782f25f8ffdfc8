// CPU kernel of the panoptic pair counts. A batch runs one image per task, each counted into its
// own histogram; one image is cut into chunks of rows (cpu::chunked_histogram: private histograms
// summed in chunk order). Either way the counts are exact. Per-pixel math (id lookup, bin):
// csrc/common/panoptic_pairs.h, shared with the CUDA kernel.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/cpu_loops.h"
#include "../common/panoptic_pairs.h"
#include "../common/panoptic_pairs_checks.h"

namespace pydense {
namespace panoptic_pairs {
namespace {

template <typename TG, typename TP>
void histogram(const at::Tensor& gt, const at::Tensor& pred, const at::Tensor& gt_ids,
               const at::Tensor& pred_ids, int64_t* out) {
  const int64_t N = gt.size(0), H = gt.size(1), W = gt.size(2);
  const int64_t G = gt_ids.size(1), P = pred_ids.size(1);
  const int64_t B = (G + 1) * (P + 1), NB = N * B, rows = N * H;
  const int64_t gs0 = gt.stride(0), gs1 = gt.stride(1), gs2 = gt.stride(2);
  const int64_t ps0 = pred.stride(0), ps1 = pred.stride(1), ps2 = pred.stride(2);
  const TG* g = gt.const_data_ptr<TG>();
  const TP* p = pred.const_data_ptr<TP>();
  const int64_t* gid = gt_ids.const_data_ptr<int64_t>();  // contiguous (N, G)
  const int64_t* pid = pred_ids.const_data_ptr<int64_t>();  // contiguous (N, P)
  const int64_t g_step = top_step(G), p_step = top_step(P);
  // Counts rows [lo, hi) of the (N * H) image rows into hist (N * B int64).
  auto count_rows = [&](int64_t lo, int64_t hi, int64_t* hist) {
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t n = row / H, h = row % H;
      const TG* grow = g + n * gs0 + h * gs1;
      const TP* prow = p + n * ps0 + h * ps1;
      const int64_t* gtab = gid + n * G;
      const int64_t* ptab = pid + n * P;
      int64_t* ihist = hist + n * B;
      // Segments come in runs along a row: search only when an id differs from its left
      // neighbour's (the cached index of id 0 starts the row).
      int64_t gx_last = 0, px_last = 0;
      int64_t gi = index_of(gtab, G, g_step, 0), pj = index_of(ptab, P, p_step, 0);
      for (int64_t w = 0; w < W; ++w) {
        const int64_t gx = int64_t(grow[w * gs2]), px = int64_t(prow[w * ps2]);
        if (gx != gx_last) {
          gi = index_of(gtab, G, g_step, gx);
          gx_last = gx;
        }
        if (px != px_last) {
          pj = index_of(ptab, P, p_step, px);
          px_last = px;
        }
        ++ihist[bin_of(gi, pj, P)];
      }
    }
  };
  if (N > 1) {  // a batch: one image per task, each counted straight into its own histogram
    std::fill(out, out + NB, int64_t(0));
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) count_rows(n * H, (n + 1) * H, out);
    });
  } else {  // one image: chunks of its rows
    cpu::chunked_histogram(rows, W, NB, out, count_rows);
  }
}

void panoptic_pair_counts_cpu(const at::Tensor& gt, const at::Tensor& pred, const at::Tensor& gt_ids,
                              const at::Tensor& pred_ids, const at::Tensor& out) {
  check_args(gt, pred, gt_ids, pred_ids, out);
  int64_t* o = out.mutable_data_ptr<int64_t>();
  if (gt.numel() == 0) {
    std::fill(o, o + out.numel(), int64_t(0));
    return;
  }
  const at::Tensor gids = gt_ids.contiguous(), pids = pred_ids.contiguous();
  AT_DISPATCH_INDEX_TYPES(gt.scalar_type(), "panoptic_pair_counts_cpu", [&] {
    using TG = index_t;
    AT_DISPATCH_INDEX_TYPES(pred.scalar_type(), "panoptic_pair_counts_cpu", [&] {
      histogram<TG, index_t>(gt, pred, gids, pids, o);
    });
  });
}

}  // namespace
}  // namespace panoptic_pairs
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CPU, m) {
  m.impl("_panoptic_pair_counts", &pydense::panoptic_pairs::panoptic_pair_counts_cpu);
}
