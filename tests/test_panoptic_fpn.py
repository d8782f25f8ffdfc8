"""Panoptic FPN (pydense.models.panoptic_fpn): parameter counts, sizes, pydense ops vs stock
PyTorch on one state_dict (forward and gradients), the panoptic inference through
pydense.panoptic_fusion, torch.compile without graph breaks, and the end-to-end example scored
by the COCO evaluator."""
import json
import os
import subprocess
import sys

import pytest
import torch

from pydense import models

from helpers import PydenseOpCounter, check_compile_fullgraph, check_model_gradients


def close(a, b, tol=1e-4):
    scale = max(1.0, b.abs().max().item())
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * scale)


def pair(backend="cpu", num_classes=5):
    torch.manual_seed(0)
    m = models.panoptic_fpn(num_classes, backend=backend)
    t = models.panoptic_fpn(num_classes, backend="torch")
    t.load_state_dict(m.state_dict())
    return m, t


def test_parameter_counts():
    # ResNet-50 without fc (torchvision: 23,508,032) + FPN: laterals (256 + 512 + 1024 + 2048) x 256
    # + biases, four 3x3 256 -> 256 outputs with bias (detectron2's R50-FPN: 26.85M)
    fpn = (256 + 512 + 1024 + 2048) * 256 + 4 * 256 + 4 * (256 * 256 * 9 + 256)
    m = models.panoptic_fpn(54)
    assert models.parameter_count(m.backbone) == 23_508_032 + fpn == 26_852_416
    # semantic head: P2 one stage, P3 one, P4 two, P5 three (3x3, no bias, GroupNorm), 1x1 to 54
    stage0, stage = 256 * 128 * 9 + 256, 128 * 128 * 9 + 256
    head = 4 * stage0 + (0 + 0 + 1 + 2) * stage + 128 * 54 + 54
    assert models.parameter_count(m.sem_seg_head) == head


@pytest.mark.parametrize("backend", ["cpu", "auto"])
def test_matches_torch_forward_and_backward(backend):
    m, t = pair(backend)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = m.eval()(x)
        assert out.shape == (2, 5, 64, 96)
        close(out, t.eval()(x))
    check_model_gradients(m, t, x)


def test_upsampling_on_pydense():
    m, _ = pair("cpu")
    with torch.no_grad(), PydenseOpCounter() as counter:
        m.eval()(torch.randn(1, 3, 64, 64))
    # 1 + 2 + 3 bilinear stages in the head, the final x4
    assert counter.pydense().get("pydense::upsample_bilinear2d", 0) == 7


def test_panoptic_inference():
    """Semantic logits + instances -> fuse's panoptic map, stuff mapped to COCO ids, the things
    class never stuff."""
    m, _ = pair("cpu", num_classes=3)
    logits = torch.zeros(3, 16, 16)
    logits[1, :8] = 5     # stuff class 1 at the top
    logits[2, 8:] = 5     # stuff class 2 at the bottom
    logits[0, 4:12, 4:12] = 9  # the "things" class in the middle
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, 4:12, 4:12] = True
    pan, segments = m.panoptic(logits, masks, torch.tensor([0.9]), torch.tensor([7]), thing_ids={0},
                               stuff_ids={1: 31, 2: 32}, stuff_area_threshold=1)
    assert [(s["category_id"], s["isthing"], s["area"]) for s in segments] == [
        (7, True, 64), (31, False, 128 - 32), (32, False, 128 - 32)]
    assert int((pan == 1).sum()) == 64


def test_compile_fullgraph_without_graph_breaks():
    torch.manual_seed(0)
    model = models.panoptic_fpn(4).eval()
    x = torch.randn(1, 3, 64, 64)
    # GroupNorm's decomposition under aot_eager rounds differently: 1e-4
    check_compile_fullgraph(model, x.requires_grad_(), rtol=1e-4, atol=1e-4)


def test_bad_input():
    with pytest.raises(ValueError, match=r"multiples of 32 .* got \(60, 64\)"):
        models.panoptic_fpn(4)(torch.randn(1, 3, 60, 64))
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        models.panoptic_fpn(0)


def test_example_end_to_end(tmp_path):
    """examples/panoptic_fpn.py: random weights to COCO panoptic files the evaluator scores."""
    pytest.importorskip("PIL")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, os.path.join(root, "examples", "panoptic_fpn.py"), "--out",
                          str(tmp_path), "--device", "cpu", "--images", "2"], cwd=root,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "All       |" in res.stdout
    pq = json.loads((tmp_path / "pq.json").read_text())
    assert pq["Things"]["n"] == 2 and pq["Things"]["pq"] > 0.3  # the detector is nearly right
    assert pq["Stuff"]["n"] == 3
