"""Segmentation metrics: the confusion matrix on every backend against torch.bincount and a plain
numpy implementation of the FCN paper's formulas; the streaming meter; bad input.

CPU rows run the C++ CPU kernel, the Triton kernels through the interpreter (tiny shapes) and
torch.bincount; CUDA rows run the CUDA C++ kernels, compiled Triton and torch (skipped without a GPU).
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pydense
from pydense.metrics import SegmentationMeter, confusion_matrix, mean_iou, pixel_accuracy
from pydense.ops import confusion_matrix as ops

from helpers import CPU_BACKENDS, backend_params, requires_cuda

BACKENDS = backend_params()
IGNORE = 255


def labels_case(k, shape, seed, ignore_frac=0.2, absent=()):
    """(pred labels, target) on CPU: random labels in [0, k) minus the ``absent`` classes, with a
    fraction of the targets set to IGNORE."""
    g = torch.Generator().manual_seed(seed)
    present = torch.tensor([c for c in range(k) if c not in absent])
    target = present[torch.randint(0, len(present), shape, generator=g)]
    pred = present[torch.randint(0, len(present), shape, generator=g)]
    target[torch.rand(shape, generator=g) < ignore_frac] = IGNORE
    return pred, target


def logits_case(k, shape, seed, absent=()):
    """(logits (N, K, H, W), target): absent classes get -inf logits; some exact ties."""
    g = torch.Generator().manual_seed(seed)
    n, h, w = shape
    x = torch.randn(n, k, h, w, generator=g)
    if k > 1:
        x[:, 1] = x[:, 0]  # ties: the lowest index wins
    for c in absent:
        x[:, c] = -math.inf
    _, target = labels_case(k, shape, seed + 1, absent=absent)
    return x, target


def numpy_cm(pred, target, k, ignore=IGNORE):
    """The plain numpy reference: a double loop-free histogram over the valid pixels."""
    p = pred.numpy().astype(np.int64).ravel()
    t = target.numpy().astype(np.int64).ravel()
    keep = t != ignore
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (t[keep], p[keep]), 1)
    return cm


def numpy_fcn_scores(cm):
    """FCN's eval (score.py): iu = diag / (rows + cols - diag), nanmean; acc; mean acc; fwavacc."""
    with np.errstate(divide="ignore", invalid="ignore"):
        diag = np.diag(cm).astype(np.float64)
        rows, cols = cm.sum(1), cm.sum(0)
        iu = diag / (rows + cols - diag)
        acc = diag.sum() / cm.sum()
        cls_acc = np.nanmean(diag / rows)
        freq = rows / cm.sum()
        fw = (freq[freq > 0] * iu[freq > 0]).sum()
    return {"mIoU": np.nanmean(iu), "per_class_iou": iu, "pixel_accuracy": acc,
            "mean_class_accuracy": cls_acc, "fw_iou": fw}


# (K, (N, H, W)): tiny for the Triton interpreter (<= 64 programs); K = 50 uses two bin slices.
SHAPES = {"k5": (5, (2, 7, 9)), "k19": (19, (2, 17, 23)), "k21-odd": (21, (1, 31, 5)),
          "k50-slices": (50, (1, 12, 11)), "k1": (1, (1, 3, 4))}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.int32, torch.int16], ids=str)
def test_labels_match_bincount_and_numpy(device, backend, name, dtype):
    k, shape = SHAPES[name]
    pred, target = labels_case(k, shape, seed=len(name))
    cm = confusion_matrix(pred.to(device, dtype), target.to(device, dtype if dtype != torch.int16
                                                                 else torch.int64), k,
                          backend=backend)
    assert cm.dtype == torch.int64 and cm.shape == (k, k) and cm.device.type == device
    expected = torch.bincount((target[target != IGNORE] * k + pred[target != IGNORE]),
                              minlength=k * k).view(k, k)
    assert torch.equal(cm.cpu(), expected)
    assert np.array_equal(cm.cpu().numpy(), numpy_cm(pred, target, k))
    assert int(cm.sum()) == int((target != IGNORE).sum())


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("name", ["k5", "k19", "k50-slices", "k1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64],
                         ids=str)
@pytest.mark.parametrize("lay", ["nchw", "channels_last", "strided"])
def test_logits_fuse_argmax(device, backend, name, dtype, lay):
    k, shape = SHAPES[name]
    x, target = logits_case(k, shape, seed=3)
    x = x.to(dtype)
    xd = x.to(device)
    if lay == "channels_last":
        xd = xd.contiguous(memory_format=torch.channels_last)
    elif lay == "strided":
        xd = xd.transpose(-1, -2).contiguous().transpose(-1, -2)
    cm = confusion_matrix(xd, target.to(device), k, backend=backend)
    pred = x.argmax(1)  # ties go to the lowest index: channel 0 over channel 1
    assert torch.equal(cm.cpu(), ops.bincount_reference(pred, target, k, IGNORE))
    assert np.array_equal(cm.cpu().numpy(), numpy_cm(pred, target, k))
    if k > 1:
        assert int(cm[:, 1].sum()) == 0  # channel 1 always ties channel 0 and loses


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_logits_nan_wins_like_torch_argmax(device, backend):
    x, target = logits_case(4, (1, 5, 6), seed=5)
    x[0, 2, 0, :3] = float("nan")
    x[0, 3, 0, 1:] = float("nan")  # pixel (0, 1), (0, 2): channels 2 and 3 are NaN; 2 wins
    target[:] = 0
    cm = confusion_matrix(x.to(device), target.to(device), 4, backend=backend)
    assert torch.equal(cm.cpu(), ops.bincount_reference(x, target, 4, IGNORE))
    assert int(cm[0, 2]) >= 3


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_metrics_match_numpy_fcn_formulas(device, backend):
    k = 7
    absent = (2, 5)  # absent from both target and prediction: nan IoU, excluded from the mean
    pred, target = labels_case(k, (2, 9, 13), seed=11, absent=absent)
    ref = numpy_fcn_scores(numpy_cm(pred, target, k))
    miou, iou = mean_iou(pred.to(device), target.to(device), k, backend=backend)
    assert torch.isnan(iou[list(absent)]).all() and not torch.isnan(iou[[0, 1, 3, 4, 6]]).any()
    np.testing.assert_allclose(iou.cpu().numpy(), ref["per_class_iou"], rtol=1e-15, equal_nan=True)
    assert math.isclose(float(miou), float(ref["mIoU"]), rel_tol=1e-15)
    assert math.isclose(float(miou), float(iou[~torch.isnan(iou)].mean()), rel_tol=1e-15)
    acc = pixel_accuracy(pred.to(device), target.to(device), k, backend=backend)
    assert math.isclose(float(acc), float(ref["pixel_accuracy"]), rel_tol=1e-15)
    meter = SegmentationMeter(k, backend=backend).update(pred.to(device), target.to(device))
    got = meter.compute()
    for key in ("mIoU", "pixel_accuracy", "mean_class_accuracy", "fw_iou"):
        assert math.isclose(got[key], float(ref[key]), rel_tol=1e-14), key
    assert 0 < got["mIoU"] < 1


def test_fcn_formulas_on_a_hand_made_matrix():
    # target 0: 3 pixels (2 right, 1 as class 1); target 1: 1 pixel right; class 2 absent.
    target = torch.tensor([[[0, 0, 0, 1, 255]]])
    pred = torch.tensor([[[0, 0, 1, 1, 2]]])
    cm = confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    miou, iou = mean_iou(pred, target, 3)
    assert iou[0].item() == 2 / 3 and iou[1].item() == 1 / 2 and math.isnan(iou[2].item())
    assert miou.item() == (2 / 3 + 1 / 2) / 2
    assert pixel_accuracy(pred, target, 3).item() == 3 / 4
    s = SegmentationMeter(3).update(pred, target).compute()
    assert s["mean_class_accuracy"] == (2 / 3 + 1) / 2
    assert s["fw_iou"] == (3 * 2 / 3 + 1 * 1 / 2) / 4


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_meter_over_updates_equals_one_call(device, backend):
    k = 6
    batches = [labels_case(k, (1, 8, 10), seed=s) for s in range(3)]
    x, t = logits_case(k, (2, 8, 10), seed=9)
    meter = SegmentationMeter(k, backend=backend)
    for p, tt in batches:
        meter.update(p.to(device), tt.to(device))
    meter.update(x.to(device), t.to(device))  # logits and labels mix
    assert meter.cm.device.type == device
    all_pred = torch.cat([p for p, _ in batches] + [x.argmax(1)])
    all_target = torch.cat([tt for _, tt in batches] + [t])
    one = confusion_matrix(all_pred.to(device), all_target.to(device), k, backend=backend)
    assert torch.equal(meter.cm, one)
    a = meter.compute()
    b = SegmentationMeter(k, backend=backend).update(all_pred.to(device), all_target.to(device)).compute()
    assert a["mIoU"] == b["mIoU"] and torch.equal(a["per_class_iou"], b["per_class_iou"])
    meter.reset()
    assert meter.cm is None and math.isnan(meter.compute()["mIoU"])


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_all_ignored_and_empty(device, backend):
    t = torch.full((1, 3, 4), IGNORE)
    p = torch.zeros(1, 3, 4, dtype=torch.int64)
    cm = confusion_matrix(p.to(device), t.to(device), 4, backend=backend)
    assert cm.abs().sum().item() == 0
    assert math.isnan(pixel_accuracy(p.to(device), t.to(device), 4, backend=backend).item())
    e = torch.zeros(0, 3, 4, dtype=torch.int64)
    assert confusion_matrix(e.to(device), e.to(device), 4, backend=backend).abs().sum().item() == 0


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_custom_ignore_index_and_unchecked_out_of_range_dropped(device, backend):
    pred, target = labels_case(5, (1, 6, 7), seed=2, ignore_frac=0.0)
    target[0, 0, :3] = -1
    cm = confusion_matrix(pred.to(device), target.to(device), 5, ignore_index=-1, backend=backend)
    assert torch.equal(cm.cpu(), ops.bincount_reference(pred, target, 5, -1))
    assert int(cm.sum()) == 6 * 7 - 3
    bad_t, bad_p = target.clone(), pred.clone()
    bad_t[0, 1, 0] = 7
    bad_p[0, 2, 0] = 9
    bad_p[0, 3, 0] = -4
    cm = confusion_matrix(bad_p.to(device), bad_t.to(device), 5, ignore_index=-1, backend=backend,
                          check_labels=False)
    assert torch.equal(cm.cpu(), ops.bincount_reference(bad_p, bad_t, 5, -1))
    assert int(cm.sum()) == 6 * 7 - 6


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_deterministic_repeats(device, backend):
    x, t = logits_case(19, (1, 20, 30), seed=4)
    first = confusion_matrix(x.to(device), t.to(device), 19, backend=backend)
    for _ in range(2):
        assert torch.equal(confusion_matrix(x.to(device), t.to(device), 19, backend=backend), first)


ERRORS = {
    "shape": (lambda: (torch.zeros(1, 4, 5, dtype=torch.long), torch.zeros(1, 5, 4, dtype=torch.long), 3),
              ValueError, r"pred labels of shape \(1, 4, 5\) and target of shape \(1, 5, 4\)"),
    "logits-shape": (lambda: (torch.zeros(1, 3, 4, 5), torch.zeros(2, 4, 5, dtype=torch.long), 3),
                     ValueError, r"pred logits of shape \(1, 3, 4, 5\).*target of shape \(2, 4, 5\)"),
    "logits-channels": (lambda: (torch.zeros(1, 4, 4, 5), torch.zeros(1, 4, 5, dtype=torch.long), 3),
                        ValueError, "4 channels, expected num_classes=3"),
    "label-too-big": (lambda: (torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[0, 3], [255, 1]]]), 3),
                      ValueError, r"target holds label 3; labels must lie in \[0, 3\) or equal ignore_index=255"),
    "negative-target": (lambda: (torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[0, -2], [1, 1]]]), 3),
                        ValueError, "target holds negative label -2"),
    "pred-too-big": (lambda: (torch.tensor([[[0, 5], [1, 1]]]), torch.zeros(1, 2, 2, dtype=torch.long), 3),
                     ValueError, r"pred holds label 5; predicted labels must lie in \[0, 3\)"),
    "negative-pred": (lambda: (torch.tensor([[[0, -1], [1, 1]]]), torch.zeros(1, 2, 2, dtype=torch.long), 3),
                      ValueError, "pred holds negative label -1"),
    "float-target": (lambda: (torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2), 3),
                     TypeError, "target must be an integer label tensor, got torch.float32"),
    "float-labels": (lambda: (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), 3),
                     TypeError, r"pred of shape \(N, H, W\) must hold integer labels"),
    "int-logits": (lambda: (torch.zeros(1, 3, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long), 3),
                   TypeError, r"pred of shape \(N, C, H, W\) must hold float logits"),
    "target-rank": (lambda: (torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long), 3),
                    ValueError, r"target must be 3-D \(N, H, W\) class labels, got shape \(2, 2\)"),
    "pred-rank": (lambda: (torch.zeros(2, 1, 1, 2, 2), torch.zeros(2, 2, 2, dtype=torch.long), 3),
                  ValueError, r"pred must be 3-D \(N, H, W\) labels or 4-D \(N, C, H, W\) logits"),
    "uint8-ignore-minus-1": (lambda: (torch.zeros(1, 2, 2, dtype=torch.uint8),
                                      torch.tensor([[[0, 255], [1, 1]]], dtype=torch.uint8), 3, -1),
                             ValueError, "target holds label 255"),
    "num-classes": (lambda: (torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long), 0),
                    ValueError, "num_classes must be a positive int, got 0"),
}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", ERRORS)
def test_bad_input(device, backend, case):
    make, exc, match = ERRORS[case]
    pred, target, k, *ignore = make()
    with pytest.raises(exc, match=match):
        confusion_matrix(pred.to(device), target.to(device), k, backend=backend,
                         ignore_index=ignore[0] if ignore else IGNORE)


def test_bad_backend_and_cpu_kernel_checks_itself():
    p = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="backend must be one of"):
        confusion_matrix(p, p, 3, backend="numpy")
    out = torch.empty(3, 3, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="must have the same shape"):
        torch.ops.pydense._confusion_matrix(p, torch.zeros(1, 2, 3, dtype=torch.long), 3, 255, out)
    with pytest.raises(RuntimeError, match="contiguous \\(K, K\\) int64"):
        torch.ops.pydense._confusion_matrix(p, p, 4, 255, out)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck_and_compile(backend):
    pred, target = labels_case(4, (1, 5, 6), seed=0)
    x, _ = logits_case(4, (1, 5, 6), seed=0)
    torch.library.opcheck(ops.confusion_matrix_op, (pred, target, 4, IGNORE, backend))
    torch.library.opcheck(ops.confusion_matrix_op, (x, target, 4, IGNORE, backend))

    def fn(p, t):  # the public function, label checks off (they need a host sync)
        return pydense.metrics.confusion_matrix(p, t, 4, backend=backend, check_labels=False)

    torch._dynamo.reset()
    explain = torch._dynamo.explain(fn)(x, target)
    assert explain.graph_break_count == 0 and explain.graph_count == 1
    out = torch.compile(fn, fullgraph=True, backend="aot_eager")(x, target)
    assert torch.equal(out, ops.bincount_reference(x, target, 4, IGNORE))


def test_auto_backend_picks_cpu_kernel_on_cpu():
    assert pydense._backend.resolve("auto", torch.device("cpu"), "confusion_matrix") == "cpu"


@requires_cuda
def test_cuda_meter_stays_on_device_and_rejects_other_devices():
    pred, target = labels_case(4, (1, 5, 6), seed=0)
    meter = SegmentationMeter(4).update(pred.cuda(), target.cuda())
    assert meter.cm.is_cuda
    with pytest.raises(ValueError, match="first update's device"):
        meter.update(pred, target)


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_large_matches_bincount(backend):
    """More pixels than one block / program handles, K = 150 (global-memory partials on CUDA,
    12 bin slices on Triton)."""
    for k, shape in ((19, (2, 512, 1024)), (150, (1, 256, 256))):
        x, target = logits_case(k, shape, seed=1)
        x, target = x.cuda(), target.cuda()
        cm = confusion_matrix(x, target, k, backend=backend)
        assert torch.equal(cm, ops.bincount_reference(x, target, k, IGNORE))
        assert torch.equal(confusion_matrix(x.argmax(1), target, k, backend=backend), cm)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.integers(1, 40), n=st.integers(1, 2), h=st.integers(1, 13), w=st.integers(1, 13),
       logits=st.booleans(), seed=st.integers(0, 2**16), backend=st.sampled_from(CPU_BACKENDS))
def test_hypothesis_matches_bincount(k, n, h, w, logits, seed, backend):
    if logits:
        pred, target = logits_case(k, (n, h, w), seed)
    else:
        pred, target = labels_case(k, (n, h, w), seed)
    cm = confusion_matrix(pred, target, k, backend=backend)
    assert torch.equal(cm, ops.bincount_reference(pred, target, k, IGNORE))


def test_triton_class_limit():
    from pydense.kernels import confusion_matrix as kernels

    assert kernels.MAX_CLASSES == ops.TRITON_MAX_CLASSES
    assert kernels.num_bins(kernels.MAX_CLASSES ** 2)[1] <= kernels.MAX_SLICES
    assert kernels.num_bins((kernels.MAX_CLASSES + 1) ** 2)[1] > kernels.MAX_SLICES
    p = torch.zeros(1, 2, 2, dtype=torch.long)
    if "triton" in CPU_BACKENDS:
        with pytest.raises(ValueError, match="backend='triton' supports num_classes <= 362"):
            confusion_matrix(p, p, 363, backend="triton")


def test_auto_leaves_triton_above_its_class_limit(monkeypatch):
    """With "auto" mapped to Triton, K above Triton's limit goes to the compiled kernel."""
    from pydense import _tuned

    if "triton" not in CPU_BACKENDS:
        pytest.skip("needs the Triton interpreter")
    monkeypatch.setitem(_tuned.AUTO_BACKEND, "confusion_matrix", {"cpu": "triton", "cuda": "triton"})
    pred, target = labels_case(400, (1, 3, 5), seed=1)
    cm = confusion_matrix(pred, target, 400)
    assert torch.equal(cm, ops.bincount_reference(pred, target, 400, IGNORE))
