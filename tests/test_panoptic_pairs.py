"""Panoptic pair counts on every backend against an independent numpy/python oracle (np.unique
over the packed (gt, pred) pairs, then dictionary lookups of the ids); bad input; opcheck and
torch.compile.

CPU rows run the C++ CPU kernel, the Triton kernels through the interpreter (tiny shapes) and the
torch reference (searchsorted + bincount); CUDA rows run the CUDA C++ kernels, compiled Triton and
torch (skipped without a GPU).
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pydense
from pydense import reference
from pydense.ops import panoptic_pairs as ops
from pydense.ops.panoptic_pairs import panoptic_pair_counts as pair_counts

from helpers import CPU_BACKENDS, backend_params, requires_cuda

BACKENDS = backend_params()
PAD = torch.iinfo(torch.int64).max
ID_BITS = 24


def oracle(gt, pred, gt_ids, pred_ids):
    """counts (N, G + 1, P + 1) as a numpy array (pydense.reference.panoptic_pair_counts)."""
    return reference.panoptic_pair_counts(gt, pred, gt_ids, pred_ids, ID_BITS).numpy()


def table(ids, width):
    """A sorted int64 row of ``ids`` padded with INT64_MAX to ``width``."""
    row = sorted(ids)
    return row + [PAD] * (width - len(row))


def make_case(n, h, w, g, p, seed, high=60, dup=False):
    """(gt, pred, gt_ids, pred_ids) on CPU: per image, tables of up to g / p distinct ids drawn from
    [0, high) (different per image, some rows padded), maps drawing mostly from the tables and
    partly from ids absent from them, plus the largest id 2^24 - 1."""
    gen = torch.Generator().manual_seed(seed)
    maps, tables = [], []
    for width in (g, p):
        rows, img = [], []
        for _ in range(n):
            k = int(torch.randint(max(0, width - 2), width + 1, (1,), generator=gen)) if width else 0
            ids = torch.randperm(high, generator=gen)[:k].tolist()
            if k and n > 1 and len(rows) % 2:
                ids[0] = (1 << ID_BITS) - 1  # the largest allowed id, listed in one image
            if dup and k >= 2:
                ids[1] = ids[0]  # a repeated id: the first index counts it
            rows.append(table(ids, width))
            present = torch.tensor([v for v in ids] or [0])
            pick = present[torch.randint(0, len(present), (h, w), generator=gen)]
            other = torch.randint(0, high + 5, (h, w), generator=gen)
            other[0, 0] = (1 << ID_BITS) - 1
            img.append(torch.where(torch.rand(h, w, generator=gen) < 0.7, pick, other))
        tables.append(torch.tensor(rows, dtype=torch.int64).reshape(n, width))
        maps.append(torch.stack(img))
    return maps[0], maps[1], tables[0], tables[1]


# (N, H, W, G, P, extra): tiny for the Triton interpreter; "slices": 51 * 46 bins = 2 bin slices.
CASES = {"basic": (2, 7, 9, 5, 3, {}), "g0": (2, 5, 6, 0, 4, {}), "p0": (1, 6, 5, 3, 0, {}),
         "both-empty": (2, 3, 4, 0, 0, {}), "one-id": (3, 4, 5, 1, 1, {}),
         "n3-odd": (3, 13, 5, 9, 11, {}), "slices": (1, 12, 11, 50, 45, {"high": 120}),
         "duplicates": (2, 6, 7, 6, 5, {"dup": True}), "single-pixel": (1, 1, 1, 2, 2, {})}
DTYPES = {"i64": (torch.int64, torch.int64), "i32": (torch.int32, torch.int32),
          "i32-i64": (torch.int32, torch.int64)}


def layout(t, name):
    """``t`` (N, H, W) in the named layout, same values: contiguous, transposed in memory, or a
    strided slice of a larger tensor."""
    if name == "transposed":
        return t.transpose(1, 2).contiguous().transpose(1, 2)
    if name == "sliced":
        n, h, w = t.shape
        big = torch.full((n, 2 * h + 1, 3 * w), -7, dtype=t.dtype, device=t.device)
        big[:, 1::2, ::3] = t
        return big[:, 1::2, ::3]
    return t.contiguous()


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtypes", DTYPES)
@pytest.mark.parametrize("lay", ["contiguous", "transposed", "sliced"])
def test_matches_oracle(device, backend, case, dtypes, lay):
    n, h, w, g, p, extra = CASES[case]
    gt, pred, gt_ids, pred_ids = make_case(n, h, w, g, p, seed=len(case) + 7 * len(lay), **extra)
    gd, pd = (layout(t.to(device, dt), lay) for t, dt in zip((gt, pred), DTYPES[dtypes]))
    if lay != "contiguous":
        assert not gd.is_contiguous() or h == 1 or w == 1
    counts = pair_counts(gd, pd, gt_ids.to(device), pred_ids.to(device), backend=backend)
    assert counts.dtype == torch.int64 and counts.shape == (n, g + 1, p + 1)
    assert counts.device.type == device
    assert np.array_equal(counts.cpu().numpy(), oracle(gt, pred, gt_ids, pred_ids))
    assert counts.sum(dim=(1, 2)).tolist() == [h * w] * n


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_tables_differ_per_image_and_hand_made_counts(device, backend):
    """Image 0 lists ids (3, 8), image 1 lists (8,): the same id 8 lands in different rows."""
    gt = torch.tensor([[[3, 3, 8], [9, 8, 8]], [[8, 3, 3], [8, 8, 9]]])
    pred = torch.tensor([[[1, 2, 2], [2, 2, 5]], [[2, 2, 2], [1, 1, 1]]], dtype=torch.int32)
    gt_ids = torch.tensor([[3, 8], [8, PAD]])
    pred_ids = torch.tensor([[1, 2, PAD], [2, 5, PAD]])
    counts = pair_counts(gt.to(device), pred.to(device), gt_ids.to(device), pred_ids.to(device),
                         backend=backend).cpu()
    expected = torch.tensor([
        [[1, 1, 0, 0], [0, 2, 0, 1], [0, 1, 0, 0]],   # gt 3 / 8 / absent (9) vs pred 1, 2, PAD, absent
        [[1, 0, 0, 2], [0, 0, 0, 0], [2, 0, 0, 1]],   # gt 8 / PAD / absent (3, 9)
    ])
    assert torch.equal(counts, expected)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_empty_images_and_deterministic_repeats(device, backend):
    gt, pred, gt_ids, pred_ids = make_case(2, 9, 8, 7, 6, seed=3)
    args = [t.to(device) for t in (gt, pred, gt_ids, pred_ids)]
    first = pair_counts(*args, backend=backend)
    for _ in range(2):
        assert torch.equal(pair_counts(*args, backend=backend), first)
    e = torch.zeros(2, 0, 5, dtype=torch.long, device=device)
    counts = pair_counts(e, e, args[2], args[3], backend=backend)
    assert counts.shape == (2, 8, 7) and int(counts.abs().sum()) == 0
    z = torch.zeros(0, 3, 3, dtype=torch.long, device=device)
    assert pair_counts(z, z, args[2][:0], args[3][:0], backend=backend).shape == (0, 8, 7)


ERRORS = {
    "gt-rank": (lambda: (torch.zeros(4, 5, dtype=torch.long), torch.zeros(4, 5, dtype=torch.long),
                         torch.zeros(4, 1, dtype=torch.long), torch.zeros(4, 1, dtype=torch.long)),
                ValueError, r"gt must be 3-D \(N, H, W\) segment ids, got shape \(4, 5\)"),
    "shape": (lambda: (torch.zeros(1, 4, 5, dtype=torch.long), torch.zeros(1, 5, 4, dtype=torch.long),
                       torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long)),
              ValueError, r"pred of shape \(1, 5, 4\) and gt of shape \(1, 4, 5\) must have the same"),
    "float-gt": (lambda: (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long),
                          torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long)),
                 TypeError, "gt must be an integer tensor, got torch.float32"),
    "bool-pred": (lambda: (torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.bool),
                           torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long)),
                  TypeError, "pred must be an integer tensor, got torch.bool"),
    "float-table": (lambda: (torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long),
                             torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1)),
                    TypeError, "pred_ids must be an integer tensor, got torch.float32"),
    "table-rank": (lambda: (torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long),
                            torch.zeros(3, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long)),
                   ValueError, r"gt_ids must be 2-D \(N, ids\) sorted id tables, got shape \(3,\)"),
    "table-rows": (lambda: (torch.zeros(2, 2, 2, dtype=torch.long), torch.zeros(2, 2, 2, dtype=torch.long),
                            torch.zeros(2, 1, dtype=torch.long), torch.zeros(3, 1, dtype=torch.long)),
                   ValueError, r"pred_ids must have N=2 rows \(one per image\), got 3"),
    "too-many-bins": (lambda: (torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long),
                               torch.zeros(1, 46340, dtype=torch.long), torch.zeros(1, 46340, dtype=torch.long)),
                      ValueError, r"\(G \+ 1\) \* \(P \+ 1\) must be below 2\^31, got G=46340, P=46340"),
    "not-a-tensor": (lambda: (torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long),
                              [[0]], torch.zeros(1, 1, dtype=torch.long)),
                     TypeError, "gt_ids must be a Tensor, got list"),
}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", ERRORS)
def test_bad_input(device, backend, case):
    make, exc, match = ERRORS[case]
    args = [t.to(device) if isinstance(t, torch.Tensor) else t for t in make()]
    with pytest.raises(exc, match=match):
        pair_counts(*args, backend=backend)


@requires_cuda
def test_device_mismatch():
    z = torch.zeros(1, 2, 2, dtype=torch.long)
    ids = torch.zeros(1, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="pred_ids is on cpu but gt is on cuda"):
        pair_counts(z.cuda(), z.cuda(), ids.cuda(), ids)


def test_bad_backend_and_compiled_kernel_checks_itself():
    z = torch.zeros(1, 2, 2, dtype=torch.long)
    ids = torch.zeros(1, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="backend must be one of"):
        pair_counts(z, z, ids, ids, backend="numpy")
    if not pydense.extension_available():
        pytest.skip("the compiled extension is not built")
    op = torch.ops.pydense._panoptic_pair_counts
    out = torch.empty(1, 2, 2, dtype=torch.int64)
    with pytest.raises(RuntimeError, match=r"out must be a contiguous \(N, G \+ 1, P \+ 1\) = \(1, 2, 3\)"):
        op(z, z, ids, torch.zeros(1, 2, dtype=torch.long), out)
    with pytest.raises(RuntimeError, match="gt_ids must be int64, got Int"):
        op(z, z, ids.int(), ids, out)
    with pytest.raises(RuntimeError, match="pred must be int32 or int64, got Byte"):
        op(z, z.byte(), ids, ids, out)
    with pytest.raises(RuntimeError, match="pred_ids must have N=1 rows"):
        op(z, z, ids, torch.zeros(2, 1, dtype=torch.long), out)
    with pytest.raises(RuntimeError, match=r"pred of shape \[1, 2, 3\] and gt of shape \[1, 2, 2\]"):
        op(z, torch.zeros(1, 2, 3, dtype=torch.long), ids, ids, out)
    # the tables are read row by row as contiguous: a strided one is refused, not misread
    z2 = torch.zeros(2, 2, 2, dtype=torch.long)
    strided = torch.zeros(3, 2, dtype=torch.long)[::2]  # (2, 2) with row stride 4
    with pytest.raises(RuntimeError, match="gt_ids must be contiguous"):
        op(z2, z2, strided, strided.contiguous(), torch.empty(2, 3, 3, dtype=torch.int64))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck_and_compile(backend):
    gt, pred, gt_ids, pred_ids = make_case(2, 5, 6, 4, 3, seed=11)
    torch.library.opcheck(ops.panoptic_pair_counts_op, (gt, pred, gt_ids, pred_ids, backend))
    torch.library.opcheck(ops.panoptic_pair_counts_op,
                          (gt.int(), pred, gt_ids, pred_ids[:, :0].contiguous(), backend))

    def fn(g, p, gi, pi):
        return pair_counts(g, p, gi, pi, backend=backend)

    torch._dynamo.reset()
    explain = torch._dynamo.explain(fn)(gt, pred, gt_ids, pred_ids)
    assert explain.graph_break_count == 0 and explain.graph_count == 1
    out = torch.compile(fn, fullgraph=True, backend="aot_eager")(gt, pred, gt_ids, pred_ids)
    assert np.array_equal(out.numpy(), oracle(gt, pred, gt_ids, pred_ids))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), h=st.integers(1, 13), w=st.integers(1, 13), g=st.integers(0, 20),
       p=st.integers(0, 20), seed=st.integers(0, 2**16), i32=st.booleans(),
       backend=st.sampled_from(CPU_BACKENDS))
def test_hypothesis_matches_oracle(n, h, w, g, p, seed, i32, backend):
    gt, pred, gt_ids, pred_ids = make_case(n, h, w, g, p, seed, high=30)
    counts = pair_counts(gt.int() if i32 else gt, pred, gt_ids, pred_ids, backend=backend)
    assert np.array_equal(counts.numpy(), oracle(gt, pred, gt_ids, pred_ids))


def test_auto_backend_resolves():
    assert pydense._backend.resolve("auto", torch.device("cpu"), ops.OP) == "cpu"


def test_triton_bin_limit():
    from pydense.kernels import confusion_matrix as cm_kernels
    from pydense.kernels import panoptic_pairs as kernels

    assert kernels.MAX_IMAGE_BINS == ops.TRITON_MAX_BINS
    assert cm_kernels.num_bins(kernels.MAX_IMAGE_BINS)[1] <= cm_kernels.MAX_SLICES
    assert cm_kernels.num_bins(kernels.MAX_IMAGE_BINS + 1)[1] > cm_kernels.MAX_SLICES
    assert [kernels.top_step(n) for n in (0, 1, 2, 3, 4, 7, 8, 9)] == [0, 1, 2, 2, 4, 4, 8, 8]
    z = torch.zeros(1, 2, 2, dtype=torch.long)
    gt_ids = torch.arange(400).view(1, 400)
    pred_ids = torch.arange(400).view(1, 400)  # 401 * 401 bins: beyond Triton's 64 slices
    if "triton" in CPU_BACKENDS:
        with pytest.raises(ValueError, match=r"backend='triton' supports \(G \+ 1\) \* \(P \+ 1\)"):
            pair_counts(z, z, gt_ids, pred_ids, backend="triton")


def test_auto_leaves_triton_above_its_bin_limit(monkeypatch):
    """With "auto" mapped to Triton, tables beyond Triton's bins go to the compiled kernel."""
    from pydense import _tuned

    if "triton" not in CPU_BACKENDS:
        pytest.skip("needs the Triton interpreter")
    monkeypatch.setitem(_tuned.AUTO_BACKEND, ops.OP, {"cpu": "triton", "cuda": "triton"})
    gt, pred, gt_ids, pred_ids = make_case(1, 3, 5, 400, 400, seed=1, high=1000)
    counts = pair_counts(gt, pred, gt_ids, pred_ids)
    assert np.array_equal(counts.numpy(), oracle(gt, pred, gt_ids, pred_ids))


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton", "torch"])
@pytest.mark.parametrize("size", ["shared", "global-atomics"])
def test_cuda_large_matches_oracle(backend, size):
    """More pixels than one block / program handles; 41 * 61 bins (shared-memory histograms on
    CUDA, 2 bin slices on Triton) and 151 * 101 bins (global integer atomics on CUDA, 8 slices on
    Triton); int32 transposed gt, int64 sliced pred."""
    g, p = (40, 60) if size == "shared" else (150, 100)
    gt, pred, gt_ids, pred_ids = make_case(3, 256, 384, g, p, seed=5, high=400)
    gd = layout(gt.int().cuda(), "transposed")
    pd = layout(pred.cuda(), "sliced")
    counts = pair_counts(gd, pd, gt_ids.cuda(), pred_ids.cuda(), backend=backend)
    assert np.array_equal(counts.cpu().numpy(), oracle(gt, pred, gt_ids, pred_ids))
    assert torch.equal(pair_counts(gd, pd, gt_ids.cuda(), pred_ids.cuda(), backend=backend), counts)
