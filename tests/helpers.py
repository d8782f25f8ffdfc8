"""What the test modules share: the backend/device parameters, dtypes and layouts, and the
compile check. Test modules import these names from here (``from helpers import ...``); conftest
holds only pytest's hooks and fixtures.

Without a GPU the Triton kernels run through the interpreter on CPU tensors, which needs
TRITON_INTERPRET=1 in the environment before triton is first imported: this module (imported
first by conftest) sets it, before any test module imports pydense or triton. On a GPU machine it
is left alone, and the Triton kernels run compiled on CUDA tensors (the CPU-tensor Triton tests
then skip visibly).
"""
import collections
import os
import shutil
import subprocess


def _has_gpu():
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


if "TRITON_INTERPRET" not in os.environ and not _has_gpu():
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

import pydense  # noqa: E402
from pydense import _backend  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")

# Backends on CPU tensors: the C++ CPU kernels, Triton through the interpreter, stock torch.
CPU_BACKENDS = ["cpu", "torch"] + (["triton"] if _backend.triton_interpret() else [])
CUDA_BACKENDS = ["cuda", "triton", "torch"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["nchw", "channels_last", "strided"]


def layout(t, name):
    """``t`` in the named memory layout (same values)."""
    if name == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if name == "strided":  # H and W strides swapped: neither contiguous nor channels_last
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    return t.contiguous()


def to(t, device, dtype=None, lay="nchw"):
    """A fresh leaf copy of ``t`` on ``device`` in ``dtype`` and the named layout."""
    return layout(t.to(device=device, dtype=dtype or t.dtype, copy=True), lay)


def backend_params():
    """(device, backend) pairs: every CPU backend, and every CUDA backend (skipped without a GPU)."""
    params = [pytest.param("cpu", b, id=f"cpu-{b}") for b in CPU_BACKENDS]
    if not _backend.triton_interpret():
        params.append(pytest.param("cpu", "triton", id="cpu-triton", marks=pytest.mark.skip(
            reason="Triton on CPU tensors needs TRITON_INTERPRET=1 (not set: GPU run)")))
    params += [pytest.param("cuda", b, id=f"cuda-{b}", marks=[requires_cuda, pytest.mark.cuda])
               for b in CUDA_BACKENDS]
    return params


def check_compile_fullgraph(model, x, compiler="aot_eager", **tol):
    """torch.compile(fullgraph=True) of ``model``: one graph, no breaks, and the eager output and
    input gradient (``x`` must require grad; ``tol``: assert_close's rtol / atol)."""
    eager = model(x)
    eager.sum().backward()
    grad = x.grad.clone()
    x.grad = None
    torch._dynamo.reset()
    explain = torch._dynamo.explain(model)(x)
    assert explain.graph_break_count == 0 and explain.graph_count == 1
    out = torch.compile(model, fullgraph=True, backend=compiler)(x)
    out.sum().backward()
    torch.testing.assert_close(out, eager, **tol)
    torch.testing.assert_close(x.grad, grad, **tol)


def check_model_gradients(model, reference, x, tol=1e-9, seed=None):
    """Gradients of ``sum(model(x)^2)`` w.r.t. ``x`` and every parameter equal ``reference``'s
    (the same state_dict), in float64 and train mode: train-mode BatchNorm over small maps at
    initialisation amplifies fp32 rounding past any useful tolerance. ``seed``: set before each
    forward (the same dropout masks). Tolerance: ``tol`` relative to each gradient's magnitude."""
    grads = []
    for m in (model, reference):
        m = m.double().train()
        xd = x.detach().double().requires_grad_()
        if seed is not None:
            torch.manual_seed(seed)
        grads.append(torch.autograd.grad(m(xd).square().sum(), [xd, *m.parameters()]))
    for a, b in zip(*grads):
        scale = max(1.0, b.abs().max().item())
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * scale)


def check_gradient_penalty(ours, ours_inputs, reference, reference_inputs, mask):
    """Second derivatives through ``create_graph`` (a gradient penalty): with L = sum(mask *
    f(inputs)^2), d/d(inputs) of sum |dL/d(input)|^2 for pydense's ``ours`` equals it for
    ``reference`` (on CPU, fp64), and the reference's is non-zero for every input."""
    grads = []
    for f, ts in ((ours, ours_inputs), (reference, reference_inputs)):
        gs = torch.autograd.grad((f(*ts).square() * mask.to(ts[0].device)).sum(), ts,
                                 create_graph=True)
        grads.append([g.cpu() for g in torch.autograd.grad(sum(g.square().sum() for g in gs), ts)])
    assert all(g.abs().sum() > 0 for g in grads[1])
    torch.testing.assert_close(grads[0], grads[1])


class PydenseOpCounter(TorchDispatchMode):
    """Counts the pydense:: ops the dispatcher runs (and every other op, by name)."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func._schema.name] += 1
        return func(*args, **(kwargs or {}))

    def pydense(self):
        return {k: v for k, v in self.counts.items() if k.startswith("pydense::")}
