"""What ``backend="auto"`` picks, per op and device type.

On CUDA: the backend the committed benchmark results (benchmarks/results/<device>/) show fastest;
Triton until a GPU run has measured the op. On CPU: the C++ CPU kernel (``"torch"`` when the
extension is not built).
"""

AUTO_BACKEND = {
    # Not yet measured on a GPU: Triton by default.
    "max_pool2d": {"cuda": "triton", "cpu": "cpu"},
    "max_unpool2d": {"cuda": "triton", "cpu": "cpu"},
    "pixel_shuffle": {"cuda": "triton", "cpu": "cpu"},
    "pixel_unshuffle": {"cuda": "triton", "cpu": "cpu"},
    "upsample_bilinear2d": {"cuda": "triton", "cpu": "cpu"},
    "bilinear_deconv2d": {"cuda": "triton", "cpu": "cpu"},
    "conv2d": {"cuda": "triton", "cpu": "cpu"},
    "conv2d_fused": {"cuda": "triton", "cpu": "cpu"},
    "conv_transpose2d": {"cuda": "triton", "cpu": "cpu"},
    "conv2d_pixel_shuffle": {"cuda": "triton", "cpu": "cpu"},
    "upsample_concat": {"cuda": "triton", "cpu": "cpu"},
    "fcn_skip": {"cuda": "triton", "cpu": "cpu"},
    "confusion_matrix": {"cuda": "triton", "cpu": "cpu"},
    "panoptic_pair_counts": {"cuda": "triton", "cpu": "cpu"},
    "instance_coverage": {"cuda": "triton", "cpu": "cpu"},
}

# Ops measured by another op's benchmark: pixel_unshuffle is pixel_shuffle's backward;
# instance_coverage is the kernel of pydense.panoptic_fusion.fuse (benchmarks/bench_panoptic_fuse.py).
MEASURED_AS = {"pixel_unshuffle": "pixel_shuffle", "instance_coverage": "panoptic_fuse"}
