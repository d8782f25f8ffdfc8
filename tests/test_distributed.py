"""pydense on torch.distributed (gloo, 2 processes on CPU): the metrics' sync is exact, and the
COCO panoptic evaluator runs under torchrun with each rank on its shard."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pydense
import pydense.distributed as pdist
from pydense.metrics import PanopticQuality, SegmentationMeter
from pydense.metrics import pq as pq_cli

from panoptic_data import make_categories, random_image, write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORLD = 2


def _spawned(rank, world, init_file, out_dir, fn, args):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = fn(rank, world, *args)
    except Exception as e:  # noqa: BLE001 - the parent asserts on it
        result = e
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))  # before the teardown
    dist.barrier()  # every rank done with its collectives before the group goes
    dist.destroy_process_group()


def run_ranks(tmp_path, fn, *args, world=WORLD):
    """``fn(rank, world, *args)`` on ``world`` gloo processes; the list of their results (or
    the exception each raised). gloo's teardown can abort a process after its work is done
    ("terminate called without an active exception", seen once in CI): that is tolerated only
    when every rank has written its result."""
    out = tmp_path / "ranks"
    out.mkdir(exist_ok=True)
    files = [out / f"rank{r}.pt" for r in range(world)]
    try:
        mp.spawn(_spawned, args=(world, str(tmp_path / "init"), str(out), fn, args), nprocs=world)
    except mp.ProcessExitedException:
        if not all(f.is_file() for f in files):
            raise
    return [torch.load(f, weights_only=False) for f in files]


# --- helpers ----------------------------------------------------------------------------------

def test_helpers_without_a_process_group():
    assert (pdist.world_size(), pdist.rank(), pdist.is_main(), pdist.is_distributed()) == (1, 0, True, False)
    a = torch.arange(4)
    (b,) = pdist.all_reduce_sum([a])
    assert torch.equal(a, b) and b.data_ptr() != a.data_ptr()
    with pytest.raises(TypeError, match="integer tensors only"):
        pdist.all_reduce_sum([torch.ones(2)])
    pdist.check_same(3, "x")  # nothing to compare
    assert pdist.init_from_env("cpu") == torch.device("cpu")  # WORLD_SIZE unset: one process


def _reduce(rank, world):
    (s,) = pdist.all_reduce_sum([torch.tensor([[rank + 1, 10 * rank]], dtype=torch.int32)])
    try:
        pdist.check_same(rank, "the rank")
    except ValueError as e:
        return s, str(e)
    return s, None


def test_all_reduce_sum_and_check_same(tmp_path):
    for s, err in run_ranks(tmp_path, _reduce):
        assert s.dtype == torch.int32 and s.tolist() == [[3, 10]]
        assert err == "the rank differs between ranks: rank 0 has 0, rank 1 has 1"


# --- SegmentationMeter ------------------------------------------------------------------------

def _seg_batches(n=5, classes=7):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        h, w = 9 + i, 13 - i
        logits = torch.randn(2, classes, h, w, generator=g)
        target = torch.randint(0, classes, (2, h, w), generator=g)
        target[:, :2, :3] = 255
        out.append((logits, target))
    return out


def _seg_meter(rank, world, classes):
    meter = SegmentationMeter(classes)
    for logits, target in _seg_batches()[rank::world]:
        meter.update(logits, target)
    local = meter.compute(sync=False)
    synced = meter.compute()
    again = meter.compute()  # compute does not change the meter: the same twice
    return local, synced, again, meter.sync().cm


def test_segmentation_meter_sync_equals_one_process_exactly(tmp_path):
    single = SegmentationMeter(7)
    for logits, target in _seg_batches():
        single.update(logits, target)
    want = single.compute()
    results = run_ranks(tmp_path, _seg_meter, 7)
    for rank, (local, synced, again, cm) in enumerate(results):
        assert torch.equal(cm, single.cm)
        for got in (synced, again):
            assert got["mIoU"] == want["mIoU"] and got["fw_iou"] == want["fw_iou"]
            assert torch.equal(got["per_class_iou"].nan_to_num(-1), want["per_class_iou"].nan_to_num(-1))
        shard = SegmentationMeter(7)
        for logits, target in _seg_batches()[rank::WORLD]:
            shard.update(logits, target)
        assert local["mIoU"] == shard.compute()["mIoU"] != want["mIoU"]


def _seg_mismatch(rank, world):
    meter = SegmentationMeter(3 + rank)  # the ranks disagree
    return meter.compute()


def test_segmentation_meter_sync_refuses_different_class_counts(tmp_path):
    for err in run_ranks(tmp_path, _seg_mismatch):
        assert isinstance(err, ValueError)
        assert "SegmentationMeter: num_classes differs between ranks: rank 0 has 3, rank 1 has 4" in str(err)


# --- PanopticQuality --------------------------------------------------------------------------

def _pq_images(n=7, seed=5):
    rng = np.random.default_rng(seed)
    cats = make_categories()
    return [random_image(rng, 19, 23, int(rng.integers(3, 9)), cats) for _ in range(n)], cats


def _pq_update(meter, images):
    for gt, pred, gs, ps in images:
        meter.update(torch.from_numpy(pred), torch.from_numpy(gt), ps, gs)


def _pq_meter(rank, world):
    images, cats = _pq_images()
    meter = PanopticQuality(cats)
    _pq_update(meter, images[rank::world])
    return meter.compute(), meter.compute(sync=False), meter.sync().images


def test_panoptic_quality_sync_equals_one_process_exactly(tmp_path):
    images, cats = _pq_images()
    single = PanopticQuality(cats)
    _pq_update(single, images)
    want = single.compute()
    for rank, (got, local, n) in enumerate(run_ranks(tmp_path, _pq_meter)):
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)  # exact, nan too
        assert n == len(images)
        shard = PanopticQuality(cats)
        _pq_update(shard, images[rank::WORLD])
        assert json.dumps(local, sort_keys=True) == json.dumps(shard.compute(), sort_keys=True)


def test_panoptic_iou_sums_do_not_depend_on_the_order():
    """The integer IoU sums make the result independent of how the images are grouped and
    ordered (the sharded sum is the same number), and stay within a rounding of float64's."""
    images, cats = _pq_images(n=9, seed=8)
    forward, backward = PanopticQuality(cats), PanopticQuality(cats)
    _pq_update(forward, images)
    _pq_update(backward, images[::-1])
    assert torch.equal(forward.iou_hi, backward.iou_hi) and torch.equal(forward.iou_lo, backward.iou_lo)
    assert forward.compute() == backward.compute()
    assert forward.iou.dtype == torch.float64 and float(forward.iou.sum()) > 0


# --- the COCO evaluator under torchrun ---------------------------------------------------------

def _torchrun(*args, nproc=WORLD):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={nproc}", "-m", "pydense.metrics.pq", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_pq_evaluator_under_torchrun(tmp_path):
    images, cats = _pq_images(n=5)
    gt_json, gt_dir, pred_json, pred_dir = write_dataset(str(tmp_path), images, cats)
    want = pq_cli.evaluate(gt_json, pred_json, workers=0)
    out = tmp_path / "results.json"
    res = _torchrun("--gt-json", gt_json, "--pred-json", pred_json, "--workers", "0", "--device",
                    "cpu", "--output", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("All       |") == 1 and "2 processes" in res.stdout  # rank 0 prints
    assert pq_cli.format_results(want) in res.stdout
    got = json.loads(out.read_text())
    assert json.dumps(got, sort_keys=True) == json.dumps(
        {k: ({str(c): v for c, v in r.items()} if k == "per_class" else r) for k, r in want.items()},
        sort_keys=True)

    # a malformed prediction in rank 1's shard (image 3): every rank stops, rank 0 reports it
    doc = json.loads(open(pred_json).read())
    dropped = doc["annotations"][3]["segments_info"].pop(0)["id"]
    with open(pred_json, "w") as f:
        json.dump(doc, f)
    res = _torchrun("--gt-json", gt_json, "--pred-json", pred_json, "--workers", "0", "--device", "cpu")
    assert res.returncode != 0
    assert f"segment with ID {dropped} is presented in PNG" in res.stderr
    assert res.stderr.count(f"segment with ID {dropped}") == 1  # printed once, by rank 0


def _first_error(rank, world, gt_json, pred_json):
    try:
        pq_cli.evaluate(gt_json, pred_json, workers=0)
    except Exception as e:  # noqa: BLE001
        return type(e).__name__, str(e)
    return None


def test_pq_evaluator_reports_the_first_bad_image_on_every_rank(tmp_path):
    """Two bad images, one in each rank's shard: every rank raises the first one's error, as one
    process would."""
    images, cats = _pq_images(n=5)
    gt_json, gt_dir, pred_json, pred_dir = write_dataset(str(tmp_path), images, cats)
    doc = json.loads(open(pred_json).read())
    for i in (1, 2):  # rank 1's first image, rank 0's second
        doc["annotations"][i]["segments_info"].pop(0)
    with open(pred_json, "w") as f:
        json.dump(doc, f)
    with pytest.raises(pydense.metrics.PanopticFormatError) as single:
        pq_cli.evaluate(gt_json, pred_json, workers=0)
    for got in run_ranks(tmp_path, _first_error, gt_json, pred_json):
        assert got == ("PanopticFormatError", str(single.value))
