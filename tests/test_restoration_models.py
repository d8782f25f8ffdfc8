"""Restoration networks (pydense.models.dncnn, see_in_the_dark): parameter counts, sizes, pydense
ops vs stock PyTorch on one state_dict (forward and gradients), the fused layers, torch.compile
without graph breaks."""
import pytest
import torch

from pydense import models

from helpers import PydenseOpCounter, check_compile_fullgraph, check_model_gradients


def close(a, b, tol=1e-4):
    scale = max(1.0, b.abs().max().item())
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * scale)


def pair(factory, *args, backend="cpu", **kwargs):
    torch.manual_seed(0)
    m = factory(*args, backend=backend, **kwargs)
    t = factory(*args, backend="torch", **kwargs)
    t.load_state_dict(m.state_dict())
    return m, t


@pytest.mark.parametrize("factory,args,count", [
    (models.dncnn, (1, 17), 556_032),   # DnCNN-S, grey: SaoYan/DnCNN-PyTorch's count (no biases)
    (models.dncnn, (3, 20), 3 * 64 * 9 + 18 * (64 * 64 * 9 + 128) + 64 * 9 * 3),  # CDnCNN-B
    (models.see_in_the_dark, (), 7_760_268),  # the reference's layers, up-convolutions bias-free
])
def test_parameter_counts(factory, args, count):
    assert models.parameter_count(factory(*args)) == count


@pytest.mark.parametrize("backend", ["cpu", "auto"])
def test_dncnn_matches_torch_and_is_residual(backend):
    m, t = pair(models.dncnn, backend=backend)
    y = torch.rand(2, 1, 40, 36)
    with torch.no_grad():
        ref = t.train()(y)
        close(m.train()(y), ref)
        close(t.dncnn(y), y - ref)  # residual learning: the stock layers predict the noise
    check_model_gradients(m, t, y)  # 15 train-mode BatchNorms at initialisation: float64


@pytest.mark.parametrize("backend", ["cpu", "auto"])
def test_see_in_the_dark_matches_torch(backend):
    m, t = pair(models.see_in_the_dark, backend=backend)
    x = torch.rand(1, 4, 32, 48, requires_grad=True)
    out, ref = m(x), t(x)
    assert out.shape == (1, 3, 64, 96)
    close(out, ref)
    g = torch.autograd.grad(out.square().sum(), [x, *m.parameters()])
    g_ref = torch.autograd.grad(ref.square().sum(), [x, *t.parameters()])
    for a, b in zip(g, g_ref):
        close(a, b, 1e-3)


def test_fused_layers():
    m, _ = pair(models.dncnn)
    with torch.no_grad(), PydenseOpCounter() as counter:
        m.eval()(torch.rand(1, 1, 16, 16))
    assert counter.pydense() == {"pydense::conv2d": 17}  # ReLU and the subtraction in epilogues
    s, _ = pair(models.see_in_the_dark)
    with torch.no_grad(), PydenseOpCounter() as counter:
        s(torch.rand(1, 4, 16, 16))
    # 18 convolutions + the 1x1 with its depth-to-space (no pixel_shuffle op), 4 up-convolutions
    assert counter.pydense() == {"pydense::conv2d": 19, "pydense::conv_transpose2d": 4}


@pytest.mark.parametrize("name", ["dncnn", "see_in_the_dark"])
def test_compile_fullgraph_without_graph_breaks(name):
    torch.manual_seed(0)
    model = getattr(models, name)().eval()
    x = torch.rand(1, 1 if name == "dncnn" else 4, 32, 32)
    check_compile_fullgraph(model, x.requires_grad_())


def test_bad_arguments():
    with pytest.raises(ValueError, match="DnCNN: depth must be an int >= 3"):
        models.dncnn(depth=2)
    with pytest.raises(ValueError, match="backend"):
        models.see_in_the_dark(backend="cudnn")


def test_restoration_demo_runs(tmp_path):
    """examples/restoration_demo.py end to end for a few seconds (its numbers come from longer
    runs, in the README): both PNGs and the results."""
    pytest.importorskip("skimage")
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, os.path.join(root, "examples", "restoration_demo.py"),
                          "--minutes", "0.02", "--out", str(tmp_path), "--device", "cpu"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads((tmp_path / "results.json").read_text())
    assert out["edsr_x2"]["steps"] >= 1 and 25 < out["edsr_x2"]["psnr_bicubic"] < 45
    assert 19 < out["dncnn_sigma25"]["psnr_noisy"] < 22  # sigma 25 on 0..255: about 20.2 dB
    assert (tmp_path / "edsr_x2.png").is_file() and (tmp_path / "dncnn_sigma25.png").is_file()
