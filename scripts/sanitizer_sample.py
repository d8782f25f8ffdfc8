"""A small run of every CUDA and Triton kernel for compute-sanitizer (memcheck/racecheck).

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck \\
        python scripts/sanitizer_sample.py [--dtypes fp32,bf16] [--part K/N --record FILE]
    python scripts/sanitizer_sample.py --merge FILE... [--ptxas build/ptxas.txt]
    python scripts/sanitizer_sample.py --device cpu        (the CPU dry run: Triton's interpreter)

Without PYTORCH_NO_CUDA_MEMORY_CACHING=1 PyTorch's caching allocator hands out slices of larger
blocks, and an overrun that stays inside the block is invisible to memcheck.

The work is a list of units (an op group x backend x dtype x layout); ``--part K/N`` runs every
N-th, so that N sanitizer processes share it (scripts/gpu_check.sh). Each run records the Triton
kernels it launched (``--record``); ``--merge`` checks that together they launched every Triton
kernel of ``pydense.kernels`` (exit 5 when one is missing). With ``--cuda-coverage`` (not under
the sanitizer: it uses the profiler) the CUDA kernels launched are recorded too, and ``--merge
--ptxas build/ptxas.txt`` checks them against the kernels the build compiled.

max_unpool2d: covers the gather path, the scatter fix-up (out-of-window and duplicate indices), the general
scatter path, invalid indices with checks off (the device guard must drop them, never address
them), channels_last and the backward, for each dtype. max_pool2d_with_indices: int64 and compact
indices, ceil_mode, overlapping padded and dilated windows, forward and backward, and unpooling of
the compact offsets (invalid ones dropped). pixel_shuffle/unshuffle: factors 1-3,
both layouts, non-contiguous input, forward and backward. interpolate (bilinear): up, down,
align_corners, fractional scale factors, forward and backward. bilinear_deconv2d: factors 2, 8,
32 with FCN's crops, forward and backward. conv2d (fused epilogue) and conv_transpose2d: dense,
grouped, depthwise, dilated, strided; forward and both gradients. conv2d_pixel_shuffle: r = 2, 3,
the tensor-core (C >= 16) and direct paths, C = 1; forward and backward. confusion_matrix: labels
(uint8/int64) and logits (every float dtype, both layouts), ignore pixels, out-of-range labels
with checks off (dropped, never addressed), K = 19 (shared-memory histograms on CUDA) and K = 150
(global partials on CUDA, several bin slices on Triton), a size that leaves a partial last block.
panoptic pair counts: 41 x 31 bins (shared-memory histograms on CUDA) and 151 x 101 (global
integer atomics on CUDA, 8 bin slices on Triton), empty tables, int32 transposed and int64 maps,
ids absent from the tables.
instance_coverage: K = 1, 64, 65, 130 ranks (1-3 words), bool and uint8 masks, contiguous and
strided, a pixel count that leaves a partial last block; panoptic.fuse end to end on the result.
"""
import argparse
import json
import os
import re
import sys
import time

DTYPE_NAMES = ("fp32", "fp16", "bf16")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="cpu: the Triton kernels through the interpreter (a dry run)")
    parser.add_argument("--dtypes", default="fp32,fp16,bf16",
                        help="float dtypes of the per-dtype units (default: %(default)s)")
    parser.add_argument("--layouts", default="nchw,channels_last",
                        help="layouts of the per-dtype units (default: %(default)s)")
    parser.add_argument("--part", default="1/1", help="K/N: run every N-th unit, from the K-th")
    parser.add_argument("--record", help="write the launched kernels to this JSON file")
    parser.add_argument("--cuda-coverage", action="store_true",
                        help="record the CUDA kernels launched (torch.profiler; not under the sanitizer)")
    parser.add_argument("--merge", nargs="+", metavar="FILE",
                        help="check the records of all parts: every Triton (and CUDA) kernel launched")
    parser.add_argument("--ptxas", help="the build's ptxas table (scripts/ptxas_summary.py): the CUDA "
                                        "kernels --merge expects")
    parser.add_argument("--list", action="store_true", help="print the units and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each unit's time")
    args = parser.parse_args(argv)
    k, n = (int(v) for v in args.part.split("/"))
    if not 1 <= k <= n:
        parser.error(f"--part {args.part}: want K/N with 1 <= K <= N")
    args.part = (k, n)
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    args.layouts = [v.strip() for v in args.layouts.split(",") if v.strip()]
    if not set(args.layouts) <= {"nchw", "channels_last"}:
        parser.error("--layouts: choose from nchw, channels_last")
    if not set(args.dtypes) <= set(DTYPE_NAMES):
        parser.error(f"--dtypes: choose from {DTYPE_NAMES}")
    return args


# the checkout's pydense (an in-place build) before any installed one
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.device == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import pydense  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
LAUNCHED = set()


# ---------------------------------------------------------------------------------------------
# Which kernels ran


def _triton_classes():
    from triton.runtime.jit import JITFunction

    classes = [JITFunction]
    try:
        from triton.runtime.interpreter import InterpretedFunction

        classes.append(InterpretedFunction)
    except ImportError:
        pass
    return tuple(classes)


def _kernel_name(fn):
    return f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}"


def record_triton_launches():
    """Note every Triton launch (compiled or interpreted) in LAUNCHED."""
    for cls in _triton_classes():
        original = cls.run

        def run(self, *args, _original=original, **kwargs):
            LAUNCHED.add(_kernel_name(self.fn))
            return _original(self, *args, **kwargs)

        cls.run = run


def triton_kernels():
    """The names (``module.function``) of every launchable Triton kernel in pydense.kernels: the
    ``@triton.jit`` functions named ``*_kernel`` (the others are device helpers)."""
    import importlib
    import pkgutil

    import pydense.kernels as package

    classes, names = _triton_classes(), set()
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):  # kernels/conv/ too
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            for _ in range(3):  # Autotuner / Heuristics wrap the JIT function as .fn
                if isinstance(obj, classes) or not hasattr(obj, "fn"):
                    break
                obj = obj.fn
            if (isinstance(obj, classes) and obj.fn.__module__ == module.__name__
                    and obj.fn.__name__.endswith("_kernel")):
                names.add(_kernel_name(obj.fn))
    return sorted(names)


def _cuda_base_name(name):
    """'void max_unpool::max_unpool2d_gather_kernel<float, long, int>(...)' ->
    'max_unpool::max_unpool2d_gather_kernel'."""
    name = re.sub(r"^void\s+", "", name.strip())
    return re.split(r"[<(]", name, maxsplit=1)[0].strip()


def ptxas_kernels(path):
    """The CUDA kernels the build compiled, from scripts/ptxas_summary.py's table."""
    names = set()
    with open(path) as f:
        for line in f:
            m = re.match(r"sm_\d+\s+\d+\s+\d+\s+\d+\s+(.*)$", line.strip())
            if m:
                names.add(_cuda_base_name(m.group(1)))
    return sorted(names)


def merge(paths, ptxas=None):
    """Print the coverage of the parts' records; 0 when every kernel launched, else 5."""
    launched, defined, cuda = set(), set(), None
    paths = [p for p in paths if os.path.exists(p)]
    if not paths:
        print("no records: no part of the sample finished")
        return 5
    for path in paths:
        with open(path) as f:
            rec = json.load(f)
        launched |= set(rec["triton_launched"])
        defined |= set(rec["triton_defined"])
        if rec.get("cuda_launched") is not None:
            cuda = (cuda or set()) | set(rec["cuda_launched"])
    status = 0
    missing = sorted(defined - launched)
    print(f"Triton kernels launched: {len(defined) - len(missing)}/{len(defined)}"
          + (f"; not launched: {', '.join(missing)}" if missing else ""))
    status |= 5 if missing else 0
    if cuda is None:
        print("CUDA kernels launched: not recorded (the parts ran under the sanitizer)")
    elif ptxas and os.path.exists(ptxas):
        expected = set(ptxas_kernels(ptxas))
        gone = sorted(expected - cuda)
        print(f"CUDA kernels launched: {len(expected) - len(gone)}/{len(expected)}"
              + (f"; not launched: {', '.join(gone)}" if gone else ""))
        status |= 5 if gone else 0
    else:
        print(f"CUDA kernels launched: {len(cuda)} names recorded (no ptxas table to compare with)")
    return status


# ---------------------------------------------------------------------------------------------
# The units: (dev, backend, dtype, fmt) for the per-dtype groups, (dev, backend, dtypes) for the
# metric groups.


def _flat(t):
    """A 1-D view of a dense tensor's storage, in memory order (any layout)."""
    return t.as_strided((t.numel(),), (1,))


def unpool(dev, backend, dtype, fmt):
    x = torch.randn(2, 5, 19, 23, device=dev, dtype=dtype).contiguous(memory_format=fmt)
    y, idx = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
    bad = idx.clone()
    _flat(bad)[::7] = 0                        # out of window + duplicates
    _flat(bad)[3] = -5                         # invalid, checks off: dropped
    _flat(bad)[11] = 2**32 + 1                 # invalid (int32-truncation trap)
    for ind in (idx, bad):
        y.requires_grad_(True)
        out = pydense.functional.max_unpool2d(y, ind, 2, output_size=x.shape[-2:],
                                              backend=backend, check_indices=False)
        out.backward(torch.randn_like(out))
        y.grad = None
    y3, idx3 = F.max_pool2d(x, 3, 2, padding=1, return_indices=True)
    pydense.functional.max_unpool2d(y3, idx3, 3, 2, 1, output_size=x.shape[-2:],
                                    backend=backend, check_indices=False)


def pool(dev, backend, dtype, fmt):
    # max_pool2d_with_indices (int64 / compact uint8; SegNet 2x2 ceil, overlapping padded and
    # dilated windows) and unpooling of compact offsets, forward and backward; an invalid compact
    # offset with checks off must be dropped, never addressed.
    x = torch.randn(2, 5, 19, 23, device=dev, dtype=dtype).contiguous(memory_format=fmt)
    windows = ((2, 2, 0, 1, True), (3, 2, 1, 1, False), (3, 1, 1, 2, True))
    for k, s_, p, d, ceil in windows[:SMALL["pool"]] if small else windows:
        for compact in (False, True):
            xp = x.detach().clone().requires_grad_()
            yp, ip = pydense.functional.max_pool2d_with_indices(
                xp, k, s_, p, d, ceil, compact=compact, backend=backend)
            yp.backward(torch.randn_like(yp))
            yu = yp.detach().requires_grad_()
            up = pydense.functional.max_unpool2d(yu, ip, k, s_, p, output_size=x.shape[-2:],
                                                 dilation=d, backend=backend, check_indices=False)
            up.backward(torch.randn_like(up))
            if compact:
                bad_c = ip.clone(memory_format=torch.contiguous_format)
                bad_c.view(-1)[::5] = 255
                pydense.functional.max_unpool2d(yu.detach(), bad_c, k, s_, p,
                                                output_size=x.shape[-2:], dilation=d,
                                                backend=backend, check_indices=False)


def shuffle(dev, backend, dtype, fmt):
    for r in (1, 2, 3):
        s = torch.randn(2, 9 * r * r, 7, 5, device=dev, dtype=dtype).contiguous(
            memory_format=fmt).requires_grad_()
        up = pydense.functional.pixel_shuffle(s, r, backend=backend)
        up.backward(torch.randn_like(up))
        pydense.functional.pixel_unshuffle(s.detach()[..., :r * (7 // r), :r * (5 // r)], r,
                                           backend=backend)


def interpolate(dev, backend, dtype, fmt):
    for kw in (dict(size=(37, 29)), dict(size=(5, 4), align_corners=True),
               dict(scale_factor=(2.5, 8.0)), dict(scale_factor=0.4)):
        b = torch.randn(2, 3, 11, 9, device=dev, dtype=dtype).contiguous(
            memory_format=fmt).requires_grad_()
        up = pydense.functional.interpolate(b, mode="bilinear", backend=backend, **kw)
        up.backward(torch.randn_like(up))


def deconv(dev, backend, dtype, fmt):
    cases = ((2, 0, None), (8, 31, (45, 40)), (32, 19, (70, 70)))
    for factor, crop, size in cases[:SMALL["deconv"]] if small else cases:
        d = torch.randn(2, 3, 9, 8, device=dev, dtype=dtype).contiguous(
            memory_format=fmt).requires_grad_()
        up = pydense.functional.bilinear_deconv2d(d, factor, crop=crop, output_size=size,
                                                  backend=backend)
        up.backward(torch.randn_like(up))


def concat(dev, backend, dtype, fmt):
    for mode, sf, hw in (("bilinear", 2, (12, 16)), ("bilinear", None, (15, 12)),
                         ("nearest", (2.5, 1.5), (15, 12))):
        u = torch.randn(2, 3, 6, 8, device=dev, dtype=dtype).contiguous(
            memory_format=fmt).requires_grad_()
        sk = torch.randn(2, 5, *hw, device=dev, dtype=dtype, requires_grad=True)
        up = pydense.functional.upsample_concat(u, sk, scale_factor=sf, mode=mode, backend=backend)
        up.backward(torch.randn_like(up))


def skip(dev, backend, dtype, fmt):
    for k, cs, score, off in ((3, 40, True, (1, 2)), (3, 3, False, 0), (35, 6, True, 1)):
        co = torch.randn(2, k, 4, 3, device=dev, dtype=dtype).contiguous(
            memory_format=fmt).requires_grad_()
        sf = torch.randn(2, cs, 12, 11, device=dev, dtype=dtype, requires_grad=True)
        wf = torch.randn(k, cs, device=dev, dtype=dtype, requires_grad=True) if score else None
        up = pydense.functional.fcn_skip(co, sf, offset=off, skip_scale=0.5, score_weight=wf,
                                         backend=backend)
        up.backward(torch.randn_like(up))


# conv2d / conv2d_fused / conv_transpose2d: dense (tensor-core path for fp16/bf16 on the cuda
# backend), grouped, depthwise x2, large dilation and padding, strides.
CONV_CASES = ((32, 48, 3, 1, 2, 2, 1), (8, 12, 3, 2, 5, 3, 2), (6, 12, 3, 1, 6, 6, 6),
              (4, 4, 5, 3, 9, 4, 1))
# The CPU dry run (Triton's interpreter, ~100x slower than a GPU): fewer cases where they are
# costly; every kernel still runs (the --merge check).
SMALL = {"conv": CONV_CASES[0::2], "conv_transpose": CONV_CASES[:1], "deconv": 2, "pool": 1,
         "conv_shuffle": 1}
small = False


def conv(dev, backend, dtype, fmt):
    for (c, oc, k, s, p, d, g) in (SMALL["conv"] if small else CONV_CASES):
        xc = torch.randn(2, c, 13, 11, device=dev, dtype=dtype).contiguous(
            memory_format=fmt).requires_grad_()
        wc = torch.randn(oc, c // g, k, k, device=dev, dtype=dtype, requires_grad=True)
        out = pydense.functional.conv2d_fused(xc, wc, None, s, p, d, g, activation="relu",
                                              scale=0.5, backend=backend)
        out.backward(torch.randn_like(out))


def conv_transpose(dev, backend, dtype, fmt):
    for (c, oc, k, s, p, d, g) in (SMALL["conv_transpose"] if small else CONV_CASES):
        xc = torch.randn(2, c, 13, 11, device=dev, dtype=dtype).contiguous(
            memory_format=fmt).requires_grad_()
        wt = torch.randn(c, oc // g, k, k, device=dev, dtype=dtype, requires_grad=True)
        out = pydense.functional.conv_transpose2d(xc, wt, None, s, 1, s - 1, g, d, backend=backend)
        out.backward(torch.randn_like(out))


def conv_shuffle(dev, backend, dtype, fmt):
    # conv2d_pixel_shuffle: EDSR-like (tensor-core path for fp16/bf16 on cuda), C = 1
    cases = ((32, 16, 3, 2), (24, 17, 3, 3), (3, 5, 1, 2), (1, 2, 3, 3))
    for (c, co, k, r) in cases[-SMALL["conv_shuffle"]:] if small else cases:
        xs = torch.randn(2, c, 13, 11, device=dev, dtype=dtype).contiguous(
            memory_format=fmt).requires_grad_()
        ws = torch.randn(co * r * r, c, k, k, device=dev, dtype=dtype, requires_grad=True)
        bs = torch.randn(co * r * r, device=dev, dtype=dtype, requires_grad=True)
        out = pydense.functional.conv2d_pixel_shuffle(xs, ws, bs, r, backend=backend)
        out.backward(torch.randn_like(out))


def confusion(dev, backend, dtypes):
    for k, (n, h, w) in ((19, (2, 37, 53)), (150, (1, 23, 29))):
        t = torch.randint(0, k, (n, h, w), device=dev)
        t[:, ::5] = 255
        t[0, 0, :4] = torch.tensor([k, -3, k + 100, 2**40], device=dev)  # unchecked: dropped
        p = torch.randint(0, k, (n, h, w), device=dev)
        p[0, 1, :2] = torch.tensor([-1, k], device=dev)
        for pred, tgt in ((p, t), (p.to(torch.uint8) if k < 256 else p, t.clamp(0, 255).to(torch.uint8))):
            pydense.metrics.confusion_matrix(pred, tgt, k, backend=backend, check_labels=False)
        for dtype in tuple(dtypes) + (torch.float64,):
            for fmt in (torch.contiguous_format, torch.channels_last):
                x = torch.randn(n, k, h, w, device=dev, dtype=dtype).contiguous(memory_format=fmt)
                pydense.metrics.confusion_matrix(x, t, k, backend=backend, check_labels=False)


def pairs(dev, backend, dtypes):
    pad = torch.iinfo(torch.int64).max
    for g, p, (n, h, w) in ((40, 30, (3, 37, 53)), (150, 100, (2, 23, 29)), (0, 5, (2, 9, 7))):
        gt_ids = torch.sort(torch.randint(0, 300, (n, g), device=dev), dim=1).values
        pred_ids = torch.sort(torch.randint(0, 300, (n, p), device=dev), dim=1).values
        if g:
            gt_ids[0, -3:] = pad
        gt = torch.randint(0, 320, (n, w, h), device=dev, dtype=torch.int32).transpose(1, 2)
        pred = torch.randint(0, 320, (n, h, w), device=dev)
        pydense.ops.panoptic_pairs.panoptic_pair_counts(gt, pred, gt_ids, pred_ids, backend=backend)


def coverage(dev, backend, dtypes):
    for k in (1, 64, 65, 130):
        masks = torch.rand(140, 37, 53, device=dev) < 0.3
        order = torch.randperm(140, device=dev)[:k]
        for m in (masks, masks.to(torch.uint8), masks.transpose(1, 2).contiguous().transpose(1, 2)):
            pydense.ops.instance_coverage.instance_coverage(m, order, backend=backend,
                                                            check_order=False)
        scores = torch.rand(140, device=dev)
        semantic = torch.randint(0, 20, (37, 53), device=dev)
        pydense.panoptic_fusion.fuse(semantic, masks[:k], scores[:k], torch.zeros(k, dtype=torch.long),
                              thing_ids=range(10), stuff_area_threshold=16, backend=backend)


PER_DTYPE = (unpool, pool, shuffle, interpolate, deconv, concat, skip, conv, conv_transpose,
             conv_shuffle)
METRICS = (confusion, pairs, coverage)


LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def units(device, dtype_names, layouts=tuple(LAYOUTS)):
    """[(label, thunk)] of the whole sample on ``device`` ("cpu": Triton only, interpreted)."""
    global small
    dev = torch.device(device)
    small = dev.type == "cpu"
    backends = ("cuda", "triton") if dev.type == "cuda" else ("triton",)
    dtypes = [DTYPES[d] for d in dtype_names]
    out = []
    for backend in backends:
        for dtype in dtypes:
            for lay, fmt in ((lay, LAYOUTS[lay]) for lay in layouts):
                for group in PER_DTYPE:
                    out.append((f"{group.__name__} {backend} {str(dtype)[6:]} {lay}",
                                lambda g=group, b=backend, d=dtype, f=fmt: g(dev, b, d, f)))
        for group in METRICS:
            out.append((f"{group.__name__} {backend}", lambda g=group, b=backend: g(dev, b, dtypes)))
    return out


def main(args):
    if args.merge:
        return merge(args.merge, args.ptxas)
    if args.device == "cuda":
        assert torch.cuda.is_available(), "needs a CUDA GPU (or --device cpu for the dry run)"
    torch.manual_seed(0)
    k, n = args.part
    todo = units(args.device, args.dtypes, args.layouts)[k - 1::n]
    if args.list:
        print("\n".join(label for label, _ in todo))
        return 0
    record_triton_launches()
    prof = None
    if args.cuda_coverage:
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
        prof.__enter__()
    for label, thunk in todo:
        start = time.perf_counter()
        thunk()
        if args.verbose:
            print(f"  {label}: {time.perf_counter() - start:.1f} s", flush=True)
    if args.device == "cuda":
        torch.cuda.synchronize()
    cuda = None
    if prof is not None:
        prof.__exit__(None, None, None)
        cuda = sorted({_cuda_base_name(e.name) for e in prof.events()
                       if e.device_type == torch.autograd.DeviceType.CUDA})
    rec = {"triton_launched": sorted(LAUNCHED), "triton_defined": triton_kernels(),
           "cuda_launched": cuda, "units": [label for label, _ in todo]}
    print(f"sanitizer sample part {k}/{n}: {len(todo)} units done")
    if args.record:
        with open(args.record, "w") as f:
            json.dump(rec, f, indent=1)
        return 0
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"sanitizer-sample-{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump(rec, f)
    status = merge([path], args.ptxas) if n == 1 else 0
    os.remove(path)
    return status


if __name__ == "__main__":
    sys.exit(main(ARGS))
