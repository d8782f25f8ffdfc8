"""The few torch.distributed helpers pydense's metrics, evaluator and training share.

Everything here is a thin layer over ``torch.distributed`` (PyTorch's own engine: gloo on CPU,
NCCL on GPUs, launched by ``torchrun``); without an initialised process group every helper is the
one-process case (rank 0 of 1), so the same code runs on one process or on N.

    >>> import pydense.distributed as pdist
    >>> pdist.world_size(), pdist.rank()      # no process group: one process
    (1, 0)
"""
import os

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "world_size", "rank", "is_main", "comm_device", "all_reduce_sum",
           "check_same", "init_from_env", "fully_shard"]


def is_distributed(group=None):
    """Whether a process group is initialised (and spans more than one process)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def world_size(group=None):
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


def rank(group=None):
    return dist.get_rank(group) if dist.is_available() and dist.is_initialized() else 0


def is_main(group=None):
    """Rank 0 (or no process group): the process that prints and writes files."""
    return rank(group) == 0


def comm_device(group=None):
    """Where the group's collectives take tensors: the current CUDA device for NCCL, else CPU."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensors, group=None):
    """The element-wise sums over the group's ranks of ``tensors`` (integer tensors of the same
    shapes on every rank), as new tensors on each input's device; exact (integer arithmetic), in
    one collective. Without a process group: copies."""
    tensors = list(tensors)
    for t in tensors:
        if t.is_floating_point() or t.is_complex():
            raise TypeError(f"all_reduce_sum: integer tensors only (exact sums), got {t.dtype}")
    if not is_distributed(group):
        return [t.clone() for t in tensors]
    device = comm_device(group)
    flat = torch.cat([t.reshape(-1).to(device=device, dtype=torch.int64) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.numel()].view(t.shape).to(device=t.device, dtype=t.dtype))
        start += t.numel()
    return out


def check_same(value, what, group=None):
    """Raise ValueError on every rank unless ``value`` (a picklable description, e.g. a shape or a
    category list) is the same on all ranks: a mismatch would otherwise hang or corrupt a
    collective."""
    if not is_distributed(group):
        return
    values = [None] * world_size(group)
    dist.all_gather_object(values, value, group=group)
    bad = [r for r, v in enumerate(values) if v != values[0]]
    if bad:
        raise ValueError(f"{what} differs between ranks: rank 0 has {values[0]!r}, rank {bad[0]} "
                         f"has {values[bad[0]]!r}")


def init_from_env(device=None):
    """Initialise the default process group from ``torchrun``'s environment (``WORLD_SIZE`` > 1,
    ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``) if it is not yet: NCCL when ``device`` is
    CUDA (and the current device becomes ``cuda:LOCAL_RANK``), gloo otherwise. Returns the device
    this rank should use (``device``, or ``cuda:LOCAL_RANK`` for a bare "cuda"); a no-op for one
    process."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def fully_shard(model, **kwargs):
    """FSDP2 (``torch.distributed.fsdp.fully_shard``) for a model with pydense ops: every unit of
    ``model.shard_units()`` (recursively: pydense.models' blocks and stages whose forward the
    model calls whole) becomes an FSDP unit, then the model itself; ``kwargs`` go to each
    ``fully_shard`` call (``mesh``, ``mp_policy``, ``reshard_after_forward``, ...). A model without
    ``shard_units`` (any other module) is one unit. Returns the model.

    pydense.models feed some layers' weights straight into fused ops (a convolution with its
    ReLU and residual, FCN's skip): those layers must not be units of their own, since FSDP2
    gathers a unit's parameters when its forward is called. Modules ``pydense.patch`` made run
    their own forward and shard like any torch module.

        >>> # torchrun --nproc-per-node 8 train.py
        >>> model = pydense.models.edsr_baseline(scale=2).cuda()
        >>> pydense.distributed.fully_shard(model)    # 16 residual blocks + the root  # doctest: +SKIP
    """
    from torch.distributed.fsdp import fully_shard as _fully_shard

    def units(m):
        for unit in getattr(m, "shard_units", lambda: [])():
            yield from units(unit)
            yield unit

    for unit in units(model):
        _fully_shard(unit, **kwargs)
    return _fully_shard(model, **kwargs)
