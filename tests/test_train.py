"""python -m pydense.train on tiny synthetic datasets (CPU): the loss falls, on 1 process and on 2
gloo processes under torchrun; evaluation reports mIoU / PSNR and SSIM; a resumed run's
parameters equal the uninterrupted run's bit for bit."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pydense import train

from helpers import requires_cuda

PIL = pytest.importorskip("PIL")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_voc(root, n=24, size=40, seed=0):
    """A VOC-style folder: noisy grey background (class 0), a red square (class 1) and a blue
    disc (class 2) at random places, a 255 (ignore) ring around the disc; train/val split files."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    names = []
    for i in range(n):
        img = rng.integers(90, 140, (size, size, 3)).astype(np.uint8)
        label = np.zeros((size, size), np.uint8)
        y, x, s = *rng.integers(0, size - 14, 2), int(rng.integers(8, 14))
        img[y:y + s, x:x + s] = (220, 30, 30)
        label[y:y + s, x:x + s] = 1
        cy, cx, r = *rng.integers(8, size - 8, 2), int(rng.integers(4, 8))
        d = np.hypot(yy - cy, xx - cx)
        img[d < r] = (30, 30, 220)
        label[d < r] = 2
        label[(d >= r) & (d < r + 1)] = 255
        name = f"{i:04d}"
        Image.fromarray(img).save(os.path.join(root, "JPEGImages", name + ".png"))
        Image.fromarray(label).save(os.path.join(root, "SegmentationClass", name + ".png"))
        names.append(name)
    with open(os.path.join(root, "ImageSets/Segmentation/train.txt"), "w") as f:
        f.write("\n".join(names[:-4]) + "\n")
    with open(os.path.join(root, "ImageSets/Segmentation/val.txt"), "w") as f:
        f.write("\n".join(names[-4:]) + "\n")
    return root


def make_hr(root, n=12, size=48, seed=0):
    """A folder of smooth HR images (gradients and blobs): learnable by a few EDSR steps."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    yy, xx = np.mgrid[:size, :size] / size
    for i in range(n):
        a, b, c = rng.uniform(0.5, 3, 3)
        img = np.stack([np.sin(a * 3 * xx + b), np.cos(b * 3 * yy + c), np.sin(c * 3 * (xx + yy))], -1)
        Image.fromarray(((img * 0.5 + 0.5) * 255).astype(np.uint8)).save(os.path.join(root, f"{i:03d}.png"))
    return root


def _log(out):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


SEG = ["--model", "segnet", "--num-classes", "3", "--crop", "32", "--batch-size", "4",
       "--optimizer", "adam", "--lr", "2e-3", "--log-every", "1", "--device", "cpu"]


def test_segmentation_loss_falls_and_evaluates(tmp_path):
    data = make_voc(str(tmp_path / "voc"))
    out = str(tmp_path / "run")
    assert train.main(SEG + ["--data", data, "--steps", "10", "--workers", "2", "--out", out]) == 0
    log = _log(out)
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 10 and losses[-1] < 0.8 * losses[0], losses
    (ev,) = [r["eval"] for r in log if "eval" in r]
    assert ev["step"] == 10 and 0.0 <= ev["mIoU"] <= 1.0 and ev["pixel_accuracy"] > 0.3
    ckpt = torch.load(os.path.join(out, "last.pt"), weights_only=False)
    assert ckpt["step"] == 10 and len(ckpt["rng"]) == 1


def test_resume_is_bit_for_bit(tmp_path):
    data = make_voc(str(tmp_path / "voc"), n=20)
    full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    args = SEG + ["--data", data, "--steps", "7", "--save-every", "3", "--keep", "5", "--no-eval",
                  "--workers", "2"]
    assert train.main(args + ["--out", full]) == 0  # 16 images / 4 per step: epochs of 4 steps
    assert sorted(n for n in os.listdir(full) if n.startswith("step-")) == [
        "step-00000003.pt", "step-00000006.pt", "step-00000007.pt"]
    assert train.main(args + ["--out", resumed, "--resume",
                              os.path.join(full, "step-00000003.pt")]) == 0
    a = torch.load(os.path.join(full, "last.pt"), weights_only=False)
    b = torch.load(os.path.join(resumed, "last.pt"), weights_only=False)
    assert a["step"] == b["step"] == 7 and a["epoch"] == b["epoch"] == 1
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert [r["loss"] for r in _log(full)][3:] == [r["loss"] for r in _log(resumed)]


def test_sr_loss_falls_and_reports_psnr_ssim(tmp_path):
    """EDSR from an HR folder, compiled (aot_eager on CPU) and in deterministic mode."""
    data = make_hr(str(tmp_path / "hr"))
    val = make_hr(str(tmp_path / "val"), n=3, seed=1)
    out = str(tmp_path / "run")
    assert train.main(["--model", "edsr_baseline", "--scale", "2", "--data", data, "--val-data", val,
                       "--crop", "12", "--batch-size", "4", "--steps", "12", "--lr", "1e-3",
                       "--log-every", "1", "--workers", "0", "--device", "cpu", "--deterministic",
                       "--compile", "--compile-backend", "aot_eager", "--out", out]) == 0
    log = _log(out)
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < 0.7 * losses[0], losses
    (ev,) = [r["eval"] for r in log if "eval" in r]
    assert 10 < ev["psnr"] < 60 and 0 < ev["ssim"] <= 1


def test_two_processes_under_torchrun(tmp_path):
    data = make_voc(str(tmp_path / "voc"))
    out = str(tmp_path / "run")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node=2", "-m", "pydense.train", *SEG, "--data", data,
                          "--steps", "8", "--batch-size", "2", "--workers", "0", "--out", out],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("pydense.train: segnet on cpu x 2") == 1  # rank 0 prints
    log = _log(out)
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 8 and losses[-1] < losses[0], losses
    (ev,) = [r["eval"] for r in log if "eval" in r]
    ckpt = torch.load(os.path.join(out, "last.pt"), weights_only=False)
    assert len(ckpt["rng"]) == 2  # each rank's random state
    # the evaluation over 2 shards equals one process's over the whole validation set
    model = train.build_model(train.parse_args(SEG + ["--data", data]))
    model.load_state_dict(ckpt["model"])
    val = train.SegmentationFolder(data, "val")
    args = train.parse_args(SEG + ["--data", data])
    loader = torch.utils.data.DataLoader(train._Indexed(val), batch_size=1,
                                         collate_fn=train._collate_indexed)
    want = train.evaluate(model, "segnet", "seg", loader, torch.device("cpu"), args)
    assert ev["mIoU"] == round(want["mIoU"], 6)


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--model", "pspnet", "--data", "x"])
    with pytest.raises(SystemExit):
        train.parse_args(["--model", "segnet", "--data", "x", "--batch-size", "0"])
    assert "--batch-size must be positive" in capsys.readouterr().err
    assert not torch.are_deterministic_algorithms_enabled()  # --deterministic runs restore it
    with pytest.raises(FileNotFoundError, match="no SegmentationClass/ folder"):
        train.main(["--model", "segnet", "--data", str(tmp_path), "--device", "cpu"])


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("model", ["fcn8s", "segnet"])
def test_deterministic_training_on_cuda_repeats_bit_for_bit(tmp_path, model):
    """--deterministic on the GPU: pydense's ops (the bilinear deconvolutions and FCN skips,
    max-unpooling, the convolutions' backward) run under torch.use_deterministic_algorithms(True),
    and two runs end with the same parameters, bit for bit."""
    data = make_voc(str(tmp_path / "voc"), n=12, size=36)
    outs = []
    for run in ("a", "b"):
        out = str(tmp_path / run)
        args = ["--model", model, "--num-classes", "3", "--crop", "32", "--batch-size", "2",
                "--steps", "3", "--workers", "0", "--device", "cuda", "--deterministic", "--amp",
                "bf16", "--channels-last", "--no-eval", "--data", data, "--out", out]
        assert train.main(args) == 0
        outs.append(torch.load(os.path.join(out, "last.pt"), weights_only=False)["model"])
    for k, v in outs[0].items():
        assert torch.equal(v, outs[1][k]), k
