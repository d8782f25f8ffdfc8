// CPU kernel of pixel_shuffle / pixel_unshuffle: a gather over the output in its memory order
// (rows in parallel). Index math: csrc/common/pixel_shuffle.h, shared with the CUDA kernel.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "../common/pixel_shuffle.h"
#include "../common/pixel_shuffle_checks.h"

namespace pydense {
namespace pixel_shuffle {
namespace {

void pixel_shuffle_cpu(const at::Tensor& input, int64_t r, bool upscale, const at::Tensor& out) {
  check_args(input, r, upscale, out);
  if (out.numel() == 0) return;
  const int64_t N = out.size(0), OC = out.size(1), OH = out.size(2), OW = out.size(3);
  const int64_t xs0 = input.stride(0), xs1 = input.stride(1), xs2 = input.stride(2),
                xs3 = input.stride(3);
  const int64_t os0 = out.stride(0), os1 = out.stride(1), os2 = out.stride(2), os3 = out.stride(3);
  const bool channels_last = os1 == 1 && OC > 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "pixel_shuffle_cpu", [&] {
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const auto one = [&](int64_t n, int64_t oc, int64_t oh, int64_t ow) {
      int64_t c, h, w;
      source(oc, oh, ow, r, upscale, c, h, w);
      o[n * os0 + oc * os1 + oh * os2 + ow * os3] = x[n * xs0 + c * xs1 + h * xs2 + w * xs3];
    };
    if (channels_last) {  // rows (n, oh) in parallel, channels innermost
      at::parallel_for(0, N * OH, 1, [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row)
          for (int64_t ow = 0; ow < OW; ++ow)
            for (int64_t oc = 0; oc < OC; ++oc) one(row / OH, oc, row % OH, ow);
      });
    } else {  // rows (n, oc, oh) in parallel
      at::parallel_for(0, N * OC * OH, 1, [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row)
          for (int64_t ow = 0; ow < OW; ++ow) one(row / (OC * OH), (row / OH) % OC, row % OH, ow);
      });
    }
  });
}

}  // namespace
}  // namespace pixel_shuffle
}  // namespace pydense

TORCH_LIBRARY_IMPL(pydense, CPU, m) {
  m.impl("_pixel_shuffle", &pydense::pixel_shuffle::pixel_shuffle_cpu);
}
