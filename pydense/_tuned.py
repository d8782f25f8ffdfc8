"""What ``backend="auto"`` picks, per op and device type (``python -m benchmarks.tune`` writes the
AUTO_BACKEND and EVIDENCE assignments from the committed results, benchmarks/results/<device>/).

On CUDA: the backend the results show fastest; Triton until a GPU run has measured the op. On
CPU: per op and shape class ({class: choice, "*": every other class}; the classes are the op's
``shape_class``), the C++ CPU kernel where it is never more than 10% slower than ATen, else
``"aten"``: the public function calls the stock PyTorch op itself. ``"cpu"`` becomes ``"torch"``
when the extension is not built. EVIDENCE holds the measurement behind each measured choice.
"""

AUTO_BACKEND = {
    "max_pool2d": {"cuda": "triton", "cpu": "aten"},
    "max_unpool2d": {"cuda": "triton", "cpu": "aten"},
    "pixel_shuffle": {"cuda": "triton", "cpu": "aten"},
    "pixel_unshuffle": {"cuda": "triton", "cpu": "aten"},
    "upsample_bilinear2d": {"cuda": "triton", "cpu": "aten"},
    "bilinear_deconv2d": {"cuda": "triton", "cpu": {"channels_last": "aten", "nchw": "cpu", "*": "aten"}},
    "conv2d": {"cuda": "triton", "cpu": "aten"},
    "conv2d_fused": {"cuda": "triton", "cpu": "aten"},
    "conv_transpose2d": {"cuda": "triton", "cpu": "aten"},
    "conv2d_pixel_shuffle": {"cuda": "triton", "cpu": "aten"},
    "upsample_concat": {"cuda": "triton", "cpu": "aten"},
    "fcn_skip": {"cuda": "triton", "cpu": "aten"},
    "confusion_matrix": {"cuda": "triton", "cpu": "cpu"},
    "panoptic_pair_counts": {"cuda": "triton", "cpu": "cpu"},
    "instance_coverage": {"cuda": "triton", "cpu": "cpu"},
}

EVIDENCE = {
    "cpu": {
        "bilinear_deconv2d":
            'cpu-x86_64: channels_last: cpu 0.48-2.03x aten (geomean 1.11x, 6 rows); nchw: cpu 1.16-3.16x aten (geomean 1.99x, 6 rows)',
        "confusion_matrix":
            'cpu-x86_64: *: cpu 0.79-7.00x aten (geomean 1.98x, 6 rows, no stock path)',
        "conv2d":
            'cpu-x86_64: dense: cpu 0.35-1.10x aten (geomean 0.78x, 20 rows); depthwise: cpu 0.18-0.63x aten (geomean 0.26x, 4 rows); grouped: cpu 0.02-0.06x aten (geomean 0.03x, 4 rows)',
        "conv2d_fused":
            'cpu-x86_64: *: cpu 0.49-1.20x aten (geomean 0.82x, 16 rows)',
        "conv2d_pixel_shuffle":
            'cpu-x86_64: *: cpu 0.66-1.06x aten (geomean 0.90x, 8 rows)',
        "conv_transpose2d":
            'cpu-x86_64: dense: cpu 0.40-1.16x aten (geomean 0.70x, 4 rows); depthwise: cpu 0.02-0.31x aten (geomean 0.06x, 8 rows)',
        "fcn_skip":
            'cpu-x86_64: *: cpu 0.08-1.27x aten (geomean 0.29x, 12 rows)',
        "instance_coverage":
            'cpu-x86_64: *: cpu 1.14-2.13x aten (geomean 1.56x, 2 rows) (measured as panoptic_fuse)',
        "max_pool2d":
            'cpu-x86_64: *: cpu 0.04-0.94x aten (geomean 0.20x, 16 rows)',
        "max_unpool2d":
            'cpu-x86_64: *: cpu 0.11-2.41x aten (geomean 0.37x, 16 rows)',
        "panoptic_pair_counts":
            'cpu-x86_64: *: cpu 4.61-4.94x aten (geomean 4.77x, 2 rows)',
        "pixel_shuffle":
            'cpu-x86_64: *: cpu 0.14-1.19x aten (geomean 0.55x, 12 rows)',
        "pixel_unshuffle":
            'cpu-x86_64: *: cpu 0.14-1.19x aten (geomean 0.55x, 12 rows) (measured as pixel_shuffle)',
        "upsample_bilinear2d":
            'cpu-x86_64: *: cpu 0.17-0.75x aten (geomean 0.44x, 24 rows)',
        "upsample_concat":
            'cpu-x86_64: *: cpu 0.09-1.49x aten (geomean 0.63x, 12 rows)',
    },
    "cuda": {},
}

# Ops measured by another op's benchmark: pixel_unshuffle is pixel_shuffle's backward;
# instance_coverage is the kernel of pydense.panoptic_fusion.fuse (benchmarks/bench_panoptic_fuse.py).
MEASURED_AS = {"pixel_unshuffle": "pixel_shuffle", "instance_coverage": "panoptic_fuse"}
