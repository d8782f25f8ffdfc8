"""Panoptic fusion: pydense.panoptic_fusion.fuse against a straightforward reference (detectron2's
sequential paste loop, written below in plain torch on CPU), compared exactly (id map and segment
list) on every backend; the instance coverage op against a bit-twiddling oracle, opcheck and
torch.compile; the COCO colour encoding; bad input.

CPU rows run the C++ CPU kernel, the Triton kernel through the interpreter (tiny shapes) and plain
torch; CUDA rows run the CUDA C++ kernel, compiled Triton and torch (skipped without a GPU).
"""
import doctest
import random

import pytest
import torch

import pydense
from pydense import panoptic_fusion
from pydense.ops import instance_coverage as cov

from helpers import CPU_BACKENDS, backend_params, requires_cuda

BACKENDS = backend_params()


# ---------------------------------------------------------------------------------------------
# The reference: detectron2's combine_semantic_and_instance_outputs, one instance at a time.


def inside(masks):
    return masks >= 0.5 if masks.dtype.is_floating_point else masks != 0


def reference_fuse(semantic, masks, scores, classes, thing_ids, overlap_threshold=0.5,
                   score_threshold=0.5, stuff_area_threshold=4096):
    labels = semantic.argmax(0) if semantic.dim() == 3 else semantic
    masks = inside(masks)
    pan = torch.zeros(labels.shape, dtype=torch.int32)
    segments = []
    # Python's sort is stable: equal scores keep the lower index first.
    for i in sorted(range(masks.shape[0]), key=lambda i: -float(scores[i])):
        score = float(scores[i])
        if not score >= score_threshold:
            continue
        mask = masks[i]
        area = int(mask.sum())
        if area == 0:
            continue
        intersect = int((mask & (pan > 0)).sum())
        if intersect / area > overlap_threshold:
            continue
        mask = mask & (pan == 0)
        pan[mask] = len(segments) + 1
        segments.append({"id": len(segments) + 1, "category_id": int(classes[i]), "isthing": True,
                         "area": int(mask.sum()), "score": score, "instance_id": i})
    for label in torch.unique(labels).tolist():
        if label in thing_ids:
            continue
        mask = (labels == label) & (pan == 0)
        area = int(mask.sum())
        if area < stuff_area_threshold:
            continue
        pan[mask] = len(segments) + 1
        segments.append({"id": len(segments) + 1, "category_id": label, "isthing": False,
                         "area": area})
    return pan, segments


def random_masks(g, m, h, w, empty_frac=0.1):
    """m masks: random rectangles and blobs (thresholded noise), some empty."""
    masks = torch.zeros(m, h, w, dtype=torch.bool)
    for i in range(m):
        kind = g.random()
        if kind < empty_frac:
            continue
        if kind < 0.6:
            y0, x0 = g.randrange(h), g.randrange(w)
            y1, x1 = g.randrange(y0, h) + 1, g.randrange(x0, w) + 1
            masks[i, y0:y1, x0:x1] = True
        else:
            noise = torch.rand(1, 1, max(h // 3, 1), max(w // 3, 1),
                               generator=torch.Generator().manual_seed(g.randrange(1 << 30)))
            up = torch.nn.functional.interpolate(noise, size=(h, w), mode="bilinear",
                                                 align_corners=False)[0, 0]
            masks[i] = up > g.uniform(0.4, 0.8)
    return masks


def random_case(seed, h=11, w=13, m=None, num_classes=7, logits=None):
    g = random.Random(seed)
    m = g.randrange(0, 12) if m is None else m
    masks = random_masks(g, m, h, w)
    # Few distinct scores: ties are common; some below the default threshold.
    levels = [0.3, 0.5, 0.55, 0.7, 0.7, 0.9, 1.0]
    scores = torch.tensor([g.choice(levels) for _ in range(m)], dtype=torch.float32)
    classes = torch.tensor([g.randrange(num_classes) for _ in range(m)], dtype=torch.int64)
    thing_ids = set(g.sample(range(num_classes), g.randrange(0, 4)))
    logits = g.random() < 0.4 if logits is None else logits
    tg = torch.Generator().manual_seed(seed)
    if logits:
        semantic = torch.randn(num_classes, h, w, generator=tg)
        semantic[1] = semantic[0]  # ties: the lowest index wins
    else:
        # Blocky labels so that stuff areas vary around the thresholds.
        coarse = torch.randint(0, num_classes, (1, 1, 3, 4), generator=tg).float()
        semantic = torch.nn.functional.interpolate(coarse, size=(h, w), mode="nearest")[0, 0].long()
    kind = g.choice(["bool", "bool", "uint8", "float", "int32"])
    if kind == "uint8":  # any nonzero value is inside
        masks = masks.to(torch.uint8) * torch.randint(1, 256, masks.shape, generator=tg, dtype=torch.uint8)
    elif kind == "float":  # >= 0.5 is inside; values just below it are not
        noise = torch.rand(masks.shape, generator=tg)
        masks = torch.where(masks, 0.5 + noise / 2, noise * 0.4999)
    elif kind == "int32":
        masks = masks.to(torch.int32)
    kwargs = {"thing_ids": thing_ids, "overlap_threshold": g.choice([0.5, 0.5, 0.3, 0.0, 1.0]),
              "score_threshold": g.choice([0.5, 0.5, 0.6, 0.0]),
              "stuff_area_threshold": g.choice([0, 4, 10, 20])}
    return semantic, masks, scores, classes, kwargs


def assert_same(got, expected, device):
    pan, segments = got
    ref_pan, ref_segments = expected
    assert pan.dtype == torch.int32 and pan.device.type == device
    assert torch.equal(pan.cpu(), ref_pan)
    assert segments == ref_segments
    for s in segments:  # the areas are those of the map
        assert s["area"] == int((ref_pan == s["id"]).sum())


def run_both(device, backend, semantic, masks, scores, classes, **kwargs):
    got = panoptic_fusion.fuse(semantic.to(device), masks.to(device), scores, classes,
                               backend=backend, **kwargs)
    expected = reference_fuse(semantic, masks, scores, classes, **kwargs)
    assert_same(got, expected, device)
    return got


# ---------------------------------------------------------------------------------------------
# fuse against the reference


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("seed", range(40))
def test_random_cases_match_reference(device, backend, seed):
    semantic, masks, scores, classes, kwargs = random_case(seed)
    run_both(device, backend, semantic, masks, scores, classes, **kwargs)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("seed", range(4))
def test_medium_random_cases_match_reference(device, backend, seed):
    semantic, masks, scores, classes, kwargs = random_case(1000 + seed, h=37, w=53, m=30,
                                                           num_classes=12)
    run_both(device, backend, semantic, masks, scores, classes, **kwargs)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_deterministic_algorithms_mode(device, backend):
    """Nothing in fuse is refused under torch.use_deterministic_algorithms(True)."""
    semantic, masks, scores, classes, kwargs = random_case(5, m=70)
    saved = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        run_both(device, backend, semantic, masks, scores, classes, **kwargs)
    finally:
        torch.use_deterministic_algorithms(saved)


@pytest.mark.parametrize("seed", range(12))
def test_both_decision_paths_agree(monkeypatch, seed):
    """The decisions on Python lists (small tables) and on CPU tensors (large ones) agree."""
    semantic, masks, scores, classes, kwargs = random_case(100 + seed, m=70 if seed % 3 == 0 else None)
    ref = reference_fuse(semantic, masks, scores, classes, **kwargs)
    for limit in (panoptic_fusion.PYTHON_DECISIONS_MAX, -1):
        monkeypatch.setattr(panoptic_fusion, "PYTHON_DECISIONS_MAX", limit)
        assert_same(panoptic_fusion.fuse(semantic, masks, scores, classes, backend="torch",
                                         **kwargs), ref, "cpu")


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("m", [64, 65, 130])
def test_many_instances_two_or_more_words(device, backend, m):
    semantic, masks, scores, classes, kwargs = random_case(m, h=9, w=10, m=m)
    scores = torch.rand(m, generator=torch.Generator().manual_seed(m)) * 0.5 + 0.5
    scores[::7] = 0.75  # ties across the word boundary
    kwargs["score_threshold"] = 0.5
    run_both(device, backend, semantic, masks, scores, classes, **kwargs)
    # Every instance kept or dropped by the rule: at least one with a word-2 rank is kept.
    kwargs["overlap_threshold"] = 1.0
    pan, segments = run_both(device, backend, semantic, masks, scores, classes, **kwargs)
    assert sum(s["isthing"] for s in segments) == int(inside(masks).flatten(1).any(1).sum())


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_overlap_exactly_at_the_threshold_is_kept(device, backend):
    semantic = torch.zeros(4, 8, dtype=torch.int64)
    masks = torch.zeros(3, 4, 8, dtype=torch.bool)
    masks[0, :, :4] = True       # 16 pixels
    masks[1, :, 2:6] = True      # 16 pixels, 8 taken: 8 / 16 = 0.5, not > 0.5: kept
    masks[2, :2, 1:6] = True     # 10 pixels, 10 taken: dropped
    scores = torch.tensor([0.9, 0.8, 0.7])
    classes = torch.tensor([1, 2, 3])
    pan, segments = run_both(device, backend, semantic, masks, scores, classes, thing_ids=[1, 2, 3],
                             stuff_area_threshold=1)
    assert [s["instance_id"] for s in segments if s["isthing"]] == [0, 1]
    assert segments[1]["area"] == 8
    # One pixel more of overlap: 9 / 17 > 0.5, dropped.
    masks[1, 0, 1] = True
    pan, segments = run_both(device, backend, semantic, masks, scores, classes, thing_ids=[1, 2, 3],
                             stuff_area_threshold=1)
    assert [s["instance_id"] for s in segments if s["isthing"]] == [0]


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_score_ties_keep_the_lower_index_first(device, backend):
    semantic = torch.zeros(3, 5, dtype=torch.int64)
    masks = torch.zeros(4, 3, 5, dtype=torch.uint8)
    masks[:, 1:, 1:4] = 1         # the same mask four times
    masks[3, 0, 0] = 1
    scores = torch.tensor([0.6, 0.8, 0.8, 0.8])
    classes = torch.tensor([5, 6, 7, 8])
    pan, segments = run_both(device, backend, semantic, masks, scores, classes, thing_ids={5, 6, 7, 8},
                             stuff_area_threshold=0)
    assert [s["instance_id"] for s in segments if s["isthing"]] == [1]
    assert segments[0]["score"] == float(torch.tensor(0.8))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_stuff_exactly_at_the_area_threshold_and_thing_labels(device, backend):
    semantic = torch.zeros(4, 6, dtype=torch.int64)
    semantic[:2, :3] = 3      # 6 pixels of stuff 3: exactly the threshold, kept
    semantic[2:, :3] = 4      # 6 pixels of stuff 4, 1 taken by an instance: 5 < 6, dropped
    semantic[:, 3:] = 1       # a thing class in the semantic map: never stuff
    masks = torch.zeros(1, 4, 6)
    masks[0, 3, 2] = 0.5      # floating masks: >= 0.5 is inside
    masks[0, 3, 3] = 0.49
    pan, segments = run_both(device, backend, semantic, masks, torch.tensor([0.5]),
                             torch.tensor([1]), thing_ids=torch.tensor([1]), stuff_area_threshold=6)
    assert [(s["category_id"], s["isthing"], s["area"]) for s in segments] == [(1, True, 1),
                                                                              (3, False, 6)]
    assert int((pan == 0).sum()) == 4 * 6 - 7


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_no_instances_and_all_below_threshold(device, backend):
    semantic = torch.randn(3, 5, 4)
    for m in (0, 2):
        masks = torch.ones(m, 5, 4, dtype=torch.bool)
        run_both(device, backend, semantic, masks, torch.full((m,), 0.1), torch.zeros(m, dtype=torch.long),
                 thing_ids=(), stuff_area_threshold=1)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_strided_masks_and_negative_labels(device, backend):
    semantic, masks, scores, classes, kwargs = random_case(7, h=10, w=12, m=9, logits=False)
    semantic = semantic - 2  # negative labels are labels too
    wide = torch.zeros(9, 12, 20, dtype=masks.dtype)
    wide[:, :, 3:13] = masks.transpose(1, 2)
    strided = wide.to(device)[:, :, 3:13].transpose(1, 2)  # neither contiguous nor row-major
    assert not strided.is_contiguous()
    got = panoptic_fusion.fuse(semantic.to(device), strided, scores, classes, backend=backend,
                               **kwargs)
    assert_same(got, reference_fuse(semantic, masks, scores, classes, **kwargs), device)


@pytest.mark.skipif(not pydense.extension_available(), reason="the example runs the compiled kernel")
def test_module_example():
    assert doctest.testmod(panoptic_fusion).failed == 0


def test_bad_backend_even_without_instances():
    a = _good()
    with pytest.raises(ValueError, match="backend must be one of"):
        panoptic_fusion.fuse(a["semantic"], a["instance_masks"][:0], a["instance_scores"][:0],
                             a["instance_classes"][:0], thing_ids=[], backend="fast")
    with pytest.raises(pydense.BackendUnavailableError, match="backend='cuda' needs CUDA tensors"):
        panoptic_fusion.fuse(a["semantic"], a["instance_masks"], a["instance_scores"],
                             a["instance_classes"], thing_ids=[], backend="cuda")


def test_auto_backend_and_backends_agree():
    semantic, masks, scores, classes, kwargs = random_case(3, m=10)
    ref = reference_fuse(semantic, masks, scores, classes, **kwargs)
    assert_same(panoptic_fusion.fuse(semantic, masks, scores, classes, **kwargs), ref, "cpu")
    assert pydense.panoptic_fusion is panoptic_fusion


def test_deprecated_module_name(monkeypatch):
    """pydense.panoptic, the former name, still imports, with a DeprecationWarning, and is the
    same module object (every name, constants included, is shared); ``import pydense`` does not
    import it."""
    import importlib
    import sys

    monkeypatch.delitem(sys.modules, "pydense.panoptic", raising=False)
    if "panoptic" in vars(pydense):  # (hasattr would import it: the package's __getattr__)
        monkeypatch.delattr(pydense, "panoptic")
    with pytest.warns(DeprecationWarning, match="pydense.panoptic is deprecated, import "
                                                "pydense.panoptic_fusion") as rec:
        old = importlib.import_module("pydense.panoptic")
    assert [w.filename for w in rec] == [__file__]  # the importing line, not pydense's
    assert old is panoptic_fusion and pydense.panoptic is panoptic_fusion
    assert old.fuse is panoptic_fusion.fuse and old.MAX_ID == panoptic_fusion.MAX_ID
    from pydense.panoptic import fuse, id2rgb, rgb2id
    assert (fuse, id2rgb, rgb2id) == (panoptic_fusion.fuse, panoptic_fusion.id2rgb,
                                      panoptic_fusion.rgb2id)
    # attribute access on the package imports it too (with the warning)
    monkeypatch.delitem(sys.modules, "pydense.panoptic")
    monkeypatch.delattr(pydense, "panoptic")
    with pytest.warns(DeprecationWarning, match="pydense.panoptic is deprecated") as rec:
        assert pydense.panoptic.fuse is panoptic_fusion.fuse
    assert [w.filename for w in rec] == [__file__]


# ---------------------------------------------------------------------------------------------
# The COCO colour encoding


def test_id2rgb_rgb2id_round_trip_and_panopticapi_values():
    ids = torch.tensor([[0, 1, 255, 256], [65535, 65536, 2**24 - 1, 123456]])
    rgb = panoptic_fusion.id2rgb(ids)
    assert rgb.dtype == torch.uint8 and rgb.shape == (2, 4, 3)
    assert rgb[1, 3].tolist() == [123456 % 256, 123456 // 256 % 256, 123456 // 65536]
    assert rgb[0, 3].tolist() == [0, 1, 0]
    back = panoptic_fusion.rgb2id(rgb)
    assert back.dtype == torch.int32 and torch.equal(back, ids.int())
    np = pytest.importorskip("numpy")
    assert np.array_equal(panoptic_fusion.id2rgb(ids.numpy().astype(np.uint32)), rgb.numpy())
    arr = panoptic_fusion.id2rgb(ids.numpy())
    assert isinstance(arr, np.ndarray) and np.array_equal(panoptic_fusion.rgb2id(arr), ids.numpy())
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 16777216\)"):
        panoptic_fusion.id2rgb(torch.tensor([2**24]))
    with pytest.raises(TypeError, match="ids must be an integer tensor"):
        panoptic_fusion.id2rgb(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\)"):
        panoptic_fusion.rgb2id(torch.zeros(2, 4, dtype=torch.uint8))


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error naming the argument, before any kernel runs


def _good():
    return {"semantic": torch.zeros(4, 5, dtype=torch.long), "instance_masks": torch.zeros(2, 4, 5, dtype=torch.bool),
            "instance_scores": torch.ones(2), "instance_classes": torch.ones(2, dtype=torch.long),
            "thing_ids": [1]}


BAD = {
    "semantic-float-labels": ({"semantic": torch.zeros(4, 5)}, TypeError, "semantic of shape \\(H, W\\) must hold integer"),
    "semantic-int-logits": ({"semantic": torch.zeros(3, 4, 5, dtype=torch.long)}, TypeError, "must hold float logits"),
    "semantic-1d": ({"semantic": torch.zeros(5, dtype=torch.long)}, ValueError, "semantic must be \\(H, W\\)"),
    "semantic-no-channels": ({"semantic": torch.zeros(0, 4, 5)}, ValueError, "at least one class channel"),
    "masks-hw": ({"instance_masks": torch.zeros(2, 4, 6, dtype=torch.bool)}, ValueError, "instance_masks of shape .* must agree in H, W"),
    "masks-2d": ({"instance_masks": torch.zeros(4, 5, dtype=torch.bool)}, ValueError, "instance_masks must be 3-D"),
    "scores-m": ({"instance_scores": torch.ones(3)}, ValueError, "instance_scores must be 1-D with one score per mask \\(M=2\\)"),
    "scores-int": ({"instance_scores": torch.ones(2, dtype=torch.long)}, TypeError, "instance_scores must be floating"),
    "classes-m": ({"instance_classes": torch.ones(1, dtype=torch.long)}, ValueError, "instance_classes must be 1-D with one class per mask \\(M=2\\)"),
    "classes-float": ({"instance_classes": torch.ones(2)}, TypeError, "instance_classes must hold integer"),
    "masks-not-tensor": ({"instance_masks": [[0]]}, TypeError, "instance_masks must be a Tensor"),
    "thing-ids-float": ({"thing_ids": [1.5]}, TypeError, "thing_ids must hold integer"),
    "thing-ids-not-iterable": ({"thing_ids": 3}, TypeError, "thing_ids must be an iterable"),
    "overlap-range": ({"overlap_threshold": 1.5}, ValueError, "overlap_threshold must be in \\[0, 1\\]"),
    "overlap-nan": ({"overlap_threshold": float("nan")}, TypeError, "overlap_threshold must be a real number"),
    "score-str": ({"score_threshold": "0.5"}, TypeError, "score_threshold must be a real number"),
    "stuff-negative": ({"stuff_area_threshold": -1}, ValueError, "stuff_area_threshold must be >= 0"),
    "stuff-float": ({"stuff_area_threshold": 10.0}, TypeError, "stuff_area_threshold must be an int"),
    "backend": ({"backend": "fast"}, ValueError, "backend must be one of"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input(case):
    change, exc, match = BAD[case]
    args = _good() | change
    with pytest.raises(exc, match=match):
        panoptic_fusion.fuse(args.pop("semantic"), args.pop("instance_masks"),
                             args.pop("instance_scores"), args.pop("instance_classes"), **args)


@requires_cuda
def test_devices_must_agree():
    a = _good()
    with pytest.raises(ValueError, match="semantic is on cuda.* but instance_masks is on cpu"):
        panoptic_fusion.fuse(a["semantic"].cuda(), a["instance_masks"], a["instance_scores"],
                             a["instance_classes"], thing_ids=[1])


# ---------------------------------------------------------------------------------------------
# The instance coverage op


def coverage_oracle(masks, order):
    """Bit twiddling with Python ints: one K-bit int per pixel, cut into signed 64-bit words."""
    _, h, w = masks.shape
    k = len(order)
    nw = (k + 63) // 64
    inside = (masks != 0).tolist()
    out = torch.zeros(h, w, nw, dtype=torch.int64)
    for y in range(h):
        for x in range(w):
            bits = sum(1 << r for r, i in enumerate(order) if inside[i][y][x])
            for j in range(nw):
                word = (bits >> (64 * j)) & ((1 << 64) - 1)
                out[y, x, j] = word - (1 << 64) if word >= 1 << 63 else word
    return out


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("m,k", [(5, 0), (5, 5), (70, 63), (70, 64), (70, 65), (70, 130)])
@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8], ids=str)
def test_coverage_matches_bit_oracle(device, backend, m, k, dtype):
    g = torch.Generator().manual_seed(m * 1000 + k)
    masks = (torch.rand(m, 6, 7, generator=g) < 0.5).to(dtype)
    if dtype == torch.uint8:
        masks *= torch.randint(1, 255, masks.shape, generator=g, dtype=torch.uint8)
    order = torch.randint(0, m, (k,), generator=g)  # repeats allowed
    out = cov.instance_coverage(masks.to(device), order.to(device), backend=backend)
    assert out.shape == (6, 7, (k + 63) // 64) and out.dtype == torch.int64 and out.is_contiguous()
    assert torch.equal(out.cpu(), coverage_oracle(masks, order.tolist()))
    # Strided masks: a transposed view and a sliced view.
    t = masks.transpose(1, 2).contiguous().transpose(1, 2).to(device)
    assert torch.equal(cov.instance_coverage(t, order.to(device), backend=backend).cpu(),
                       coverage_oracle(masks, order.tolist()))
    # A strided order (every other entry of a longer one).
    wide = torch.stack([order, torch.zeros_like(order)], 1).reshape(-1).to(device)[::2]
    assert torch.equal(cov.instance_coverage(masks.to(device), wide, backend=backend).cpu(),
                       coverage_oracle(masks, order.tolist()))
    big = torch.zeros(m, 9, 15, dtype=dtype, device=device)
    big[:, 2:8, 4:11] = masks.to(device)
    assert torch.equal(cov.instance_coverage(big[:, 2:8, 4:11], order.to(device), backend=backend).cpu(),
                       coverage_oracle(masks, order.tolist()))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_coverage_opcheck_and_compile(backend):
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(70, 5, 6, generator=g) < 0.4
    order = torch.randperm(70, generator=g)[:67]
    torch.library.opcheck(cov.instance_coverage_op, (masks, order, backend))
    torch.library.opcheck(cov.instance_coverage_op, (masks.to(torch.uint8), order[:3], backend))

    def fn(m, o):  # the public function, order checks off (they need a host sync)
        return cov.instance_coverage(m, o, backend=backend, check_order=False)

    torch._dynamo.reset()
    explain = torch._dynamo.explain(fn)(masks, order)
    assert explain.graph_break_count == 0 and explain.graph_count == 1
    out = torch.compile(fn, fullgraph=True, backend="aot_eager")(masks, order)
    assert torch.equal(out, coverage_oracle(masks, order.tolist()))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_coverage_deterministic_repeats(device, backend):
    g = torch.Generator().manual_seed(1)
    masks = (torch.rand(80, 17, 19, generator=g) < 0.3).to(device)
    order = torch.randperm(80, generator=g).to(device)
    first = cov.instance_coverage(masks, order, backend=backend)
    for _ in range(3):
        assert torch.equal(cov.instance_coverage(masks, order, backend=backend), first)


COV_BAD = {
    "masks-float": (torch.zeros(2, 3, 4), torch.tensor([0]), TypeError, "masks must be bool or uint8"),
    "masks-2d": (torch.zeros(3, 4, dtype=torch.bool), torch.tensor([0]), ValueError, "masks must be 3-D"),
    "order-2d": (torch.zeros(2, 3, 4, dtype=torch.bool), torch.zeros(1, 1, dtype=torch.long), ValueError, "order must be 1-D"),
    "order-float": (torch.zeros(2, 3, 4, dtype=torch.bool), torch.tensor([0.0]), TypeError, "order must be an integer"),
    "order-range": (torch.zeros(2, 3, 4, dtype=torch.bool), torch.tensor([0, 2]), ValueError, "order holds 2; instance indices must lie in \\[0, 2\\)"),
    "order-negative": (torch.zeros(2, 3, 4, dtype=torch.bool), torch.tensor([-1]), ValueError, "order holds -1"),
    "no-masks": (torch.zeros(0, 3, 4, dtype=torch.bool), torch.tensor([0]), ValueError, "masks has no instances"),
}


@pytest.mark.parametrize("case", COV_BAD)
def test_coverage_bad_input(case):
    masks, order, exc, match = COV_BAD[case]
    with pytest.raises(exc, match=match):
        cov.instance_coverage(masks, order, backend="torch")


@pytest.mark.skipif(not pydense.extension_available(), reason="needs the compiled extension")
def test_compiled_kernel_checks_itself():
    masks = torch.zeros(2, 3, 4, dtype=torch.bool)
    with pytest.raises(RuntimeError, match="contiguous \\(H, W, NW=1\\) int64"):
        torch.ops.pydense._instance_coverage(masks, torch.tensor([0]), torch.empty(3, 4, 2, dtype=torch.long))
    with pytest.raises(RuntimeError, match="order\\[1\\] = 5 is not an instance index"):
        torch.ops.pydense._instance_coverage(masks, torch.tensor([0, 5]), torch.empty(3, 4, 1, dtype=torch.long))
    with pytest.raises(RuntimeError, match="masks must be bool or uint8"):
        torch.ops.pydense._instance_coverage(masks.float(), torch.tensor([0]), torch.empty(3, 4, 1, dtype=torch.long))


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton", "torch"])
def test_cuda_large_matches_cpu_reference(backend):
    """A COCO-sized image on the GPU: 100 instances (50 above the threshold, NW = 1), 133 classes."""
    semantic, masks, scores, classes, kwargs = random_case(11, h=200, w=304, m=100, num_classes=133,
                                                           logits=True)
    scores = torch.rand(100, generator=torch.Generator().manual_seed(2))
    kwargs["stuff_area_threshold"] = 64
    run_both("cuda", backend, semantic, masks, scores, classes, **kwargs)
