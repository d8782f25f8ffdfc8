"""A small run of every CUDA and Triton kernel for compute-sanitizer (memcheck/racecheck).

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

    compute-sanitizer --tool memcheck python scripts/sanitizer_sample.py
"""
import torch
import torch.nn.functional as F

import pydense


def main():
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    torch.manual_seed(0)
    for backend in ("cuda", "triton"):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            for fmt in (torch.contiguous_format, torch.channels_last):
                x = torch.randn(2, 5, 19, 23, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
                y, idx = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
                bad = idx.clone()
                bad.view(-1)[::7] = 0                      # out of window + duplicates
                bad.view(-1)[3] = -5                       # invalid, checks off: dropped
                bad.view(-1)[11] = 2**32 + 1               # invalid (int32-truncation trap)
                for ind in (idx, bad):
                    y.requires_grad_(True)
                    out = pydense.functional.max_unpool2d(y, ind, 2, output_size=x.shape[-2:],
                                                          backend=backend, check_indices=False)
                    out.backward(torch.randn_like(out))
                    y.grad = None
                y3, idx3 = F.max_pool2d(x, 3, 2, padding=1, return_indices=True)
                pydense.functional.max_unpool2d(y3, idx3, 3, 2, 1, output_size=x.shape[-2:],
                                                backend=backend, check_indices=False)
                # max_pool2d_with_indices (int64 / compact uint8; SegNet 2x2 ceil, overlapping
                # padded and dilated windows) and unpooling of compact offsets, forward and backward;
                # an invalid compact offset with checks off must be dropped, never addressed.
                for k, s_, p, d, ceil in ((2, 2, 0, 1, True), (3, 2, 1, 1, False), (3, 1, 1, 2, True)):
                    for compact in (False, True):
                        xp = x.detach().clone().requires_grad_()
                        yp, ip = pydense.functional.max_pool2d_with_indices(
                            xp, k, s_, p, d, ceil, compact=compact, backend=backend)
                        yp.backward(torch.randn_like(yp))
                        yu = yp.detach().requires_grad_()
                        up = pydense.functional.max_unpool2d(yu, ip, k, s_, p, output_size=x.shape[-2:],
                                                             dilation=d,
                                                             backend=backend, check_indices=False)
                        up.backward(torch.randn_like(up))
                        if compact:
                            bad_c = ip.clone(memory_format=torch.contiguous_format)
                            bad_c.view(-1)[::5] = 255
                            pydense.functional.max_unpool2d(yu.detach(), bad_c, k, s_, p,
                                                            output_size=x.shape[-2:], dilation=d,
                                                            backend=backend, check_indices=False)
                for r in (1, 2, 3):
                    s = torch.randn(2, 9 * r * r, 7, 5, device="cuda", dtype=dtype).contiguous(
                        memory_format=fmt).requires_grad_()
                    up = pydense.functional.pixel_shuffle(s, r, backend=backend)
                    up.backward(torch.randn_like(up))
                    pydense.functional.pixel_unshuffle(s.detach()[..., :r * (7 // r), :r * (5 // r)], r,
                                                       backend=backend)
                for kw in (dict(size=(37, 29)), dict(size=(5, 4), align_corners=True),
                           dict(scale_factor=(2.5, 8.0)), dict(scale_factor=0.4)):
                    b = torch.randn(2, 3, 11, 9, device="cuda", dtype=dtype).contiguous(
                        memory_format=fmt).requires_grad_()
                    up = pydense.functional.interpolate(b, mode="bilinear", backend=backend, **kw)
                    up.backward(torch.randn_like(up))
                for factor, crop, size in ((2, 0, None), (8, 31, (60, 50)), (32, 19, (70, 70))):
                    d = torch.randn(2, 3, 9, 8, device="cuda", dtype=dtype).contiguous(
                        memory_format=fmt).requires_grad_()
                    up = pydense.functional.bilinear_deconv2d(d, factor, crop=crop, output_size=size,
                                                              backend=backend)
                    up.backward(torch.randn_like(up))
                for mode, sf in (("bilinear", 2), ("nearest", (2.5, 1.5))):
                    u = torch.randn(2, 3, 6, 8, device="cuda", dtype=dtype).contiguous(
                        memory_format=fmt).requires_grad_()
                    sk = torch.randn(2, 5, 15, 12, device="cuda", dtype=dtype, requires_grad=True)
                    up = pydense.functional.upsample_concat(u, sk, scale_factor=sf, mode=mode,
                                                            backend=backend)
                    up.backward(torch.randn_like(up))
                for k, cs, score, off in ((3, 40, True, (1, 2)), (3, 3, False, 0), (35, 6, True, 1)):
                    co = torch.randn(2, k, 4, 3, device="cuda", dtype=dtype).contiguous(
                        memory_format=fmt).requires_grad_()
                    sf = torch.randn(2, cs, 12, 11, device="cuda", dtype=dtype, requires_grad=True)
                    wf = torch.randn(k, cs, device="cuda", dtype=dtype, requires_grad=True) if score else None
                    up = pydense.functional.fcn_skip(co, sf, offset=off, skip_scale=0.5, score_weight=wf,
                                                     backend=backend)
                    up.backward(torch.randn_like(up))
                # conv2d / conv2d_fused / conv_transpose2d: dense (tensor-core path for fp16/bf16
                # on the cuda backend), grouped, depthwise x2, large dilation and padding, strides.
                for (c, oc, k, s, p, d, g) in ((32, 48, 3, 1, 2, 2, 1), (8, 12, 3, 2, 5, 3, 2),
                                               (6, 12, 3, 1, 6, 6, 6), (4, 4, 5, 3, 9, 4, 1)):
                    xc = torch.randn(2, c, 13, 11, device="cuda", dtype=dtype).contiguous(
                        memory_format=fmt).requires_grad_()
                    wc = torch.randn(oc, c // g, k, k, device="cuda", dtype=dtype, requires_grad=True)
                    out = pydense.functional.conv2d_fused(xc, wc, None, s, p, d, g, activation="relu",
                                                          scale=0.5, backend=backend)
                    out.backward(torch.randn_like(out))
                    wt = torch.randn(c, oc // g, k, k, device="cuda", dtype=dtype, requires_grad=True)
                    out = pydense.functional.conv_transpose2d(xc, wt, None, s, 1, s - 1, g, d,
                                                              backend=backend)
                    out.backward(torch.randn_like(out))
                # conv2d_pixel_shuffle: EDSR-like (tensor-core path for fp16/bf16 on cuda), C = 1
                for (c, co, k, r) in ((32, 16, 3, 2), (24, 17, 3, 3), (3, 5, 1, 2), (1, 2, 3, 3)):
                    xs = torch.randn(2, c, 13, 11, device="cuda", dtype=dtype).contiguous(
                        memory_format=fmt).requires_grad_()
                    ws = torch.randn(co * r * r, c, k, k, device="cuda", dtype=dtype, requires_grad=True)
                    bs = torch.randn(co * r * r, device="cuda", dtype=dtype, requires_grad=True)
                    out = pydense.functional.conv2d_pixel_shuffle(xs, ws, bs, r, backend=backend)
                    out.backward(torch.randn_like(out))
    for backend in ("cuda", "triton"):
        for k, (n, h, w) in ((19, (2, 37, 53)), (150, (1, 23, 29))):
            t = torch.randint(0, k, (n, h, w), device="cuda")
            t[:, ::5] = 255
            t[0, 0, :4] = torch.tensor([k, -3, k + 100, 2**40], device="cuda")  # unchecked: dropped
            p = torch.randint(0, k, (n, h, w), device="cuda")
            p[0, 1, :2] = torch.tensor([-1, k], device="cuda")
            for pred, tgt in ((p, t), (p.to(torch.uint8) if k < 256 else p, t.clamp(0, 255).to(torch.uint8))):
                pydense.metrics.confusion_matrix(pred, tgt, k, backend=backend, check_labels=False)
            for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
                for fmt in (torch.contiguous_format, torch.channels_last):
                    x = torch.randn(n, k, h, w, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
                    pydense.metrics.confusion_matrix(x, t, k, backend=backend, check_labels=False)
    pad = torch.iinfo(torch.int64).max
    for backend in ("cuda", "triton"):
        for g, p, (n, h, w) in ((40, 30, (3, 37, 53)), (150, 100, (2, 23, 29)), (0, 5, (2, 9, 7))):
            gt_ids = torch.sort(torch.randint(0, 300, (n, g), device="cuda"), dim=1).values
            pred_ids = torch.sort(torch.randint(0, 300, (n, p), device="cuda"), dim=1).values
            if g:
                gt_ids[0, -3:] = pad
            gt = torch.randint(0, 320, (n, w, h), device="cuda", dtype=torch.int32).transpose(1, 2)
            pred = torch.randint(0, 320, (n, h, w), device="cuda")
            pydense.ops.panoptic_pairs.pair_counts(gt, pred, gt_ids, pred_ids, backend=backend)
    for backend in ("cuda", "triton"):
        for k in (1, 64, 65, 130):
            masks = torch.rand(140, 37, 53, device="cuda") < 0.3
            order = torch.randperm(140, device="cuda")[:k]
            for m in (masks, masks.to(torch.uint8), masks.transpose(1, 2).contiguous().transpose(1, 2)):
                pydense.ops.instance_coverage.instance_coverage(m, order, backend=backend,
                                                                check_order=False)
            scores = torch.rand(140, device="cuda")
            semantic = torch.randint(0, 20, (37, 53), device="cuda")
            pydense.panoptic.fuse(semantic, masks[:k], scores[:k], torch.zeros(k, dtype=torch.long),
                                  thing_ids=range(10), stuff_area_threshold=16, backend=backend)
    torch.cuda.synchronize()
    print("sanitizer sample: done")


if __name__ == "__main__":
    main()
