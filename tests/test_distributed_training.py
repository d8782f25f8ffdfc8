"""pydense's models train on PyTorch's own distributed engine: one optimizer step on 2 gloo ranks
(CPU), each with half the batch, under DistributedDataParallel and under FSDP2
(``torch.distributed.fsdp.fully_shard``), gives the parameters of one process that runs the same
halves and averages their gradients. pydense's C++ CPU kernels run the ops (``backend="cpu"``);
eager, torch.compile (aot_eager: Dynamo's graphs, no code generation on CPU) and bf16 autocast.
SyncBatchNorm refuses CPU modules: its test needs 2 GPUs (NCCL) and is skipped visibly here."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

import pydense

from test_distributed import WORLD, run_ranks

LR, WEIGHT_DECAY = 0.05, 1e-4
TOL = dict(rtol=2e-5, atol=2e-6)
# bf16 autocast: DDP matches the averaged halves exactly, but FSDP2 under autocast rounds some
# gradients of the root unit one bf16 step differently (the stock model too): a bf16 tolerance
TOL_BF16 = dict(rtol=1e-3, atol=1e-4)
# DeepLab's image-pooling BatchNorm normalises 2 values per channel: FSDP2's reduce-scatter
# rounding comes out a few 1e-6 larger there
TOL_DEEPLAB = dict(rtol=2e-5, atol=1e-5)


def _model(name, backend="cpu"):
    torch.manual_seed(0)
    if name == "fcn8s":
        return pydense.models.fcn8s(num_classes=5, backend=backend)
    if name == "segnet":
        return pydense.models.segnet(num_classes=5, backend=backend)
    if name == "unet":  # the padded form: BatchNorm, bilinear steps on upsample_concat
        return pydense.models.unet(3, 5, "padded", backend=backend)
    if name == "deeplab":  # dilated ResNet-50, separable ASPP, the upsample_concat decoder
        return pydense.models.deeplabv3plus(5, backend=backend)
    if name == "context":  # the dilated context module (large), its output as class scores
        return pydense.models.context_module(5, kind="large", padding="same", backend=backend)
    return pydense.models.edsr_baseline(scale=2, backend=backend)


def _batch(name):
    """The whole batch (2 images per rank), seeded: inputs and targets."""
    g = torch.Generator().manual_seed(1)
    if name == "edsr":
        lr = torch.rand(2 * WORLD, 3, 12, 10, generator=g) * 255
        return lr, torch.rand(2 * WORLD, 3, 24, 20, generator=g) * 255
    size = (24, 20) if name == "fcn8s" else (32, 32)
    x = torch.randn(2 * WORLD, 5 if name == "context" else 3, *size, generator=g)
    t = torch.randint(0, 5, (2 * WORLD, *size), generator=g)
    t[:, :3, :4] = 255  # VOC's void label
    return x, t


def _loss(name, out, target):
    if name == "edsr":
        return F.l1_loss(out, target)
    return F.cross_entropy(out, target, ignore_index=255)


def _optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=WEIGHT_DECAY)


def _forward_loss(model, name, x, t, autocast):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(x)
    return _loss(name, out.float(), t)


def reference_step(name, autocast=False):
    """One process: each rank's half of the batch in turn, gradients averaged, one SGD step; on
    one thread, as each rank (the same reduction orders: train-mode BatchNorm over a few values,
    DeepLab's image pooling over the batch, amplifies any rounding difference)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _reference_step(name, autocast)
    finally:
        torch.set_num_threads(threads)


def _reference_step(name, autocast):
    model = _model(name).train()
    x, t = _batch(name)
    grads = None
    for r, (xs, ts) in enumerate(zip(x.chunk(WORLD), t.chunk(WORLD))):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(100 + r)  # rank r's dropout masks (FCN's fc6/fc7)
        _forward_loss(model, name, xs, ts, autocast).backward()
        g = [p.grad.clone() if p.grad is not None else None for p in model.parameters()]
        grads = g if grads is None else [a + b if a is not None else None for a, b in zip(grads, g)]
    for p, g in zip(model.parameters(), grads):
        p.grad = g / WORLD if g is not None else None
    _optimizer(model).step()
    return [p.detach().clone() for p in model.parameters()]


def _rank_step(rank, world, name, wrap, compile_backend, autocast):
    torch.set_num_threads(1)
    model = _model(name).train()
    if wrap == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)
    else:
        pydense.distributed.fully_shard(model)  # the model's blocks, then the root
    opt = _optimizer(model)
    step = model
    if compile_backend:
        step = torch.compile(model, backend=compile_backend)
    x, t = _batch(name)
    opt.zero_grad(set_to_none=True)
    torch.manual_seed(100 + rank)
    _forward_loss(step, name, x.chunk(world)[rank], t.chunk(world)[rank], autocast).backward()
    opt.step()
    params = model.module.parameters() if wrap == "ddp" else model.parameters()
    return [(p.full_tensor() if isinstance(p, torch.distributed.tensor.DTensor) else p).detach().clone()
            for p in params]


CASES = [("fcn8s", "ddp", None, False), ("fcn8s", "fsdp2", None, False),
         ("segnet", "ddp", None, False), ("segnet", "fsdp2", None, False),
         ("edsr", "ddp", None, False), ("edsr", "fsdp2", None, False),
         ("context", "ddp", None, False), ("context", "fsdp2", None, False),
         ("unet", "ddp", None, False), ("unet", "fsdp2", None, False),
         ("deeplab", "fsdp2", None, False),
         ("edsr", "ddp", "aot_eager", False), ("edsr", "fsdp2", "aot_eager", False),
         ("segnet", "ddp", None, True), ("edsr", "fsdp2", None, True)]


@pytest.mark.parametrize("name,wrap,compile_backend,autocast", CASES,
                         ids=[f"{n}-{w}-{'compile' if c else 'eager'}{'-bf16' if a else ''}"
                              for n, w, c, a in CASES])
def test_one_step_on_two_ranks_equals_averaged_halves(tmp_path, name, wrap, compile_backend, autocast):
    want = reference_step(name, autocast)
    ranks = run_ranks(tmp_path, _rank_step, name, wrap, compile_backend, autocast)
    for got in ranks:
        assert not isinstance(got, Exception), got
        assert len(got) == len(want)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, **(TOL_BF16 if autocast else TOL_DEEPLAB if name == "deeplab" else TOL))
    start = [p.detach() for p in _model(name).parameters()]
    assert any(not torch.equal(w, s) for w, s in zip(want, start))  # the step moved the weights


def _layer_as_unit(rank, world):
    from torch.distributed.fsdp import fully_shard

    model = _model("edsr")
    fully_shard(model.head[0])  # a layer whose weights the model reads without calling it
    fully_shard(model)
    try:
        model(_batch("edsr")[0][:1])
    except RuntimeError as e:
        return str(e)
    return None


def test_a_layer_made_its_own_unit_gets_a_clear_error(tmp_path):
    for err in run_ranks(tmp_path, _layer_as_unit):
        assert err is not None and "EDSR: the weight of its Conv2d layer is an FSDP2 shard" in err
        assert "pydense.distributed.fully_shard(model)" in err


def test_shard_units():
    edsr = pydense.models.edsr_baseline(scale=2)
    assert edsr.shard_units() == list(edsr.body[:-1]) and len(edsr.shard_units()) == 16
    segnet = pydense.models.segnet()
    assert len(segnet.shard_units()) == 10
    d8 = pydense.models.dilation8(context=None)
    assert d8.shard_units() == [d8.frontend]
    assert pydense.models.fcn8s().shard_units() == []


def _sync_bn_rank(rank, world, init_file):
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(pydense.models.segnet(num_classes=5)).cuda()
    model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank])
    x, _ = _batch("segnet")
    model.train()(x.chunk(world)[rank].cuda())
    bn = model.module.encoder[0][0][1]
    out = (bn.running_mean.cpu(), bn.running_var.cpu())
    dist.destroy_process_group()
    return out


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                    reason="SyncBatchNorm needs 2 GPUs (NCCL); it refuses CPU modules")
def test_sync_batchnorm_equals_full_batch_batchnorm(tmp_path):
    """SegNet with SyncBatchNorm on 2 GPUs, half the batch each: the running statistics are those
    of one BatchNorm over the whole batch."""
    import torch.multiprocessing as mp

    out = tmp_path / "ranks"
    out.mkdir()
    mp.spawn(_save_sync_bn, args=(str(tmp_path / "init"), str(out)), nprocs=WORLD)
    torch.manual_seed(0)
    model = pydense.models.segnet(num_classes=5).cuda().train()
    x, _ = _batch("segnet")
    model(x.cuda())
    bn = model.encoder[0][0][1]
    for r in range(WORLD):
        mean, var = torch.load(out / f"rank{r}.pt")
        torch.testing.assert_close(mean, bn.running_mean.cpu(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(var, bn.running_var.cpu(), rtol=1e-5, atol=1e-6)


def _save_sync_bn(rank, init_file, out):
    torch.save(_sync_bn_rank(rank, WORLD, init_file), os.path.join(out, f"rank{rank}.pt"))
