"""Pieces every op module shares: the output memory-format rule and allocation, the input checks,
and the kernel launch on the Triton or compiled backend."""
import importlib

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def acc_dtype(dtype):
    """The accumulation (and table weight) type of ``dtype`` data: fp64 for fp64, else fp32 (ATen's
    opmath type). The one definition: the Triton kernels' launchers use it too."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def allow_tf32():
    """Whether fp32 convolutions and dots may use TF32 (``torch.backends.cudnn.allow_tf32``, as
    ATen's convolution decides)."""
    return torch.backends.cudnn.allow_tf32


def bias_grad(g):
    """The gradient of a per-channel bias: ``g`` summed over (N, H, W), accumulated in
    :func:`acc_dtype`."""
    return g.sum((0, 2, 3), dtype=acc_dtype(g.dtype)).to(g.dtype)


def autocast_inputs(*tensors):
    """Under autocast, cast floating tensors to the autocast dtype of their device (as ATen's
    convolution is: a lower-precision op)."""
    dev = tensors[0].device.type
    if dev not in ("cpu", "cuda") or not torch.is_autocast_enabled(dev):
        return tensors
    dt = torch.get_autocast_dtype(dev)
    return tuple(t.to(dt) if t is not None and t.is_floating_point() else t for t in tensors)


def out_memory_format(t):
    """The memory format outputs take: channels_last iff ``t`` is channels_last-contiguous."""
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def empty_output(shape, like):
    """An uninitialised output of ``shape`` with ``like``'s dtype and device, in the memory format
    outputs take (:func:`out_memory_format` of ``like``)."""
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=out_memory_format(like))


def check_float_input(input, op):
    """Raise TypeError unless ``input`` has a floating dtype the kernels support."""
    if input.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: input dtype must be one of float16, bfloat16, float32, float64, "
                        f"got {input.dtype}")


def check_nonempty_plane(t, name, op, zero_batch_ok=True):
    """Raise ValueError when ``t`` (..., H, W) with images (every leading dimension non-zero) has
    an empty spatial plane: there is no input to compute a non-empty output from (PyTorch's
    convolutions, pooling and unpooling raise the same way). With ``zero_batch_ok=False`` (4-D
    ``t``: pooling and unpooling, where PyTorch raises for any batch) a zero batch does not excuse
    it; zero channels still do."""
    lead = t.shape[:-2] if zero_batch_ok or t.dim() < 4 else t.shape[1:-2]
    if all(d > 0 for d in lead) and min(t.shape[-2:]) == 0:
        raise ValueError(f"{op}: {name} has an empty spatial plane {tuple(t.shape[-2:])}; only a "
                         f"zero batch or zero channels may be empty, got shape {tuple(t.shape)}")


def check_image_input(input, op, dims=(3, 4), zero_batch_ok=True):
    """The image-input checks of the pooling, unpooling and upsampling ops: a Tensor (TypeError),
    of a rank in ``dims`` (ValueError), a floating dtype the kernels support (TypeError), and no
    empty spatial plane (:func:`check_nonempty_plane`)."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if input.dim() not in dims:
        shapes = {3: "3-D (C, H, W)", 4: "4-D (N, C, H, W)"}
        raise ValueError(f"{op}: input must be {' or '.join(shapes[d] for d in dims)}, got shape "
                         f"{tuple(input.shape)}")
    check_float_input(input, op)
    check_nonempty_plane(input, "input", op, zero_batch_ok)


def contiguous_vector(t):
    """``t`` (a 1-D parameter such as a bias, or None) with unit stride: the kernels read such
    vectors as ``ptr[i]``. A strided or expanded bias is copied (it is small)."""
    return t if t is None or t.is_contiguous() else t.contiguous()


def int_pair(value, name, op, allow_single=False, minimum=None):
    """(a, b) from an int or a sequence of two ints (with ``allow_single``, also of one, as ATen's
    pooling accepts). The one rule of every op's int-pair arguments: TypeError naming the argument
    for a value that is not an int or a sequence of ints; ValueError for a sequence of another
    length, or (with ``minimum``) a value below ``minimum``."""
    if isinstance(value, int) and not isinstance(value, bool):
        pair = (value, value)
    elif isinstance(value, (tuple, list)) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        if len(value) not in ((1, 2) if allow_single else (2,)):
            raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {len(value)} "
                             f"values {value!r}")
        pair = (value[0], value[-1])
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if minimum is not None and min(pair) < minimum:
        what = "positive" if minimum == 1 else f">= {minimum}" if minimum else "non-negative"
        raise ValueError(f"{op}: {name} must be {what}, got {pair}")
    return pair


def integer_tensor(t, name, op, dtypes, what="an integer tensor"):
    """``t`` in a dtype the kernels read: as it is when its dtype is in ``dtypes``, else converted
    to int64; TypeError naming the argument unless ``t`` is an integer tensor."""
    if t.dtype not in INTEGER_DTYPES:
        raise TypeError(f"{op}: {name} must be {what}, got {t.dtype}")
    return t if t.dtype in dtypes else t.to(torch.int64)


def launch(backend, triton, compiled, *args, **triton_only):
    """Run a kernel that writes into its output argument(s) on ``backend`` ("triton": the
    launcher ``triton`` = "<pydense.kernels module>.<function>"; "cpu" or "cuda": the compiled op
    ``torch.ops.pydense.<compiled>``), with the same arguments: a Triton launcher takes its
    compiled twin's schema arguments. ``triton_only``: keyword arguments only the Triton launcher
    takes (host-known loop bounds the compiled kernels do not need)."""
    if backend == "triton":
        module, function = triton.rsplit(".", 1)
        getattr(importlib.import_module(f"pydense.kernels.{module}"), function)(*args, **triton_only)
    else:
        getattr(torch.ops.pydense, compiled)(*args)
