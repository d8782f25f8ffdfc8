"""PSNR and SSIM (pydense.metrics.restoration) against torchmetrics, the library users compare
with, and against the definitions on hand-made cases."""
import doctest
import math

import pytest
import torch

from pydense.metrics import psnr, rgb_to_y, ssim

tm = pytest.importorskip("torchmetrics")


def _pair(seed=0, shape=(3, 3, 29, 23), data_range=255.0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g, dtype=torch.float64) * data_range
    pred = (target + torch.randn(shape, generator=g, dtype=torch.float64) * 0.05 * data_range)
    return pred.clamp(0, data_range), target


@pytest.mark.parametrize("data_range", [255.0, 1.0])
def test_psnr_matches_torchmetrics(data_range):
    pred, target = _pair(data_range=data_range)
    from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr

    per_image = psnr(pred, target, data_range=data_range, reduction="none")
    for i in range(pred.shape[0]):
        want = tm_psnr(pred[i:i + 1], target[i:i + 1], data_range=data_range)
        assert float(per_image[i]) == pytest.approx(float(want), rel=1e-7)  # its log(R): float32
    assert float(psnr(pred, target, data_range=data_range)) == pytest.approx(float(per_image.mean()), rel=1e-15)


@pytest.mark.parametrize("window,sigma", [(11, 1.5), (9, 1.0)])  # torchmetrics' taps for sigma
def test_ssim_matches_torchmetrics(window, sigma):
    """"reflect": torchmetrics' number; "valid" (the paper's): the mean of torchmetrics' SSIM
    map over the positions whose window lies inside the image."""
    pred, target = _pair(1)
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    want, full = tm_ssim(pred, target, data_range=255.0, sigma=sigma, reduction="none",
                         return_full_image=True)
    got = ssim(pred, target, window=window, sigma=sigma, padding="reflect", reduction="none")
    torch.testing.assert_close(got, want.to(torch.float64), rtol=1e-10, atol=1e-12)
    r = window // 2
    valid = full[..., r:-r, r:-r].flatten(1).mean(1)
    got = ssim(pred, target, window=window, sigma=sigma, reduction="none")
    torch.testing.assert_close(got, valid.to(torch.float64), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(got, want.to(torch.float64), rtol=1e-6, atol=0)  # the two differ


def test_shave_and_luma():
    pred, target = _pair(2, shape=(2, 3, 24, 20))
    b = 2
    want = psnr(pred[..., b:-b, b:-b], target[..., b:-b, b:-b])
    assert float(psnr(pred, target, crop_border=b)) == float(want)
    y = rgb_to_y(target)
    # BT.601 (MATLAB rgb2ycbcr): white -> 235, black -> 16
    ends = rgb_to_y(torch.tensor([[[[0.0]], [[0.0]], [[0.0]]], [[[255.0]], [[255.0]], [[255.0]]]]))
    assert ends.flatten().tolist() == pytest.approx([16.0, 235.0])
    assert y.shape == (2, 1, 24, 20)
    assert float(ssim(pred, target, y_channel=True)) == pytest.approx(
        float(ssim(rgb_to_y(pred), rgb_to_y(target))), rel=1e-14)


def test_identical_and_known_values():
    x = torch.rand(2, 3, 16, 16) * 255
    assert math.isinf(float(psnr(x, x))) and float(ssim(x, x)) == pytest.approx(1.0, abs=1e-12)
    assert float(psnr(x + 1, x)) == pytest.approx(10 * math.log10(255 ** 2), rel=1e-6)
    assert float(ssim(x, 255 - x)) < 0.5


def test_bad_arguments():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"psnr: pred \(1, 3, 16, 16\) and target \(1, 3, 8, 8\)"):
        psnr(x, x[..., :8, :8])
    with pytest.raises(ValueError, match="ssim: pred must be a floating"):
        ssim(x.to(torch.uint8), x)
    with pytest.raises(ValueError, match="crop_border must be an int"):
        psnr(x, x, crop_border=8)
    with pytest.raises(ValueError, match="y_channel=True needs RGB"):
        psnr(x[:, :1], x[:, :1], y_channel=True)
    with pytest.raises(ValueError, match="window must be an odd int at most 16"):
        ssim(x, x, window=12)
    with pytest.raises(ValueError, match="padding must be 'valid' or 'reflect'"):
        ssim(x, x, padding="same")
    with pytest.raises(ValueError, match="reduction must be"):
        psnr(x, x, reduction="sum")
    with pytest.raises(ValueError, match="data_range must be a positive"):
        ssim(x, x, data_range=0)


def test_docstring_examples():
    import pydense.metrics.restoration as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
