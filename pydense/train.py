"""Train a ``pydense.models`` model on a dataset folder: ``python -m pydense.train``, on one
process or on N under ``torchrun`` (one node or many), the same command either way::

    python -m pydense.train --model fcn8s --data VOCdevkit/VOC2012 --num-classes 21 \\
        --steps 20000 --batch-size 8 --crop 320 --amp bf16 --channels-last --out runs/fcn8s
    torchrun --nproc-per-node 8 -m pydense.train --model segnet --data CamVid --num-classes 11 ...
    python -m pydense.train --model edsr_baseline --scale 2 --data DIV2K/DIV2K_train_HR \\
        --val-data DIV2K/DIV2K_valid_HR --crop 48 --batch-size 16 --out runs/edsr
    python -m pydense.train ... --resume runs/fcn8s/last.pt        # continues bit for bit

Data (``--data``, ``--val-data``):

* segmentation (FCN, SegNet, Dilation8, U-Net in its padded form, DeepLabv3+): a VOC-style folder, ``JPEGImages/<name>.jpg`` (or .png)
  and ``SegmentationClass/<name>.png`` (class indices, palette or grey; 255 = ignore), the names
  from ``ImageSets/Segmentation/<split>.txt`` when it exists (``--split`` / ``--val-split``, default
  train / val; ``--val-data`` defaults to ``--data``), else every label PNG. Training crops:
  random scale in [0.5, 2], padding (label 255), a ``--crop`` square, horizontal flips; ImageNet
  mean/std. Validation: whole images, one at a time, mIoU (:class:`pydense.metrics.SegmentationMeter`).
* super-resolution (EDSR): a folder of HR images. Training: a random HR patch of ``--crop *
  scale`` pixels, flips and 90-degree rotations, the LR patch made on the fly by bicubic
  downscaling (PIL, from the uint8 patch, as DIV2K's LR images are made), pixel range 0..255.
  Validation: whole images (cropped to a multiple of the scale), PSNR and SSIM on the luma
  channel with a ``scale``-pixel border shaved (the SR papers' protocol).

Augmentations draw from a generator seeded by (``--seed``, epoch, image index) and the epoch's
order from (``--seed``, epoch), so a run does not depend on the loader's worker processes, and
``--resume`` continues exactly where a checkpoint was written (the model, the optimizer, the
schedule, the position in the epoch and each rank's random state for dropout are saved): the
resumed run's parameters equal the uninterrupted run's, bit for bit, with the same number of
processes (tested on CPU). ``--deterministic`` turns on ``torch.use_deterministic_algorithms``
(pydense's ops are deterministic, their backward included; ATen's CUDA bilinear backward is not).

Under ``torchrun`` each rank trains on its shard of every epoch (``DistributedDataParallel``;
NCCL and ``cuda:LOCAL_RANK`` on GPUs, gloo on CPU; BatchNorm becomes ``SyncBatchNorm`` on GPUs),
validation is sharded and summed exactly, and rank 0 prints, logs and writes checkpoints.
Output (``--out``): ``last.pt`` and ``step-<N>.pt`` checkpoints (``--keep`` of them) and
``log.jsonl`` (one JSON object per log line and per evaluation).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed as pdist
from . import metrics, models

__all__ = ["main", "SegmentationFolder", "SRFolder", "MODELS"]

# model name -> task ("seg" or "sr")
MODELS = {"fcn32s": "seg", "fcn16s": "seg", "fcn8s": "seg", "segnet": "seg", "dilation8": "seg",
          "unet": "seg", "deeplabv3plus": "seg", "edsr_baseline": "sr", "edsr": "sr"}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
IGNORE = 255
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def _generator(*key):
    """A torch generator seeded by the integers ``key`` (e.g. seed, epoch, index)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1)[0]))


def _read_rgb(path):
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()


def _read_label(path):
    from PIL import Image

    with Image.open(path) as im:
        a = np.array(im)  # palette PNGs give their indices
    if a.ndim != 2:
        raise ValueError(f"{path}: a label PNG must hold one class index per pixel (palette or "
                         f"grey), got an array of shape {a.shape}")
    return torch.from_numpy(a.astype(np.int64))


class SegmentationFolder(torch.utils.data.Dataset):
    """A VOC-style segmentation folder (see the module docstring): ``(image, label)`` with the
    image a normalised float (3, H, W) tensor and the label an int64 (H, W) tensor."""

    def __init__(self, root, split="train", *, crop=None, seed=0):
        self.root, self.crop, self.seed, self.epoch = root, crop, seed, 0
        labels = os.path.join(root, "SegmentationClass")
        if not os.path.isdir(labels):
            raise FileNotFoundError(f"{root!r}: no SegmentationClass/ folder (a VOC-style "
                                    f"dataset has JPEGImages/ and SegmentationClass/)")
        listing = os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt")
        if os.path.isfile(listing):
            with open(listing) as f:
                names = [line.strip() for line in f if line.strip()]
        else:
            names = sorted(os.path.splitext(n)[0] for n in os.listdir(labels) if n.endswith(".png"))
        if not names:
            raise ValueError(f"{root!r}: no images in split {split!r}")
        self.items = []
        for name in names:
            image = next((os.path.join(root, "JPEGImages", name + ext) for ext in IMAGE_EXTENSIONS
                          if os.path.isfile(os.path.join(root, "JPEGImages", name + ext))), None)
            if image is None:
                raise FileNotFoundError(f"{root!r}: no JPEGImages/{name}.jpg (or .png) for the "
                                        f"label SegmentationClass/{name}.png")
            self.items.append((image, os.path.join(labels, name + ".png")))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        image = _read_rgb(self.items[i][0]).float().div_(255)
        label = _read_label(self.items[i][1])
        if image.shape[-2:] != label.shape:
            raise ValueError(f"{self.items[i][0]} is {tuple(image.shape[-2:])} but its label is "
                             f"{tuple(label.shape)}")
        if self.crop:
            image, label = self._augment(image, label, _generator(self.seed, self.epoch, i))
        return (image - MEAN) / STD, label

    def _augment(self, image, label, g):
        s = 0.5 + 1.5 * torch.rand((), generator=g).item()  # scale in [0.5, 2]
        size = [max(1, round(n * s)) for n in label.shape]
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
        c = self.crop
        ph, pw = max(0, c - size[0]), max(0, c - size[1])
        if ph or pw:  # pad with the mean (0 after normalisation) and the ignore label
            image = F.pad(image - MEAN, (0, pw, 0, ph)) + MEAN
            label = F.pad(label, (0, pw, 0, ph), value=IGNORE)
        y = int(torch.randint(0, label.shape[0] - c + 1, (), generator=g))
        x = int(torch.randint(0, label.shape[1] - c + 1, (), generator=g))
        image, label = image[:, y:y + c, x:x + c], label[y:y + c, x:x + c]
        if torch.rand((), generator=g).item() < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return image.contiguous(), label.contiguous()


class SRFolder(torch.utils.data.Dataset):
    """A folder of HR images (see the module docstring): ``(lr, hr)`` float (3, h, w) and
    (3, scale h, scale w) tensors in 0..255."""

    def __init__(self, root, scale, *, crop=None, seed=0):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{root!r} is not a folder of HR images")
        self.files = sorted(os.path.join(root, n) for n in os.listdir(root)
                            if n.lower().endswith(IMAGE_EXTENSIONS))
        if not self.files:
            raise ValueError(f"{root!r}: no images ({', '.join(IMAGE_EXTENSIONS)})")
        self.scale, self.crop, self.seed, self.epoch = scale, crop, seed, 0

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        hr = _read_rgb(self.files[i])
        s = self.scale
        if self.crop:
            g = _generator(self.seed, self.epoch, i)
            p = self.crop * s
            if min(hr.shape[-2:]) < p:
                raise ValueError(f"{self.files[i]} is {tuple(hr.shape[-2:])}: smaller than the HR "
                                 f"patch ({p} = crop {self.crop} x scale {s})")
            y = int(torch.randint(0, hr.shape[1] - p + 1, (), generator=g))
            x = int(torch.randint(0, hr.shape[2] - p + 1, (), generator=g))
            hr = hr[:, y:y + p, x:x + p]
            flips = torch.rand(3, generator=g)
            if flips[0] < 0.5:
                hr = hr.flip(-1)
            if flips[1] < 0.5:
                hr = hr.flip(-2)
            if flips[2] < 0.5:
                hr = hr.transpose(-1, -2)
        else:
            hr = hr[:, :hr.shape[1] // s * s, :hr.shape[2] // s * s]
        hr = hr.contiguous()
        return _bicubic_down(hr, s).float(), hr.float()


def _bicubic_down(hr, scale):
    from PIL import Image

    h, w = hr.shape[1] // scale, hr.shape[2] // scale
    im = Image.fromarray(hr.permute(1, 2, 0).numpy()).resize((w, h), Image.BICUBIC)
    return torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous()


class _Shard(torch.utils.data.Sampler):
    """This rank's indices of an epoch: a permutation seeded by (seed, epoch) (or the identity),
    cut to a multiple of the world size, every ``world``-th from ``rank``, from ``start`` on."""

    def __init__(self, n, rank, world, seed, shuffle):
        self.n, self.rank, self.world, self.seed, self.shuffle = n, rank, world, seed, shuffle
        self.epoch, self.start = 0, 0

    def indices(self):
        order = (torch.randperm(self.n, generator=_generator(self.seed, self.epoch)).tolist()
                 if self.shuffle else list(range(self.n)))
        per_rank = self.n // self.world
        return order[self.rank:per_rank * self.world:self.world][self.start:]

    def __iter__(self):
        return iter(self.indices())

    def __len__(self):
        return len(self.indices())


def build_model(args):
    kwargs = {"backend": args.backend}
    if args.model == "unet":  # the padded form (same-size output) on RGB images
        kwargs.update(in_channels=3, variant="padded")
    if MODELS[args.model] == "seg":
        kwargs["num_classes"] = args.num_classes
    else:
        kwargs["scale"] = args.scale
    return getattr(models, args.model)(**kwargs)


def _forward(model, name, x):
    if name == "dilation8":  # the front end's label margin, as its deploy input is prepared
        m = models.dilation.LABEL_MARGIN
        x = F.pad(x, [m] * 4, mode="reflect" if min(x.shape[-2:]) > m else "replicate")
    return model(x)


def _loss(task, out, target):
    if task == "sr":
        return F.l1_loss(out.float(), target)
    if out.shape[-2:] != target.shape[-2:]:  # a model with a coarser output: upsample the scores
        out = F.interpolate(out, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(out.float(), target, ignore_index=IGNORE)


def evaluate(model, name, task, loader, device, args):
    """mIoU (segmentation) or PSNR / SSIM (SR) over the validation shard of every rank: equal to
    one process's over the whole set (integer counts; per-image scores gathered in order)."""
    model.eval()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    meter = metrics.SegmentationMeter(args.num_classes) if task == "seg" else None
    scores = []
    with torch.no_grad(), _autocast(device, args):
        for index, (x, y) in loader:
            x = x.to(device).contiguous(memory_format=fmt)
            out = _forward(model, name, x).float()
            if task == "seg":
                if out.shape[-2:] != y.shape[-2:]:
                    out = F.interpolate(out, size=y.shape[-2:], mode="bilinear", align_corners=False)
                meter.update(out, y.to(device))
            else:
                sr = out.clamp(0, 255).round().cpu()  # quantised, as saved images are
                scores += [(int(i), float(p), float(s)) for i, p, s in zip(
                    index, metrics.psnr(sr, y, crop_border=args.scale, y_channel=True, reduction="none"),
                    metrics.ssim(sr, y, crop_border=args.scale, y_channel=True, reduction="none"))]
    model.train()
    if task == "seg":
        s = meter.compute()
        return {"mIoU": s["mIoU"], "pixel_accuracy": s["pixel_accuracy"]}
    if pdist.is_distributed():
        parts = [None] * pdist.world_size()
        torch.distributed.all_gather_object(parts, scores)
        scores = [s for part in parts for s in part]
    scores.sort()
    return {"psnr": sum(s[1] for s in scores) / len(scores),
            "ssim": sum(s[2] for s in scores) / len(scores)}


class _Indexed(torch.utils.data.Dataset):
    """(index, sample): validation scores gathered across ranks are put back in order."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return i, self.dataset[i]


def _collate_indexed(batch):
    index = torch.tensor([b[0] for b in batch])
    return index, torch.utils.data.default_collate([b[1] for b in batch])


def _autocast(device, args):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp == "bf16")


def _rng_state(device):
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state, device):
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _save(path, payload, keep_dir=None, keep=2):
    tmp = path + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)
    if keep_dir:
        old = sorted(n for n in os.listdir(keep_dir) if n.startswith("step-") and n.endswith(".pt"))
        for n in old[:-keep] if keep > 0 else old:
            os.remove(os.path.join(keep_dir, n))


class _Progress:
    """tqdm over the steps when it is installed and stderr is a terminal, else a line per log."""

    def __init__(self, total, initial, enabled):
        self.bar = None
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
            except ImportError:
                pass
        self.enabled = enabled

    def update(self, record):
        if not self.enabled:
            return
        text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in record.items() if k != "step")
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(record["step"] - self.bar.n)
        else:
            print(f"step {record['step']}  {text}", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m pydense.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=(
                                    "Launch on N processes with torchrun --nproc-per-node N -m "
                                    "pydense.train ... (multi-node: torchrun's --nnodes, "
                                    "--rdzv-endpoint)."))
    p.add_argument("--model", required=True, choices=sorted(MODELS))
    p.add_argument("--data", required=True, help="the training set's folder")
    p.add_argument("--val-data", help="the validation set's folder (segmentation: default --data)")
    p.add_argument("--split", default="train", help="segmentation: the training split's name")
    p.add_argument("--val-split", default="val", help="segmentation: the validation split's name")
    p.add_argument("--num-classes", type=int, default=21, help="segmentation classes (default 21)")
    p.add_argument("--scale", type=int, default=2, choices=(2, 3, 4), help="SR scale (default 2)")
    p.add_argument("--backend", default="auto", choices=models.BACKENDS,
                   help="the ops' backend ('torch': the stock PyTorch model)")
    p.add_argument("--steps", type=int, help="optimizer steps (default: --epochs' worth)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument("--crop", type=int, help="training crop (SR: the LR patch); default 320 "
                   "(segmentation) / 48 (SR)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), help="default sgd (segmentation, momentum "
                   "0.9) / adam (SR)")
    p.add_argument("--lr", type=float, help="default 0.01 (sgd) / 1e-4 (adam)")
    p.add_argument("--weight-decay", type=float, help="default 5e-4 (sgd) / 0 (adam)")
    p.add_argument("--schedule", choices=("poly", "constant"), help="default poly (segmentation, "
                   "power 0.9) / constant (SR)")
    p.add_argument("--amp", choices=("bf16", "none"), default="none", help="bf16 autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--deterministic", action="store_true",
                   help="torch.use_deterministic_algorithms(True)")
    p.add_argument("--device", help="default: cuda if available, else cpu")
    p.add_argument("--workers", type=int, default=4, help="data loading processes per rank")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/pydense", help="checkpoints and log.jsonl")
    p.add_argument("--resume", help="a checkpoint (e.g. OUT/last.pt) to continue from")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: at the end)")
    p.add_argument("--save-every", type=int, default=0, help="steps between checkpoints (0: at the end)")
    p.add_argument("--keep", type=int, default=2, help="step-<N>.pt checkpoints kept")
    p.add_argument("--no-eval", action="store_true", help="skip validation")
    args = p.parse_args(argv)
    task = MODELS[args.model]
    args.crop = args.crop or (320 if task == "seg" else 48)
    args.optimizer = args.optimizer or ("sgd" if task == "seg" else "adam")
    args.lr = args.lr if args.lr is not None else (0.01 if args.optimizer == "sgd" else 1e-4)
    if args.weight_decay is None:
        args.weight_decay = 5e-4 if args.optimizer == "sgd" else 0.0
    args.schedule = args.schedule or ("poly" if task == "seg" else "constant")
    for name in ("batch_size", "epochs", "crop", "num_classes"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.steps is not None and args.steps <= 0:
        p.error(f"--steps must be positive, got {args.steps}")
    return args


def main(argv=None):
    args = parse_args(argv)
    was_deterministic, benchmark = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    started = not pdist.is_distributed()
    device = pdist.init_from_env(device)
    try:
        return train(args, device)
    finally:
        if started and pdist.is_distributed():
            torch.distributed.destroy_process_group()
        # called from Python (main(argv)): leave the process's global settings as they were
        torch.use_deterministic_algorithms(was_deterministic)
        torch.backends.cudnn.benchmark = benchmark


def train(args, device):
    task, rank, world = MODELS[args.model], pdist.rank(), pdist.world_size()
    main_rank = pdist.is_main()
    torch.manual_seed(args.seed)  # the same initial parameters on every rank
    if task == "seg":
        train_set = SegmentationFolder(args.data, args.split, crop=args.crop, seed=args.seed)
        val_set = None if args.no_eval else SegmentationFolder(args.val_data or args.data, args.val_split)
    else:
        train_set = SRFolder(args.data, args.scale, crop=args.crop, seed=args.seed)
        val_set = None if args.no_eval or not args.val_data else SRFolder(args.val_data, args.scale)
    model = build_model(args).to(device)
    # each rank's own random stream from here on (dropout), reproducible from the seed
    torch.manual_seed(int(np.random.SeedSequence([args.seed, rank, 1]).generate_state(1)[0]))
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        net = torch.compile(net, backend=args.compile_backend)
    params = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)

    sampler = _Shard(len(train_set), rank, world, args.seed, shuffle=True)
    steps_per_epoch = (len(train_set) // world) // args.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training images make no batch of {args.batch_size} "
                         f"per process on {world} process(es)")
    total = args.steps or args.epochs * steps_per_epoch
    if args.schedule == "poly":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (1 - min(s, total) / total) ** 0.9)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    step, epoch, in_epoch = 0, 0, 0
    if args.resume:
        ckpt = torch.load(args.resume, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        step, epoch, in_epoch = ckpt["step"], ckpt["epoch"], ckpt["in_epoch"]
        if len(ckpt["rng"]) == world:
            _set_rng_state(ckpt["rng"][rank], device)
        elif main_rank:
            print(f"warning: the checkpoint was written by {len(ckpt['rng'])} process(es), this run "
                  f"has {world}: the random state starts anew (the run is not an exact "
                  f"continuation)", file=sys.stderr)
    loader_gen = torch.Generator().manual_seed(args.seed)  # (keeps the global RNG out of it)
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, sampler=sampler,
                                         num_workers=args.workers, drop_last=True,
                                         generator=loader_gen, pin_memory=device.type == "cuda")
    val_loader = None
    if val_set is not None:
        val_loader = torch.utils.data.DataLoader(
            _Indexed(val_set), batch_size=1, num_workers=args.workers, collate_fn=_collate_indexed,
            sampler=range(rank, len(val_set), world), generator=torch.Generator().manual_seed(args.seed))
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "log.jsonl")

    def log(record):
        if main_rank:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def checkpoint():
        states = [None] * world
        mine = _rng_state(device)
        if world > 1:
            torch.distributed.all_gather_object(states, mine)
        else:
            states = [mine]
        if main_rank:
            payload = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                       "scheduler": sched.state_dict(), "step": step, "epoch": epoch,
                       "in_epoch": in_epoch, "rng": states, "args": vars(args)}
            _save(os.path.join(args.out, f"step-{step:08d}.pt"), payload, args.out, args.keep)
            _save(os.path.join(args.out, "last.pt"), payload)

    def run_eval():  # the module itself: DDP's forward would sync buffers over uneven shards
        if world > 1:  # rank 0's BatchNorm statistics everywhere (those the checkpoint keeps)
            for buf in model.buffers():
                torch.distributed.broadcast(buf, 0)
        result = evaluate(model, args.model, task, val_loader, device, args)
        record = {"step": step, **{k: round(v, 6) for k, v in result.items()}}
        log({"eval": record})
        if main_rank:
            print("eval  " + "  ".join(f"{k} {v}" for k, v in record.items()), flush=True)

    if main_rank:
        print(f"pydense.train: {args.model} on {device} x {world}, {len(train_set)} images, "
              f"{total} steps of {args.batch_size} x {world}, from step {step}", flush=True)
    progress = _Progress(total, step, main_rank)
    net.train()
    loss_sum, seen, t0 = 0.0, 0, time.perf_counter()
    while step < total:
        train_set.epoch = sampler.epoch = epoch
        sampler.start = in_epoch * args.batch_size
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=fmt)
            y = y.to(device, non_blocking=True)
            with _autocast(device, args):
                out = _forward(net, args.model, x)
            loss = _loss(task, out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step, in_epoch = step + 1, in_epoch + 1
            loss_sum, seen = loss_sum + loss.item(), seen + 1
            if step % args.log_every == 0 or step == total:
                stats = torch.tensor([loss_sum, seen], dtype=torch.float64)
                if world > 1:
                    stats = stats.to(pdist.comm_device())
                    torch.distributed.all_reduce(stats)
                    stats = stats.cpu()
                mean = float(stats[0] / stats[1])
                rate = seen * args.batch_size * world / (time.perf_counter() - t0)
                record = {"step": step, "loss": round(mean, 6), "images/s": round(rate, 2),
                          "lr": sched.get_last_lr()[0]}
                log(record)
                progress.update(record)
                loss_sum, seen, t0 = 0.0, 0, time.perf_counter()
            if val_loader is not None and args.eval_every and step % args.eval_every == 0:
                run_eval()
            if args.save_every and step % args.save_every == 0:
                checkpoint()
            if step >= total:
                break
        if in_epoch >= steps_per_epoch:
            epoch, in_epoch = epoch + 1, 0
    progress.close()
    if val_loader is not None and not (args.eval_every and step % args.eval_every == 0):
        run_eval()
    if not (args.save_every and step % args.save_every == 0):
        checkpoint()
    return 0


if __name__ == "__main__":
    sys.exit(main())
