"""The full models (pydense.models): exact parameter counts, pydense ops vs stock PyTorch on the
same state_dict (forward and gradients), training steps, torch.compile without graph breaks.

Sizes are small (CPU CI on 2 cores); the models themselves are the real ones. fp32 tolerance of
the pydense vs torch comparisons: 1e-4 relative to the output's magnitude (different summation
orders of the same convolutions)."""
import pytest
import torch

from pydense import models

from helpers import requires_cuda

TOL = 1e-4


def close(a, b, tol=TOL):
    scale = max(1.0, b.abs().max().item())
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * scale)


def pair(factory, *args, device="cpu", backend="auto", **kwargs):
    """(pydense model, torch model) with the pydense model's state_dict loaded into the torch one."""
    torch.manual_seed(0)
    m = factory(*args, backend=backend, **kwargs).to(device)
    t = factory(*args, backend="torch", **kwargs).to(device)
    t.load_state_dict(m.state_dict())
    return m, t


def randomize_scores(model):
    """FCN's score layers start at zero (as FCN's do); give them values so the skips matter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("score"):
                p.normal_(0, 0.01)


@pytest.mark.parametrize("factory,args,count,trainable_only", [
    (models.fcn32s, (), 136_152_917, False),
    (models.fcn16s, (), 134_815_994, False),
    (models.fcn8s, (), 134_489_759, False),  # REFERENCE: voc-fcn8s, frozen upscore weights included
    (models.edsr_baseline, (2,), 1_369_859, True),  # the EDSR paper's counts (mean shifts frozen)
    (models.edsr, (2,), 40_729_603, True),
    # x3: one conv F -> 9F; x4: two convs F -> 4F (from the spec: 3x3 convs with bias)
    (models.edsr_baseline, (3,), 1_369_859 - (64 * 256 * 9 + 256) + (64 * 576 * 9 + 576), True),
    (models.edsr_baseline, (4,), 1_369_859 + (64 * 256 * 9 + 256), True),
])
def test_parameter_counts(factory, args, count, trainable_only):
    assert models.parameter_count(factory(*args), trainable_only) == count


@pytest.mark.parametrize("factory,kwargs", [(models.fcn32s, {}), (models.fcn16s, {}),
                                            (models.fcn8s, {}), (models.fcn8s, {"at_once": True})])
def test_fcn_pydense_matches_torch(factory, kwargs):
    m, t = pair(factory, **kwargs)
    randomize_scores(m)
    t.load_state_dict(m.state_dict())
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        out = m.eval()(x)
        close(out, t.eval()(x))
    assert out.shape == (1, 21, 45, 61)  # FCN's crops give back the input size


def test_fcn8s_sizes_at_500():
    """The reference's sizes for a 500x500 image: pool3 88 (= conv4_3's size), pool4 44 (=
    conv5_3's), fc7 16, upscore2 34, upscore_pool4 70, upscore8 568, output 500 (shapes only, on
    the meta device)."""
    m = models.fcn8s(backend="torch").to("meta")
    sizes = {}
    hooks = [getattr(m, n).register_forward_hook(lambda mod, i, o, n=n: sizes.__setitem__(n, o.shape[-1]))
             for n in ("conv4_3", "conv5_3", "score_fr", "upscore2", "upscore_pool4", "upscore8")]
    out = m(torch.empty(1, 3, 500, 500, device="meta"))
    for h in hooks:
        h.remove()
    assert sizes == {"conv4_3": 88, "conv5_3": 44, "score_fr": 16, "upscore2": 34,
                     "upscore_pool4": 70, "upscore8": 568} and out.shape[-2:] == (500, 500)


@pytest.mark.parametrize("factory,scale", [(models.edsr_baseline, 2), (models.edsr_baseline, 3),
                                           (models.edsr_baseline, 4), (models.edsr, 2)])
def test_edsr_pydense_matches_torch_forward_and_backward(factory, scale):
    m, t = pair(factory, scale)
    x = torch.rand(2, 3, 9, 11) * 255
    xm, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = m(xm)
    ref = t(xt)
    assert out.shape == (2, 3, 9 * scale, 11 * scale)
    close(out, ref)
    g = torch.randn_like(ref)
    out.backward(g)
    ref.backward(g)
    close(xm.grad, xt.grad)
    for (name, p), q in zip(m.named_parameters(), t.parameters()):
        if p.requires_grad:
            close(p.grad, q.grad, 1e-3)


def test_edsr_loads_the_reference_layout():
    """Parameter names of sanghyun-son/EDSR-PyTorch (x4: two upsampler stages)."""
    keys = list(models.edsr_baseline(4).state_dict())
    assert keys[:4] == ["sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"]
    assert "body.0.body.0.weight" in keys and "body.15.body.2.bias" in keys and "body.16.weight" in keys
    assert keys[-6:] == ["tail.0.0.weight", "tail.0.0.bias", "tail.0.2.weight", "tail.0.2.bias",
                         "tail.1.weight", "tail.1.bias"]


@pytest.mark.parametrize("kind", ["basic", "large"])
@pytest.mark.parametrize("padding", ["paper", "same"])
def test_context_module(kind, padding):
    m, t = pair(models.context_module, 21, kind, padding)
    x = torch.randn(2, 21, 13, 17)
    with torch.no_grad():
        out = m(x)
        close(out, t(x))
    assert out.shape == x.shape
    if kind == "basic":  # identity initialisation: non-negative scores pass through unchanged
        torch.testing.assert_close(m(x.relu()), x.relu())
    else:  # the scaled identity (plus noise of 1e-3 * C / c_out): close to the identity
        torch.testing.assert_close(m(x.relu()), x.relu(), rtol=0, atol=0.1)


def test_dilation8_matches_torch_and_sizes():
    m, t = pair(models.dilation8, 21, "basic")
    x = torch.randn(1, 3, 372 + 16, 372 + 24)  # a 16x24 image padded by the label margin
    with torch.no_grad():
        out = m.eval()(x)
        close(out, t.eval()(x))
    assert out.shape == (1, 21, 16, 24)  # front end: (H - 372) / 8, then x8
    assert models.pad_image(torch.rand(1, 3, 190, 200)).shape[-2:] == (190 + 372, 200 + 372)


@pytest.mark.parametrize("name", ["fcn8s", "edsr_baseline", "context"])
def test_training_steps_lower_the_loss(name):
    torch.manual_seed(0)
    if name == "fcn8s":
        model, x = models.fcn8s(num_classes=5), torch.randn(1, 3, 40, 40)
        target = torch.randint(0, 5, (1, 40, 40))
        loss_fn, lr = torch.nn.functional.cross_entropy, 1e-4
        model.fc6.weight.requires_grad_(False)  # keep the step cheap on CPU: fc6 is 103M params
    elif name == "edsr_baseline":
        model, x = models.edsr_baseline(2), torch.rand(2, 3, 12, 12) * 255
        target = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic")
        loss_fn, lr = torch.nn.functional.l1_loss, 1e-4
    else:
        model, x = models.context_module(5, "large"), torch.randn(2, 5, 20, 20).relu()
        target = torch.randint(0, 5, (2, 20, 20))
        loss_fn, lr = torch.nn.functional.cross_entropy, 1e-2
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", ["edsr_baseline", "context", "fcn8s"])
def test_compile_fullgraph_without_graph_breaks(name):
    torch.manual_seed(0)
    if name == "edsr_baseline":
        model, x = models.edsr_baseline(2), torch.rand(1, 3, 8, 8) * 255
    elif name == "context":
        model, x = models.context_module(21, "basic", "same"), torch.randn(1, 21, 9, 9)
    else:
        model, x = models.fcn8s(), torch.randn(1, 3, 32, 32)
    model.eval()
    torch._dynamo.reset()
    explain = torch._dynamo.explain(model)(x)
    assert explain.graph_break_count == 0 and explain.graph_count == 1
    if name != "fcn8s":  # compile + run (fcn8s: explain only, to keep CI fast)
        with torch.no_grad():
            close(torch.compile(model, fullgraph=True, backend="aot_eager")(x), model(x))


def test_bad_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        models.edsr_baseline(backend="cudnn")
    with pytest.raises(ValueError, match="variant must be one of"):
        models.FCN("4s")
    with pytest.raises(ValueError, match="scale must be 2, 3 or 4"):
        models.edsr_baseline(5)


def on_meta(factory, *args):
    """``factory(*args, **kwargs)`` built on the meta device (no memory, no initialisation cost:
    FCN's and the dilation front end's fc6 alone hold 103M parameters)."""
    def build(**kwargs):
        with torch.device("meta"):
            return factory(*args, **kwargs)
    return build


# Every model class, by the name its messages use.
ALL_MODELS = {
    "FCN": on_meta(models.FCN, "32s", 3),
    "EDSR": on_meta(models.EDSR, 2, 1, 8),
    "DilationFrontend": on_meta(models.DilationFrontend, 3),
    "ContextModule": on_meta(models.ContextModule, 3),
    "Dilation8": on_meta(models.Dilation8, 3, "basic"),
    "SegNet": on_meta(models.SegNet, 3),
    "UNet": on_meta(models.UNet, 3, 2, "padded"),
    "DeepLabV3Plus": on_meta(models.DeepLabV3Plus, 3),
    "DnCNN": on_meta(models.DnCNN),
    "SeeInTheDark": on_meta(models.SeeInTheDark),
    "PanopticFPN": on_meta(models.PanopticFPN, 4),
}


@pytest.mark.parametrize("name", list(ALL_MODELS))
def test_backend_takes_the_op_values(name):
    """One ``backend`` word: the ops' values (pydense._backend.BACKENDS), "torch" the stock model
    and any other value pydense's ops on that backend; anything else names the model, the
    argument and the valid values."""
    from pydense import _backend

    assert models.BACKENDS is _backend.BACKENDS
    for backend in _backend.BACKENDS:
        model = ALL_MODELS[name](backend=backend)
        assert model.backend == backend and model.fused == (backend != "torch")
    assert ALL_MODELS[name]().backend == "auto"
    for bad in ("cudnn", "PYDENSE", None, ("cpu",)):
        with pytest.raises(ValueError) as err:
            ALL_MODELS[name](backend=bad)
        assert str(err.value) == f"{name}: backend must be one of {_backend.BACKENDS}, got {bad!r}"


@pytest.mark.parametrize("name", list(ALL_MODELS))
def test_deprecated_backend_spellings(name):
    """backend="pydense" is backend="auto" and op_backend=X is backend=X (the models that had
    op_backend), each with a DeprecationWarning pointing at the caller."""
    with pytest.warns(DeprecationWarning, match=f'{name}: backend="pydense" is deprecated') as rec:
        model = ALL_MODELS[name](backend="pydense")
    assert model.backend == "auto" and model.fused
    assert all(w.filename == __file__ for w in rec)
    if name in ("SegNet", "UNet", "DeepLabV3Plus", "DnCNN", "SeeInTheDark", "PanopticFPN"):  # new
        with pytest.raises(TypeError, match="op_backend"):
            ALL_MODELS[name](op_backend="cpu")
        return
    with pytest.warns(DeprecationWarning, match=f"{name}: op_backend is deprecated") as rec:
        assert ALL_MODELS[name](op_backend="cpu").backend == "cpu"
    assert all(w.filename == __file__ for w in rec)
    with pytest.warns(DeprecationWarning):
        assert ALL_MODELS[name](backend="pydense", op_backend="cpu").backend == "cpu"
        assert ALL_MODELS[name](backend="torch", op_backend="cpu").backend == "torch"
        assert ALL_MODELS[name](backend="cpu", op_backend="cpu").backend == "cpu"
        with pytest.raises(ValueError, match=f"{name}: backend='triton' and the deprecated "
                                             "op_backend='cpu' disagree"):
            ALL_MODELS[name](backend="triton", op_backend="cpu")
        with pytest.raises(ValueError, match=f"{name}: op_backend must be one of"):
            ALL_MODELS[name](op_backend="pydense")
    if name == "Dilation8":  # its parts get the resolved word, and warn only once
        with pytest.warns(DeprecationWarning) as rec:
            model = ALL_MODELS[name](backend="pydense")
        assert len(rec) == 1 and model.frontend.backend == model.context.backend == "auto"


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("name", ["fcn8s", "edsr_baseline", "dilation8"])
def test_models_on_gpu_match_torch(name, backend):
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    if name == "fcn8s":
        m, t = pair(models.fcn8s, device="cuda", backend=backend)
        randomize_scores(m)
        t.load_state_dict(m.state_dict())
        x = torch.randn(2, 3, 500, 500, device="cuda")
    elif name == "edsr_baseline":
        m, t = pair(models.edsr_baseline, 4, device="cuda", backend=backend)
        x = torch.rand(2, 3, 48, 48, device="cuda") * 255
    else:
        m, t = pair(models.dilation8, device="cuda", backend=backend)
        x = torch.randn(1, 3, 900, 900, device="cuda")
    with torch.no_grad():
        close(m.eval()(x), t.eval()(x), 1e-3)
