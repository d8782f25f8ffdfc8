// Argument checks of the compiled confusion-matrix kernels, shared by the CPU and CUDA wrappers.
// The Python layer validates first and with friendlier messages; these guard direct calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace pydense {
namespace confusion_matrix {

inline bool is_label_dtype(at::ScalarType t) {
  return t == at::kByte || t == at::kInt || t == at::kLong;
}

inline void check_args(const at::Tensor& pred, const at::Tensor& target, int64_t K,
                       const at::Tensor& out) {
  TORCH_CHECK(K > 0 && K <= 46340, "confusion_matrix: num_classes must be in [1, 46340], got ", K);
  TORCH_CHECK(target.dim() == 3, "confusion_matrix: target must be 3-D (N, H, W), got ",
              target.sizes());
  TORCH_CHECK(is_label_dtype(target.scalar_type()),
              "confusion_matrix: target must be uint8, int32 or int64, got ", target.scalar_type());
  if (pred.dim() == 3) {
    TORCH_CHECK(pred.sizes() == target.sizes(), "confusion_matrix: pred labels of shape ",
                pred.sizes(), " and target of shape ", target.sizes(), " must have the same shape");
    TORCH_CHECK(is_label_dtype(pred.scalar_type()),
                "confusion_matrix: pred labels must be uint8, int32 or int64, got ", pred.scalar_type());
  } else {
    TORCH_CHECK(pred.dim() == 4, "confusion_matrix: pred must be 3-D labels or 4-D logits, got ",
                pred.sizes());
    TORCH_CHECK(pred.size(0) == target.size(0) && pred.size(2) == target.size(1) &&
                    pred.size(3) == target.size(2),
                "confusion_matrix: pred logits of shape ", pred.sizes(), " and target of shape ",
                target.sizes(), " must agree in N, H, W");
    TORCH_CHECK(pred.size(1) == K, "confusion_matrix: pred logits must have num_classes=", K,
                " channels, got ", pred.size(1));
    TORCH_CHECK(at::isFloatingType(pred.scalar_type()),
                "confusion_matrix: pred logits must be floating point, got ", pred.scalar_type());
  }
  TORCH_CHECK(out.dim() == 2 && out.size(0) == K && out.size(1) == K && out.is_contiguous() &&
                  out.scalar_type() == at::kLong,
              "confusion_matrix: out must be a contiguous (K, K) int64 tensor, got ", out.sizes());
  TORCH_CHECK(pred.device() == target.device() && pred.device() == out.device(),
              "confusion_matrix: pred, target and out must be on one device");
}

}  // namespace confusion_matrix
}  // namespace pydense

// Dispatch over the label dtypes the kernels read (uint8, int32, int64) as type NAME.
#define PYDENSE_DISPATCH_LABELS(TYPE, NAME, ...)                                        \
  [&] {                                                                                 \
    switch (TYPE) {                                                                     \
      case at::kByte: { using NAME = uint8_t; return __VA_ARGS__(); }                   \
      case at::kInt: { using NAME = int32_t; return __VA_ARGS__(); }                    \
      case at::kLong: { using NAME = int64_t; return __VA_ARGS__(); }                   \
      default: TORCH_CHECK(false, "confusion_matrix: unsupported label dtype ", TYPE);  \
    }                                                                                   \
  }()
