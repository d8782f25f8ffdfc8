"""What ``backend="auto"`` picks, per op and device type.

On CUDA: the backend the committed benchmark results (benchmarks/results/<device>/) show fastest;
Triton until a GPU run has measured the op. On CPU: the C++ CPU kernel (``"torch"`` when the
extension is not built).
"""

AUTO_BACKEND = {
    # Not yet measured on a GPU: Triton by default.
    "max_unpool2d": {"cuda": "triton", "cpu": "cpu"},
}
