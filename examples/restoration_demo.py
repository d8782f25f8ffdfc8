"""The models doing their job on real photographs (scikit-image's bundled images; nothing is
downloaded): EDSR-baseline x2 super-resolution and the DnCNN denoiser, trained from scratch for a
few minutes on patches of some images and scored on a held-out one.

    python examples/restoration_demo.py [--minutes 6] [--out restoration_demo] [--device cpu]

* EDSR-baseline x2: trained on astronaut, coffee, rocket, immunohistochemistry and the Hubble deep
  field (random 64x64 HR patches, flips; LR by bicubic downscaling, as DIV2K's), L1 loss, Adam;
  scored on "chelsea" (the cat): PSNR / SSIM on the luma channel with a 2-pixel border shaved,
  against bicubic upsampling of the same LR image.
* DnCNN-S (grey, 17 layers): trained on camera-free grey images (moon, coins, page, grass, gravel,
  brick, and the grey colour images) with Gaussian noise of sigma 25 (0..255 range), residual
  learning (MSE on the noise), Adam; scored on "camera" (the cameraman), against the noisy input.

Half of ``--minutes`` goes to each model. Writes ``OUT/edsr_x2.png`` (bicubic | EDSR | HR crops)
and ``OUT/dncnn_sigma25.png`` (noisy | DnCNN | clean crops) and prints the numbers (also in
``OUT/results.json``).
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from pydense import metrics, models

SR_TRAIN = ("astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
DN_TRAIN = ("moon", "coins", "page", "grass", "gravel", "brick", "astronaut", "coffee", "rocket")


def _image(name):
    import skimage.data

    return np.asarray(getattr(skimage.data, name)())


def _grey(a):
    return a if a.ndim == 2 else (a[..., :3] @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)


def _bicubic(a, size):
    from PIL import Image

    return np.asarray(Image.fromarray(a).resize(size, Image.BICUBIC))


def _tensor(a):
    t = torch.from_numpy(np.array(a, copy=True)).float()
    return (t.permute(2, 0, 1) if t.dim() == 3 else t[None])[None]


def _png(path, rows):
    from PIL import Image

    Image.fromarray(np.concatenate(rows, axis=1)).save(path)


def _to_uint8(t):
    a = t[0].clamp(0, 255).round().to(torch.uint8).cpu().numpy()
    return a.transpose(1, 2, 0) if a.shape[0] == 3 else a[0]


def train_edsr(seconds, device, rng):
    images = [_image(n) for n in SR_TRAIN]
    model = models.edsr_baseline(scale=2).to(device).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        hr, lr = [], []
        for _ in range(8):
            a = images[rng.integers(len(images))]
            y, x = rng.integers(0, a.shape[0] - 64), rng.integers(0, a.shape[1] - 64)
            p = a[y:y + 64, x:x + 64]
            if rng.random() < 0.5:
                p = p[:, ::-1]
            hr.append(_tensor(p))
            lr.append(_tensor(_bicubic(np.ascontiguousarray(p), (32, 32))))
        loss = F.l1_loss(model(torch.cat(lr).to(device)), torch.cat(hr).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    model.eval()
    test = _image("chelsea")[:300, :450]
    lr = _bicubic(test, (225, 150))
    with torch.no_grad():
        sr = model(_tensor(lr).to(device)).clamp(0, 255).round().cpu()
    hr, bic = _tensor(test), _tensor(_bicubic(lr, (450, 300))).clamp(0, 255)
    kw = dict(crop_border=2, y_channel=True)
    result = {"steps": steps, "seconds": round(time.perf_counter() - start, 1),
              "psnr_edsr": float(metrics.psnr(sr, hr, **kw)), "psnr_bicubic": float(metrics.psnr(bic, hr, **kw)),
              "ssim_edsr": float(metrics.ssim(sr, hr, **kw)), "ssim_bicubic": float(metrics.ssim(bic, hr, **kw))}
    crop = (slice(60, 220), slice(120, 330))
    rows = [_to_uint8(t)[crop] for t in (bic, sr, hr)]
    return result, rows


def train_dncnn(seconds, device, rng, sigma=25.0):
    images = [_grey(_image(n)) for n in DN_TRAIN]
    model = models.dncnn().to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps, start = 0, time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    while time.perf_counter() - start < seconds:
        clean = []
        for _ in range(32):
            a = images[rng.integers(len(images))]
            y, x = rng.integers(0, a.shape[0] - 40), rng.integers(0, a.shape[1] - 40)
            clean.append(_tensor(a[y:y + 40, x:x + 40]))
        clean = torch.cat(clean)
        noisy = clean + torch.randn(clean.shape, generator=gen) * sigma
        clean, noisy = clean.to(device), noisy.to(device)
        loss = F.mse_loss(model(noisy), clean, reduction="sum") / (2 * clean.shape[0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    model.eval()
    clean = _tensor(_grey(_image("camera")))
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(1)) * sigma
    with torch.no_grad():
        denoised = model(noisy.to(device)).cpu()
    result = {"steps": steps, "seconds": round(time.perf_counter() - start, 1),
              "psnr_dncnn": float(metrics.psnr(denoised.clamp(0, 255).round(), clean)),
              "psnr_noisy": float(metrics.psnr(noisy.clamp(0, 255).round(), clean)),
              "ssim_dncnn": float(metrics.ssim(denoised.clamp(0, 255).round(), clean)),
              "ssim_noisy": float(metrics.ssim(noisy.clamp(0, 255).round(), clean))}
    crop = (slice(60, 260), slice(160, 400))
    rows = [_to_uint8(t)[crop] for t in (noisy, denoised, clean)]
    return result, rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=6.0, help="training time, split between the models")
    p.add_argument("--out", default="restoration_demo")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    device = torch.device(a.device)
    seconds = a.minutes * 60 / 2
    edsr, rows = train_edsr(seconds, device, rng)
    _png(os.path.join(a.out, "edsr_x2.png"), rows)
    print(f"EDSR-baseline x2, {edsr['steps']} steps in {edsr['seconds']} s: chelsea PSNR (Y) "
          f"{edsr['psnr_edsr']:.2f} dB vs bicubic {edsr['psnr_bicubic']:.2f} dB; SSIM "
          f"{edsr['ssim_edsr']:.4f} vs {edsr['ssim_bicubic']:.4f}")
    dn, rows = train_dncnn(seconds, device, rng)
    _png(os.path.join(a.out, "dncnn_sigma25.png"), rows)
    print(f"DnCNN-S sigma 25, {dn['steps']} steps in {dn['seconds']} s: camera PSNR "
          f"{dn['psnr_dncnn']:.2f} dB vs noisy input {dn['psnr_noisy']:.2f} dB; SSIM "
          f"{dn['ssim_dncnn']:.4f} vs {dn['ssim_noisy']:.4f}")
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"edsr_x2": edsr, "dncnn_sigma25": dn, "device": str(device),
                   "torch_threads": torch.get_num_threads()}, f, indent=2)
    print(f"images and results: {a.out}/")


if __name__ == "__main__":
    main()
