// Argument checks of the compiled panoptic pair-count kernels, shared by the CPU and CUDA wrappers.
// The Python layer validates first and with friendlier messages; these guard direct calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace pydense {
namespace panoptic_pairs {

// Bins of one image's histogram, (G + 1) * (P + 1), must stay below 2^31.
constexpr int64_t kMaxBins = (int64_t(1) << 31) - 1;

inline bool is_map_dtype(at::ScalarType t) { return t == at::kInt || t == at::kLong; }

inline void check_table(const at::Tensor& ids, const char* name, int64_t N) {
  TORCH_CHECK(ids.dim() == 2, "panoptic_pair_counts: ", name, " must be 2-D (N, ids), got shape ",
              ids.sizes());
  TORCH_CHECK(ids.scalar_type() == at::kLong, "panoptic_pair_counts: ", name,
              " must be int64, got ", ids.scalar_type());
  TORCH_CHECK(ids.size(0) == N, "panoptic_pair_counts: ", name, " must have N=", N,
              " rows (one per image), got ", ids.size(0));
  TORCH_CHECK(ids.is_contiguous(), "panoptic_pair_counts: ", name,
              " must be contiguous (the kernels read row n at n * ids), got strides ", ids.strides());
}

inline void check_args(const at::Tensor& gt, const at::Tensor& pred, const at::Tensor& gt_ids,
                       const at::Tensor& pred_ids, const at::Tensor& out) {
  TORCH_CHECK(gt.dim() == 3, "panoptic_pair_counts: gt must be 3-D (N, H, W), got shape ", gt.sizes());
  TORCH_CHECK(pred.sizes() == gt.sizes(), "panoptic_pair_counts: pred of shape ", pred.sizes(),
              " and gt of shape ", gt.sizes(), " must have the same shape");
  TORCH_CHECK(is_map_dtype(gt.scalar_type()), "panoptic_pair_counts: gt must be int32 or int64, got ",
              gt.scalar_type());
  TORCH_CHECK(is_map_dtype(pred.scalar_type()),
              "panoptic_pair_counts: pred must be int32 or int64, got ", pred.scalar_type());
  const int64_t N = gt.size(0);
  check_table(gt_ids, "gt_ids", N);
  check_table(pred_ids, "pred_ids", N);
  const int64_t G = gt_ids.size(1), P = pred_ids.size(1);
  TORCH_CHECK(G + 1 <= kMaxBins / (P + 1), "panoptic_pair_counts: (G + 1) * (P + 1) must be below 2^31, got G=",
              G, ", P=", P);
  TORCH_CHECK(out.dim() == 3 && out.size(0) == N && out.size(1) == G + 1 && out.size(2) == P + 1 &&
                  out.is_contiguous() && out.scalar_type() == at::kLong,
              "panoptic_pair_counts: out must be a contiguous (N, G + 1, P + 1) = (", N, ", ", G + 1,
              ", ", P + 1, ") int64 tensor, got ", out.sizes(), " ", out.scalar_type());
  const auto dev = gt.device();
  TORCH_CHECK(pred.device() == dev && gt_ids.device() == dev && pred_ids.device() == dev &&
                  out.device() == dev,
              "panoptic_pair_counts: gt, pred, gt_ids, pred_ids and out must be on one device");
}

}  // namespace panoptic_pairs
}  // namespace pydense
