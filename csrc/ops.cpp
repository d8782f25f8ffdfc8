// Operator schemas of the compiled backends. One TORCH_LIBRARY block for the namespace; each
// backend registers its kernels with TORCH_LIBRARY_IMPL in its own file (csrc/cpu, csrc/cuda).
//
// These ops write into tensors the Python layer allocated (pydense/ops/*.py), so the choice of
// output memory format and all argument validation live in one place for every backend. The
// public, autograd- and compiler-aware ops are defined in Python on top of them.
#include <torch/library.h>

TORCH_LIBRARY(pydense, m) {
  // max_unpool2d: out[n, c, indices[n, c, i]] = input[n, c, i]; out must be (N, C, OH, OW).
  // Indices are int64 (flat) or uint8 (compact window offsets kh * KW + kw, decoded with the
  // window geometry kernel_size / stride / padding / dilation; see csrc/common/max_pool.h).
  m.def(
      "_max_unpool2d_fwd(Tensor input, Tensor indices, int[2] kernel_size, int[2] stride, "
      "int[2] padding, int[2] dilation, bool gather, Tensor(a!) out) -> ()");
  // grad_input[n, c, i] = grad_output[n, c, indices[n, c, i]]; grad_input has the indices' shape.
  m.def(
      "_max_unpool2d_bwd(Tensor grad_output, Tensor indices, int[2] kernel_size, int[2] stride, "
      "int[2] padding, int[2] dilation, Tensor(a!) grad_input) -> ()");
  // max_pool2d with indices: out and indices are (N, C, OH, OW); indices int64 (flat ih * W + iw,
  // ATen's) or uint8 (compact kh * KW + kw). Ties and NaN as ATen (csrc/common/max_pool.h).
  m.def(
      "_max_pool2d_fwd(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, "
      "int[2] dilation, Tensor(a!) out, Tensor(b!) indices) -> ()");
  // The input gradient as a gather (deterministic); grad_input is (N, C, H, W).
  m.def(
      "_max_pool2d_bwd(Tensor grad_output, Tensor indices, int[2] kernel_size, int[2] stride, "
      "int[2] padding, int[2] dilation, Tensor(a!) grad_input) -> ()");
  // pixel_shuffle (upscale=True) / pixel_unshuffle (upscale=False) of a 4-D input into out.
  m.def("_pixel_shuffle(Tensor input, int factor, bool upscale, Tensor(a!) out) -> ()");
  // Bilinear upsampling from per-axis tables (idx/lam: (2, out), rng: (2, in); see
  // csrc/common/upsample_bilinear.h): forward gather, and the backward as a gather. With a skip
  // tensor the forward writes the concatenation [upsample(input), skip] along channels (UNet).
  m.def(
      "_upsample_bilinear2d_fwd(Tensor input, Tensor? skip, Tensor h_idx, Tensor h_lam, "
      "Tensor w_idx, Tensor w_lam, Tensor(a!) out) -> ()");
  m.def(
      "_upsample_bilinear2d_bwd(Tensor grad_output, Tensor h_idx, Tensor h_lam, Tensor h_rng, "
      "Tensor w_idx, Tensor w_lam, Tensor w_rng, Tensor(a!) grad_input) -> ()");
  // Direct 2-D convolution (csrc/common/conv.h); padding = (top, left), the output's size is
  // out's. Forward with epilogue: out = residual + scale * act(conv(input, weight) + bias);
  // shuffle = r > 1: out (and residual) is the pixel shuffle by r of that, written directly.
  m.def(
      "_conv2d_fwd(Tensor input, Tensor weight, Tensor? bias, Tensor? residual, int[2] stride, "
      "int[2] padding, int[2] dilation, bool relu, float scale, int shuffle, Tensor(a!) out) -> ()");
  // Input gradient (= transposed convolution of grad_output, plus bias per grad_input channel).
  m.def(
      "_conv2d_dgrad(Tensor grad_output, Tensor weight, Tensor? bias, int[2] stride, "
      "int[2] padding, int[2] dilation, Tensor(a!) grad_input) -> ()");
  // Weight gradient, deterministic (fixed summation order).
  m.def(
      "_conv2d_wgrad(Tensor grad_output, Tensor input, int[2] stride, int[2] padding, "
      "int[2] dilation, Tensor(a!) grad_weight) -> ()");
  // Fused FCN skip (csrc/common/fcn_skip.h): out = deconv(coarse) (tables as above) +
  // crop(skip_scale * score(skip) + bias, offset), score = the 1x1 conv with weight (K, CS), or
  // the identity without one; and the skip's gradient (zero outside the crop).
  m.def(
      "_fcn_skip_fwd(Tensor coarse, Tensor skip, Tensor? weight, Tensor? bias, Tensor h_idx, "
      "Tensor h_lam, Tensor w_idx, Tensor w_lam, int[2] offset, float skip_scale, Tensor(a!) out) -> ()");
  m.def(
      "_fcn_skip_bwd(Tensor grad_output, Tensor? weight, int[2] offset, float skip_scale, "
      "Tensor(a!) grad_skip) -> ()");
  // Segmentation confusion matrix (csrc/common/confusion_matrix.h): out[t, p] = pixels with target t
  // (not ignore_index) and prediction p; pred is (N, H, W) labels or (N, K, H, W) logits (argmax
  // over K); out is a contiguous (K, K) int64 tensor. Deterministic (no atomics across blocks).
  m.def(
      "_confusion_matrix(Tensor pred, Tensor target, int num_classes, int ignore_index, "
      "Tensor(a!) out) -> ()");
  // Panoptic pair counts (csrc/common/panoptic_pairs.h): out[n, i, j] = pixels of image n with
  // ground-truth id gt_ids[n, i] and predicted id pred_ids[n, j] (index G or P: an id absent from
  // the image's sorted table row); gt and pred are (N, H, W) int32/int64 id maps, the tables
  // (N, G) and (N, P) int64; out is a contiguous (N, G + 1, P + 1) int64 tensor. Deterministic.
  m.def(
      "_panoptic_pair_counts(Tensor gt, Tensor pred, Tensor gt_ids, Tensor pred_ids, "
      "Tensor(a!) out) -> ()");
  // Instance coverage patterns (csrc/common/instance_coverage.h): bit r % 64 of out[h, w, r / 64]
  // is set iff masks[order[r], h, w] != 0; masks (M, H, W) bool or uint8, order (K,) int64
  // instance indices, out a contiguous (H, W, ceil(K / 64)) int64 tensor.
  m.def("_instance_coverage(Tensor masks, Tensor order, Tensor(a!) out) -> ()");
}
