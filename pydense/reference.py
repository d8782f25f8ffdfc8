"""Plain-PyTorch oracles (run them in float64 on CPU) that the tests compare every backend to.

They are written from the op's definition, not from the kernels' algorithms.
"""
import torch


def max_unpool2d(input, indices, output_size):
    """out[n, c, t] = input[n, c, i] for t = indices[n, c, i]; the later i wins a duplicate t.

    ``input``/``indices``: (N, C, H, W); ``output_size``: (OH, OW). Indices must be in range.
    """
    n, c = input.shape[:2]
    plane = output_size[0] * output_size[1]
    flat_idx = indices.reshape(n, c, -1)
    flat_in = input.reshape(n, c, -1)
    pos = torch.arange(flat_idx.shape[-1], device=input.device).expand_as(flat_idx)
    # The winner of each target is the largest input position pointing at it.
    winner = torch.full((n, c, plane), -1, dtype=torch.int64, device=input.device)
    winner.scatter_reduce_(2, flat_idx, pos, reduce="amax")
    out = torch.zeros((n, c, plane), dtype=input.dtype, device=input.device)
    wins = winner.gather(2, flat_idx) == pos
    out.scatter_add_(2, torch.where(wins, flat_idx, 0), torch.where(wins, flat_in, 0).to(out.dtype))
    return out.view(n, c, *output_size)


def max_unpool2d_backward(grad_output, indices):
    """grad_input[n, c, i] = grad_output[n, c, indices[n, c, i]]."""
    n, c = indices.shape[:2]
    return grad_output.reshape(n, c, -1).gather(2, indices.reshape(n, c, -1)).view(indices.shape)


def pixel_shuffle(input, r):
    """out[n, c, h*r + i, w*r + j] = input[n, c*r*r + i*r + j, h, w], by explicit loops over (i, j)."""
    n, crr, h, w = input.shape
    out = input.new_empty(n, crr // (r * r), h * r, w * r)
    for i in range(r):
        for j in range(r):
            out[:, :, i::r, j::r] = input[:, (i * r + j)::(r * r)]
    return out


def pixel_unshuffle(input, r):
    """out[n, c*r*r + i*r + j, h, w] = input[n, c, h*r + i, w*r + j], by explicit loops over (i, j)."""
    n, c, hr, wr = input.shape
    out = input.new_empty(n, c * r * r, hr // r, wr // r)
    for i in range(r):
        for j in range(r):
            out[:, (i * r + j)::(r * r)] = input[:, :, i::r, j::r]
    return out


def bilinear_matrix(in_size, out_size, align_corners, scale=None):
    """(out, in) float64 matrix of 1-D linear interpolation, from PyTorch's definition:
    src = scale * o (align_corners) or max(scale * (o + 0.5) - 0.5, 0), scale = (in - 1) / (out - 1)
    resp. 1 / scale_factor or in / out; taps floor(src) and floor(src) + 1 clamped to the edge."""
    if align_corners:
        s = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    else:
        s = 1.0 / scale if scale else in_size / out_size
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    for o in range(out_size):
        src = s * o if align_corners else max(s * (o + 0.5) - 0.5, 0.0)
        i0 = min(int(src), in_size - 1)
        i1 = min(i0 + 1, in_size - 1)
        lam = min(max(src - i0, 0.0), 1.0)
        m[o, i0] += 1 - lam
        m[o, i1] += lam
    return m


def upsample_bilinear2d(input, output_size, align_corners, scales=(None, None)):
    """Bilinear upsampling of (N, C, H, W) as out = A_h @ x @ A_w^T (autograd gives the backward)."""
    ah = bilinear_matrix(input.shape[-2], output_size[0], align_corners, scales[0]).to(input.device)
    aw = bilinear_matrix(input.shape[-1], output_size[1], align_corners, scales[1]).to(input.device)
    return torch.einsum("oh,nchw,pw->ncop", ah.to(input.dtype), input, aw.to(input.dtype))


def nearest_matrix(in_size, out_size, scale=None, exact=False):
    """(out, in) 0/1 float64 matrix of 1-D nearest-neighbour resampling, PyTorch's definition:
    src = min(floor(s * o), in - 1) ("nearest") or min(floor(s * (o + 0.5)), in - 1)
    ("nearest-exact"), with s = 1 / scale or in / out rounded to float32 as ATen computes it."""
    s = float(torch.tensor(1.0 / scale if scale else in_size / out_size, dtype=torch.float32))
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    for o in range(out_size):
        pos = torch.tensor((o + 0.5) if exact else o, dtype=torch.float32) * torch.tensor(s, dtype=torch.float32)
        m[o, min(int(pos.floor()), in_size - 1)] = 1
    return m


def upsample_concat(x, skip, mode="bilinear", align_corners=False, scales=(None, None)):
    """``torch.cat([upsample(x) to skip's size, skip], 1)`` with the matrices above."""
    out_hw = skip.shape[-2:]
    if mode == "bilinear":
        up = upsample_bilinear2d(x, out_hw, align_corners, scales)
    else:
        a = [nearest_matrix(x.shape[2 + d], out_hw[d], scales[d], mode == "nearest-exact").to(x)
             for d in range(2)]
        up = torch.einsum("oh,nchw,pw->ncop", a[0], x, a[1])
    return torch.cat([up, skip.to(up.dtype)], 1)


def fcn_skip(coarse, skip, factor, offset, skip_scale=1.0, weight=None, bias=None):
    """FCN's skip fusion from its definition: ``conv_transpose2d(coarse, W, stride=f)`` with FCN's
    bilinear kernel w(i, j) = (1 - |i - c| / f)(1 - |j - c| / f), c = f - 0.5, on the channel
    diagonal, plus the crop at ``offset`` of ``score(skip_scale * skip)`` (the 1x1 convolution
    ``weight`` (K, CS[, 1, 1]) and ``bias``; the identity without a weight)."""
    k = coarse.shape[1]
    j = torch.arange(2 * factor, dtype=torch.float64)
    k1 = 1 - (j - (factor - 0.5)).abs() / factor
    wt = torch.zeros(k, k, 2 * factor, 2 * factor, dtype=torch.float64)
    wt[range(k), range(k)] = torch.outer(k1, k1)
    up = torch.nn.functional.conv_transpose2d(coarse, wt.to(coarse), stride=factor)
    s = skip * skip_scale
    if weight is not None:
        s = torch.einsum("nchw,kc->nkhw", s, weight.reshape(k, -1).to(s))
        if bias is not None:
            s = s + bias.to(s)[None, :, None, None]
    oh, ow = up.shape[-2:]
    off = (offset, offset) if isinstance(offset, int) else offset
    return up + s[..., off[0]:off[0] + oh, off[1]:off[1] + ow]


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           activation=None, residual=None, scale=1.0):
    """float64 ``residual + scale * act(F.conv2d(...))`` (the convolution oracle: ATen's float64
    CPU convolution, a plain direct/GEMM computation in double precision)."""
    y = torch.nn.functional.conv2d(input.double(), weight.double(),
                                   None if bias is None else bias.double(), stride, padding,
                                   dilation, groups)
    y = y.relu() if activation == "relu" else y
    return y * scale + (0 if residual is None else residual.double())


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """float64 ``F.conv_transpose2d`` (oracle)."""
    return torch.nn.functional.conv_transpose2d(
        input.double(), weight.double(), None if bias is None else bias.double(), stride, padding,
        output_padding, groups, dilation)


def conv2d_pixel_shuffle(input, weight, bias=None, upscale_factor=1, padding=None):
    """float64 ``pixel_shuffle(conv2d(input, weight, bias, padding=padding), upscale_factor)``
    (padding default: kernel_size // 2 per axis), shuffled by :func:`pixel_shuffle`'s loops."""
    if padding is None:
        padding = (weight.shape[2] // 2, weight.shape[3] // 2)
    return pixel_shuffle(conv2d(input, weight, bias, padding=padding), upscale_factor)


def max_pool2d_with_indices(input, kernel_size, stride, padding=(0, 0), dilation=(1, 1),
                            ceil_mode=False):
    """(values, flat int64 indices, compact window offsets) of 2-D max pooling, from the
    definition with ATen's rule, tap by tap: a window's in-bounds taps (ih, iw) = (oh*s - p + kh*d,
    ow*s - p + kw*d) are scanned in row-major order from -inf; a tap becomes the maximum iff it is
    greater or NaN; the index starts at the first in-bounds tap. Sizes as ATen (ceil_mode too)."""
    (kh_, kw_), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    n, c, h, w = input.shape

    def size(i, k, s, p, d):
        o = (i + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
        return o - 1 if ceil_mode and (o - 1) * s >= i + p else o

    oh, ow = size(h, kh_, sh, ph, dh), size(w, kw_, sw, pw, dw)
    rows = torch.arange(oh).view(-1, 1) * sh - ph
    cols = torch.arange(ow).view(1, -1) * sw - pw
    best = torch.full((n, c, oh, ow), float("-inf"), dtype=input.dtype)
    flat = torch.full((n, c, oh, ow), -1, dtype=torch.int64)
    compact = torch.full((n, c, oh, ow), -1, dtype=torch.int64)
    for kh in range(kh_):
        for kw in range(kw_):
            ih, iw = rows + kh * dh, cols + kw * dw
            valid = (ih >= 0) & (ih < h) & (iw >= 0) & (iw < w)
            v = input[:, :, ih.clamp(0, h - 1), iw.clamp(0, w - 1)]
            first = valid & (flat < 0)  # the running index starts at the first in-bounds tap
            upd = valid & ((v > best) | v.isnan())
            take = first | upd
            best = torch.where(upd, v, best)
            flat = torch.where(take, ih * w + iw, flat)
            compact = torch.where(take, torch.tensor(kh * kw_ + kw), compact)
    return best, flat, compact


def max_pool2d_backward(grad_output, flat_indices, input_hw):
    """grad_input[n, c, i] = sum of grad_output[n, c, o] over outputs o whose flat index is i."""
    n, c = grad_output.shape[:2]
    gi = torch.zeros(n, c, input_hw[0] * input_hw[1], dtype=grad_output.dtype)
    gi.scatter_add_(2, flat_indices.reshape(n, c, -1), grad_output.reshape(n, c, -1))
    return gi.view(n, c, *input_hw)


def bilinear_deconv2d(input, factor, crop=0, output_size=None):
    """FCN's fixed upsampling: ``conv_transpose2d`` (kernel 2f, stride f, no padding) with the
    bilinear kernel ``1 - |j - (f - 0.5)| / f`` per axis on the channel diagonal, then the window
    ``[crop, crop + output_size)`` (default: to the end) of the full output."""
    c = input.shape[1]
    k1 = torch.tensor([1 - abs(j - (factor - 0.5)) / factor for j in range(2 * factor)],
                      dtype=input.dtype, device=input.device)
    w = torch.zeros(c, c, 2 * factor, 2 * factor, dtype=input.dtype, device=input.device)
    for i in range(c):
        w[i, i] = torch.outer(k1, k1)
    full = torch.nn.functional.conv_transpose2d(input, w, stride=factor)
    h, wd = output_size or (full.shape[2] - crop, full.shape[3] - crop)
    return full[..., crop:crop + h, crop:crop + wd]


def confusion_matrix(pred, target, num_classes, ignore_index):
    """``cm[t, p]``: the pixels whose target is t and prediction p, over the pixels whose target is
    not ``ignore_index`` and whose labels both lie in [0, num_classes); ``pred`` (N, H, W) labels
    or (N, K, H, W) scores (argmax over K)."""
    if pred.dim() == 4:
        pred = pred.argmax(1)
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = (t != ignore_index) & (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    counts = torch.bincount(t[keep] * num_classes + p[keep], minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def panoptic_pair_counts(gt, pred, gt_ids, pred_ids, id_bits=24):
    """counts (N, G + 1, P + 1) of every (gt id row index, pred id row index) pair per image: one
    ``unique`` over ``gt << id_bits | pred`` and a dict per table row (the first occurrence of an id
    wins; an id absent from the row goes to the last index)."""
    N, G, P = gt.shape[0], gt_ids.shape[1], pred_ids.shape[1]
    out = torch.zeros((N, G + 1, P + 1), dtype=torch.int64)
    for n in range(N):
        gi, pj = {}, {}
        for i, v in enumerate(gt_ids[n].tolist()):
            gi.setdefault(v, i)
        for j, v in enumerate(pred_ids[n].tolist()):
            pj.setdefault(v, j)
        key = (gt[n].cpu().long().reshape(-1) << id_bits) + pred[n].cpu().long().reshape(-1)
        for k, c in zip(*(a.tolist() for a in torch.unique(key, return_counts=True))):
            out[n, gi.get(k >> id_bits, G), pj.get(k & ((1 << id_bits) - 1), P)] += c
    return out


def instance_coverage(masks, order):
    """(H, W, ceil(K / 64)) int64: bit ``r % 64`` of word ``r // 64`` of pixel (h, w) is set iff
    ``masks[order[r], h, w] != 0`` (K = len(order)); the words hold the bits in two's complement."""
    K = order.numel()
    H, W = masks.shape[1:]
    out = torch.zeros((H, W, (K + 63) // 64), dtype=torch.int64)
    for r, i in enumerate(order.tolist()):
        bit = (1 << (r % 64)) if r % 64 < 63 else -(1 << 63)
        out[:, :, r // 64] |= (masks[i].cpu() != 0).long() * bit
    return out
