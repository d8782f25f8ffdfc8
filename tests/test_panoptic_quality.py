"""Panoptic Quality: pydense.metrics.panoptic_quality / PanopticQuality (pydense.metrics.panoptic_eval)
/ the COCO evaluator CLI
against a straightforward dict-and-loop implementation of panopticapi's rules (tests/
panoptic_data.py), on random synthetic datasets and on hand-made images for each rule (VOID, crowd,
the 0.5 boundary, empty categories, areas from the JSON), on every backend of the pair counting.
"""
import doctest
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import pydense
from pydense.metrics import PanopticFormatError, PanopticQuality, panoptic_quality
from pydense.metrics import pq as pq_cli

from helpers import backend_params
from panoptic_data import (id2rgb, make_categories, random_image, reference_pq, write_dataset)

BACKENDS = backend_params()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dataset(seed, n=5, size=(23, 31), segments=(3, 9), **kw):
    rng = np.random.default_rng(seed)
    cats = make_categories()
    imgs = []
    for _ in range(n):
        h, w = (int(rng.integers(size[0] // 2, size[0] + 1)), int(rng.integers(size[1] // 2,
                                                                                size[1] + 1)))
        imgs.append(random_image(rng, h, w, int(rng.integers(*segments)), cats, **kw))
    return imgs, cats


def assert_same(got, want, stats=None, meter=None):
    for name in ("All", "Things", "Stuff"):
        assert got[name]["n"] == want[name]["n"], name
        for k in ("pq", "sq", "rq"):
            if math.isnan(want[name][k]):
                assert math.isnan(got[name][k]), (name, k)
            else:
                assert got[name][k] == pytest.approx(want[name][k], rel=1e-12, abs=1e-15), (name, k)
    assert got["per_class"].keys() == want["per_class"].keys()
    for c, v in want["per_class"].items():
        for k in ("pq", "sq", "rq"):
            assert got["per_class"][c][k] == pytest.approx(v[k], rel=1e-12, abs=1e-15), (c, k)
    if meter is not None:  # the exact integer counts, and the IoU sums
        for c, s in meter.stats().items():
            iou, tp, fp, fn = stats.get(c, [0.0, 0, 0, 0])
            assert (s["tp"], s["fp"], s["fn"]) == (tp, fp, fn), c
            assert s["iou"] == pytest.approx(iou, rel=1e-12, abs=1e-15), c


def run(imgs, cats, device="cpu", backend="auto", batch=False):
    meter = PanopticQuality(list(cats.values()), backend=backend)
    if batch:  # equal-size images in one update
        meter.update(torch.stack([torch.from_numpy(i[1]) for i in imgs]).to(device),
                     torch.stack([torch.from_numpy(i[0]) for i in imgs]).to(device),
                     [i[3] for i in imgs], [i[2] for i in imgs])
    else:
        for gt, pred, gs, ps in imgs:
            meter.update(torch.from_numpy(pred).to(device), torch.from_numpy(gt).to(device), ps, gs)
    return meter


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("seed", range(4))
def test_random_datasets_match_reference(device, backend, seed):
    imgs, cats = dataset(seed)
    want, stats = reference_pq(imgs, cats)
    meter = run(imgs, cats, device, backend)
    assert_same(meter.compute(), want, stats, meter)
    assert sum(s["tp"] + s["fn"] for s in meter.stats().values()) > 0  # not vacuous


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_batched_update_and_colour_input(device, backend):
    imgs, cats = dataset(7, n=4, size=(26, 34), segments=(4, 12))
    imgs = [tuple(a[:13, :17] if isinstance(a, np.ndarray) else a for a in im) for im in imgs]
    # crop to one size, then rebuild consistent segment lists from what is left in the crops
    fixed = []
    for gt, pred, gs, ps in imgs:
        g_ids, g_cnt = np.unique(gt, return_counts=True)
        area = dict(zip(g_ids.tolist(), g_cnt.tolist()))
        gs = [dict(s, area=area[s["id"]]) for s in gs if s["id"] in area]
        ps = [s for s in ps if s["id"] in set(np.unique(pred).tolist())]
        fixed.append((gt, pred, gs, ps))
    want, stats = reference_pq(fixed, cats)
    meter = run(fixed, cats, device, backend, batch=True)
    assert_same(meter.compute(), want, stats, meter)
    # COCO colours (H, W, 3) uint8, and a list of images through the functional form
    got = panoptic_quality([torch.from_numpy(id2rgb(i[1])).to(device) for i in fixed],
                           [torch.from_numpy(id2rgb(i[0])).to(device) for i in fixed],
                           [i[3] for i in fixed], [i[2] for i in fixed], cats, backend=backend)
    assert_same(got, want)


def seg(i, c, area=None, crowd=0):
    return {"id": i, "category_id": c, "iscrowd": crowd, **({} if area is None else {"area": area})}


CATS = {1: {"id": 1, "isthing": 1}, 2: {"id": 2, "isthing": 1}, 3: {"id": 3, "isthing": 0},
        4: {"id": 4, "isthing": 0}}


def one(gt, pred, gs, ps, cats=CATS, backend="auto"):
    gt, pred = np.array(gt), np.array(pred)
    meter = PanopticQuality(cats, backend=backend)
    meter.update(torch.from_numpy(pred), torch.from_numpy(gt), ps, gs)
    want, stats = reference_pq([(gt, pred, gs, ps)], cats)
    got = meter.compute()
    assert_same(got, want, stats, meter)
    return meter.stats()


@pytest.mark.parametrize("backend", ["cpu", "torch", "triton"])
def test_rules_by_hand(backend):
    if backend == "triton" and not pydense._backend.triton_interpret():
        pytest.skip("Triton on CPU tensors needs TRITON_INTERPRET=1")
    # IoU exactly 0.5 does not match (FN + FP); 0.75 matches
    s = one([[1, 1, 1, 1]], [[5, 5, 0, 0]], [seg(1, 1, 4)], [seg(5, 1)], backend=backend)
    assert (s[1]["tp"], s[1]["fn"], s[1]["fp"]) == (0, 1, 1)
    s = one([[1, 1, 1, 1]], [[5, 5, 5, 0]], [seg(1, 1, 4)], [seg(5, 1)], backend=backend)
    assert (s[1]["tp"], s[1]["fn"], s[1]["fp"], s[1]["iou"]) == (1, 0, 0, 0.75)
    # the union leaves out the prediction's VOID pixels: IoU 2 / (4 + 2 - 2 - 2) = 1
    s = one([[1, 1, 0, 0]], [[5, 5, 5, 5]], [seg(1, 1, 2)], [seg(5, 1)], backend=backend)
    assert (s[1]["tp"], s[1]["iou"]) == (1, 1.0)
    # wrong category: no match; the prediction is an FP of its own category
    s = one([[1, 1, 1, 1]], [[5, 5, 5, 5]], [seg(1, 1, 4)], [seg(5, 2)], backend=backend)
    assert (s[1]["fn"], s[2]["fp"]) == (1, 1)
    # crowd never matches, is no FN, and with VOID excuses a prediction over half on it
    s = one([[2, 2, 0, 3, 3, 3]], [[5, 5, 5, 5, 7, 7]], [seg(2, 1, 2, crowd=1), seg(3, 3, 3)],
            [seg(5, 1), seg(7, 3)], backend=backend)
    assert (s[1]["tp"], s[1]["fp"], s[1]["fn"]) == (0, 0, 0)  # 3 of 4 pixels on crowd + VOID
    assert (s[3]["tp"], s[3]["fp"], s[3]["fn"]) == (1, 0, 0)
    # exactly half on VOID + crowd: still an FP
    s = one([[2, 0, 3, 3]], [[5, 5, 5, 5]], [seg(2, 1, 1, crowd=1), seg(3, 3, 2)], [seg(5, 1)],
            backend=backend)
    assert (s[1]["fp"], s[3]["fn"]) == (1, 1)
    # the crowd region of another category excuses nothing
    s = one([[2, 2, 2, 3]], [[5, 5, 5, 5]], [seg(2, 2, 3, crowd=1), seg(3, 3, 1)], [seg(5, 1)],
            backend=backend)
    assert s[1]["fp"] == 1
    # the last crowd segment of a category in the JSON is the one used (panopticapi's dict)
    s = one([[2, 2, 6, 6, 6]], [[5, 5, 5, 0, 0]], [seg(6, 1, 3, crowd=1), seg(2, 1, 2, crowd=1)],
            [seg(5, 1)], backend=backend)
    assert s[1]["fp"] == 0  # crowd 2 (the last) covers 2 of 3 pixels
    s = one([[2, 2, 6, 6, 6]], [[5, 5, 5, 0, 0]], [seg(2, 1, 2, crowd=1), seg(6, 1, 3, crowd=1)],
            [seg(5, 1)], backend=backend)
    assert s[1]["fp"] == 1  # crowd 6 (the last) covers 1 of 3
    # the ground-truth area comes from the JSON: a larger stated area lowers the IoU below 0.5
    s = one([[1, 1, 1, 1]], [[5, 5, 5, 0]], [seg(1, 1, 7)], [seg(5, 1)], backend=backend)
    assert (s[1]["tp"], s[1]["fn"]) == (0, 1)
    # a ground-truth segment listed but absent from the PNG is an FN; an unlisted gt id is ignored
    s = one([[1, 1, 9, 9]], [[5, 5, 7, 7]], [seg(1, 1, 2), seg(4, 2, 5)], [seg(5, 1), seg(7, 2)],
            backend=backend)
    assert (s[1]["tp"], s[2]["fn"], s[2]["fp"]) == (1, 1, 1)


def test_empty_categories_and_averages():
    # category 2 and 4 never appear: skipped from the averages (n), per-class zeros
    s = one([[1, 1, 3, 3]], [[5, 5, 7, 0]], [seg(1, 1, 2), seg(3, 3, 2)], [seg(5, 1), seg(7, 3)])
    assert s[2] == {"iou": 0.0, "tp": 0, "fp": 0, "fn": 0}
    r = panoptic_quality(torch.tensor([[5, 5, 7, 0]]), torch.tensor([[1, 1, 3, 3]]),
                         [seg(5, 1), seg(7, 3)], [seg(1, 1, 2), seg(3, 3, 2)], CATS)
    assert (r["All"]["n"], r["Things"]["n"], r["Stuff"]["n"]) == (2, 1, 1)
    assert r["per_class"][2] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    # stuff: IoU 1/(1+2-1) = 0.5 -> no match: PQ 0 and SQ 0 (no TP), n still counts it
    assert r["Stuff"]["pq"] == 0.0 and r["Stuff"]["sq"] == 0.0
    assert r["Things"]["pq"] == 1.0
    # no stuff category at all: nan (panopticapi would divide by zero)
    r = panoptic_quality(torch.tensor([[5, 5]]), torch.tensor([[1, 1]]), [seg(5, 1)], [seg(1, 1, 2)],
                         [{"id": 1, "isthing": 1}])
    assert r["All"]["pq"] == 1.0 and math.isnan(r["Stuff"]["pq"]) and r["Stuff"]["n"] == 0


def test_empty_batch_gives_nan_scores():
    """Regression: an empty (0, H, W) batch raised "max() arg is an empty sequence"; it adds no
    image, and the scores are nan like those of empty segment lists."""
    empty = torch.zeros(0, 4, 4, dtype=torch.int32)
    r = panoptic_quality(empty, empty, [], [], CATS)
    assert all(math.isnan(r[k]["pq"]) and r[k]["n"] == 0 for k in ("All", "Things", "Stuff"))
    meter = PanopticQuality(CATS)
    meter.update(empty, empty, [], [])
    assert meter.images == 0
    meter.update(torch.tensor([[5, 5]]), torch.tensor([[1, 1]]), [seg(5, 1)], [seg(1, 1, 2)])
    assert meter.images == 1 and meter.compute()["Things"]["pq"] == 1.0


def test_inconsistent_predictions_raise_with_the_id():
    gt, gs = torch.tensor([[1, 1, 3, 3]]), [seg(1, 1, 2), seg(3, 3, 2)]
    with pytest.raises(PanopticFormatError, match="segment with ID 9 is presented in PNG and not "
                                                  "presented in JSON"):
        panoptic_quality(torch.tensor([[5, 5, 9, 0]]), gt, [seg(5, 1)], gs, CATS)
    with pytest.raises(KeyError, match=r"segment IDs \[8\] are presented in JSON and not "
                                       r"presented in PNG"):
        panoptic_quality(torch.tensor([[5, 5, 0, 0]]), gt, [seg(5, 1), seg(8, 3)], gs, CATS)
    with pytest.raises(ValueError, match="segment with ID 5 has unknown category_id 42"):
        panoptic_quality(torch.tensor([[5, 5, 0, 0]]), gt, [seg(5, 42)], gs, CATS)
    with pytest.raises(ValueError, match="image with ID 17"):
        PanopticQuality(CATS).update(torch.tensor([[5, 5, 9, 0]]), gt, [seg(5, 1)], gs,
                                     image_ids=[17])


def test_bad_arguments():
    gt, gs = torch.tensor([[1, 1, 3, 3]]), [seg(1, 1, 2), seg(3, 3, 2)]
    pred, ps = torch.tensor([[5, 5, 7, 7]]), [seg(5, 1), seg(7, 3)]
    with pytest.raises(ValueError, match=r"pred_panoptic of shape \(1, 1, 3\) and gt_panoptic of "
                                         r"shape \(1, 1, 4\)"):
        panoptic_quality(pred[:, :3], gt, ps, gs, CATS)
    with pytest.raises(TypeError, match="pred_panoptic must hold integer segment ids"):
        panoptic_quality(pred.float(), gt, ps, gs, CATS)
    with pytest.raises(ValueError, match=r"gt_panoptic: a uint8 tensor must hold COCO colours"):
        panoptic_quality(pred, gt.to(torch.uint8), ps, gs, CATS)
    with pytest.raises(ValueError, match="gt_segments of image 0: every segment needs the fields "
                                         r"\['id', 'category_id', 'iscrowd', 'area'\]"):
        panoptic_quality(pred, gt, ps, [seg(1, 1), seg(3, 3, 2)], CATS)
    with pytest.raises(ValueError, match="categories: category 1 needs an 'isthing' field"):
        panoptic_quality(pred, gt, ps, gs, [{"id": 1}])
    with pytest.raises(ValueError, match="one list of segment dicts per image: 2 image"):
        PanopticQuality(CATS).update(torch.stack([pred, pred]), torch.stack([gt, gt]), ps, [gs, gs])


def test_cli_matches_reference(tmp_path, capsys):
    imgs, cats = dataset(11, n=6, size=(29, 37), segments=(5, 14))
    gt_json, gt_dir, pred_json, pred_dir = write_dataset(str(tmp_path), imgs, cats)
    want, _ = reference_pq(imgs, cats)
    out = tmp_path / "results.json"
    assert pq_cli.main(["--gt-json", gt_json, "--gt-folder", gt_dir, "--pred-json", pred_json,
                        "--pred-folder", pred_dir, "--workers", "0", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "All       |" in printed and "Things" in printed
    got = json.loads(out.read_text())
    got["per_class"] = {int(k): v for k, v in got["per_class"].items()}
    assert_same(got, want)
    # the module entry point with decoding workers (a separate process)
    res = subprocess.run([sys.executable, "-m", "pydense.metrics.pq", "--gt-json", gt_json,
                          "--pred-json", pred_json, "--workers", "2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    row = next(line for line in res.stdout.splitlines() if line.startswith("All"))
    assert f"{100 * want['All']['pq']:5.1f}" in row


def test_cli_errors(tmp_path, capsys):
    imgs, cats = dataset(12, n=2)
    gt_json, gt_dir, pred_json, pred_dir = write_dataset(str(tmp_path), imgs, cats)
    doc = json.loads(open(pred_json).read())
    dropped = doc["annotations"][1]["segments_info"].pop(0)["id"]
    with open(pred_json, "w") as f:
        json.dump(doc, f)
    assert pq_cli.main(["--gt-json", gt_json, "--pred-json", pred_json, "--workers", "0"]) == 2
    assert f"segment with ID {dropped} is presented in PNG" in capsys.readouterr().err
    doc["annotations"].pop(1)
    with open(pred_json, "w") as f:
        json.dump(doc, f)
    with pytest.raises(PanopticFormatError, match="no prediction for the image with id: 1"):
        pq_cli.evaluate(gt_json, pred_json, workers=0)


@pytest.mark.parametrize("module", ["pydense.metrics", "pydense.metrics.panoptic_eval"])
def test_docstring_examples(module):
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_module_names(monkeypatch):
    """The module is pydense.metrics.panoptic_eval (its public names are also in pydense.metrics,
    the function panoptic_quality among them). pydense.metrics.panoptic, the former name, still
    imports, with a DeprecationWarning, and is the same module object; ``import pydense`` does not
    import it."""
    import importlib

    module = importlib.import_module("pydense.metrics.panoptic_eval")
    assert pydense.metrics.panoptic_eval is module
    assert pydense.metrics.panoptic_quality is panoptic_quality is module.panoptic_quality
    from pydense.metrics.panoptic_eval import OFFSET, PanopticFormatError as Err
    from pydense.metrics.panoptic_eval import PanopticQuality as PQ
    assert (PQ, Err, OFFSET) == (PanopticQuality, PanopticFormatError, module.OFFSET)
    assert pq_cli.PanopticQuality is PanopticQuality

    monkeypatch.delitem(sys.modules, "pydense.metrics.panoptic", raising=False)
    if "panoptic" in vars(pydense.metrics):  # (hasattr would import it: the package's __getattr__)
        monkeypatch.delattr(pydense.metrics, "panoptic")
    with pytest.warns(DeprecationWarning, match="pydense.metrics.panoptic is deprecated, import "
                                                "pydense.metrics.panoptic_eval") as rec:
        old = importlib.import_module("pydense.metrics.panoptic")
    assert [w.filename for w in rec] == [__file__]  # the importing line, not pydense's
    assert old is module and pydense.metrics.panoptic is module
    from pydense.metrics.panoptic import PanopticFormatError as OldErr
    from pydense.metrics.panoptic import PanopticQuality as OldPQ
    from pydense.metrics.panoptic import panoptic_quality as old_fn
    assert (OldPQ, OldErr, old_fn) == (PanopticQuality, PanopticFormatError, panoptic_quality)
    monkeypatch.delitem(sys.modules, "pydense.metrics.panoptic")
    monkeypatch.delattr(pydense.metrics, "panoptic")
    with pytest.warns(DeprecationWarning, match="pydense.metrics.panoptic is deprecated"):
        assert pydense.metrics.panoptic.PanopticQuality is PanopticQuality


def test_fused_panoptic_output_is_what_the_evaluator_reads():
    """pydense.panoptic_fusion.fuse's (id map, segments_info) evaluate directly: against itself
    PQ = 1 for every category present; against a fusion with a dropped instance, that instance is
    an FN."""
    g = torch.Generator().manual_seed(3)
    h, w, m = 40, 52, 6
    semantic = torch.randint(0, 4, (h, w), generator=g)  # stuff 2, 3; things 0, 1
    semantic[:, 26:] = 3
    masks = torch.zeros(m, h, w, dtype=torch.bool)
    for i in range(m):
        y, x = 6 * i, 8 * i
        masks[i, y:y + 10, x:x + 12] = True
    scores = torch.linspace(0.95, 0.6, m)
    classes = torch.tensor([0, 1, 0, 1, 0, 1])
    cats = [{"id": c, "isthing": int(c < 2)} for c in range(4)]
    pan, segs = pydense.panoptic_fusion.fuse(semantic, masks, scores, classes,
                                             thing_ids={0, 1}, stuff_area_threshold=20)
    gt_segs = [dict(s, iscrowd=0) for s in segs]
    r = panoptic_quality(pan, pan, segs, gt_segs, cats)
    present = {s["category_id"] for s in segs}
    assert r["All"]["n"] == len(present) and r["All"]["pq"] == 1.0
    pan2, segs2 = pydense.panoptic_fusion.fuse(semantic, masks[1:], scores[1:], classes[1:],
                                               thing_ids={0, 1}, stuff_area_threshold=20)
    s = PanopticQuality(cats)
    s.update(pan2, pan, segs2, gt_segs)
    assert s.stats()[0]["fn"] >= 1 and s.compute()["All"]["pq"] < 1.0


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_batch_with_tables_of_different_lengths(device, backend):
    """Images of one update have id tables of different lengths (padded to the longest): ground
    truth ids missing from the JSON still count into the predicted areas, and a PNG id missing from
    the prediction JSON is found in any image of the batch."""
    gt = torch.tensor([[[1, 1, 8, 8]], [[1, 2, 3, 4]]])      # id 8 of image 0: not in its JSON
    pred = torch.tensor([[[5, 5, 5, 5]], [[5, 6, 7, 9]]])
    gs = [[seg(1, 1, 2)], [seg(1, 1, 1), seg(2, 2, 1), seg(3, 3, 1), seg(4, 4, 1)]]
    ps = [[seg(5, 1)], [seg(5, 1), seg(6, 2), seg(7, 3), seg(9, 4)]]
    imgs = [(gt[i].numpy(), pred[i].numpy(), gs[i], ps[i]) for i in range(2)]
    want, stats = reference_pq(imgs, CATS)
    meter = PanopticQuality(CATS, backend=backend)
    meter.update(pred.to(device), gt.to(device), ps, gs)
    assert_same(meter.compute(), want, stats, meter)
    assert meter.stats()[1]["fn"] == 1  # image 0: IoU 2 / 4 = 0.5 (pred area 4, not 2)
    ps_bad = [ps[0], [seg(5, 1), seg(6, 2), seg(7, 3)]]
    with pytest.raises(PanopticFormatError, match="image with ID 1 segment with ID 9 is presented "
                                                  "in PNG"):
        PanopticQuality(CATS, backend=backend).update(pred.to(device), gt.to(device), ps_bad, gs)
    ps_bad = [[seg(5, 1), seg(6, 2)], ps[1]]
    with pytest.raises(PanopticFormatError, match=r"image with ID 0 the following segment IDs \[6\]"):
        PanopticQuality(CATS, backend=backend).update(pred.to(device), gt.to(device), ps_bad, gs)
