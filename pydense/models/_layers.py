"""What the models share: the backend switch and the few composite layers that run as one fused
pydense op (any pydense backend) or as the stock PyTorch chain (backend "torch") on the same
parameters, so state_dicts are interchangeable between the two."""
import torch
import torch.nn.functional as F

from .. import functional
from ..nn import init
from ..nn._backend_arg import BACKENDS, check_backend

__all__ = ["BACKENDS", "Model", "bilinear_upsampler", "check_backend", "parameter_count"]

try:
    from torch.distributed.tensor import DTensor as _DTensor
except ImportError:  # a torch built without distributed support
    _DTensor = ()


def _class_name(m):
    """The module's own class name (FSDP2 subclasses a unit's class as "FSDP<name>")."""
    return next(c.__name__ for c in type(m).__mro__ if not c.__name__.startswith("FSDP"))


class Model(torch.nn.Module):
    """Base of the models. ``backend`` has the ops' values (``pydense._backend.BACKENDS``):
    "torch" builds the stock PyTorch model (torch modules and functions), any other value runs
    pydense's fused ops with that backend ("auto": per device, see ``pydense._tuned``).

    Deprecated spellings (DeprecationWarning): ``backend="pydense"`` is "auto"; ``op_backend=X``
    (models that had it) is ``backend=X``."""

    def __init__(self, backend="auto", op_backend=None):
        super().__init__()
        self.backend = check_backend(backend, type(self).__name__, op_backend=op_backend,
                                     legacy=True)

    @property
    def fused(self):
        """Whether pydense's ops run (every backend but "torch")."""
        return self.backend != "torch"

    def shard_units(self):
        """The submodules that can be FSDP2 units of their own (``fully_shard``): those whose
        forward this model calls as a whole (blocks, stages, sub-models). The layers it calls
        piecewise, reading their weights into a fused op, belong to the unit around them.
        :func:`pydense.distributed.fully_shard` takes these, then the model. Default: none."""
        return []

    def _weights_of(self, m):
        """``m`` itself, after checking that its weight is not an FSDP2 shard (a DTensor): a
        layer made an FSDP unit of its own whose forward the model never calls stays sharded."""
        if isinstance(m.weight, _DTensor):
            raise RuntimeError(
                f"{_class_name(self)}: the weight of its {_class_name(m)} layer is an FSDP2 "
                f"shard at forward time: that layer was made an FSDP unit of its own, but the "
                f"model feeds its weights to a fused op without calling its forward. Shard "
                f"pydense models with pydense.distributed.fully_shard(model) (units: "
                f"model.shard_units(), then the model)")
        return m

    def conv(self, x, m, relu=False, residual=None, scale=1.0):
        """``residual + scale * act(m(x))`` for an ``nn.Conv2d`` m: one pydense convolution with
        the epilogue fused, or the module and its elementwise ops."""
        if self.fused:
            m = self._weights_of(m)
            return functional.conv2d_fused(x, m.weight, m.bias, m.stride, m.padding, m.dilation,
                                           m.groups, activation="relu" if relu else None,
                                           residual=residual, scale=scale, backend=self.backend)
        y = m(x)
        y = F.relu(y) if relu else y
        y = y * scale if scale != 1.0 else y
        return y + residual if residual is not None else y

    def conv_pixel_shuffle(self, x, m, r):
        """``PixelShuffle(r)(m(x))`` for an ``nn.Conv2d`` m (stride 1): one pydense sub-pixel conv."""
        if self.fused:
            m = self._weights_of(m)
            return functional.conv2d_pixel_shuffle(x, m.weight, m.bias, r, padding=m.padding,
                                                   backend=self.backend)
        return F.pixel_shuffle(m(x), r)

    def bilinear_up(self, x, m, crop=0, size=None):
        """A frozen bilinear ``nn.ConvTranspose2d`` m (FCN's upscore layers: kernel 2f, stride f,
        padding p, diagonal or depthwise bilinear weights) followed by a crop to ``size``: pydense's
        bilinear deconvolution (the crop fused, no weight read) while the weight is frozen, else
        the module. ``crop`` counts from the module's output (after its padding)."""
        if size is None:
            size = tuple((s - 1) * m.stride[0] - 2 * m.padding[0] + m.kernel_size[0] - 2 * crop
                         for s in x.shape[-2:])
        if self.fused and not m.weight.requires_grad:
            return functional.bilinear_deconv2d(x, m.stride[0], crop=crop + m.padding[0],
                                                output_size=size, backend=self.backend)
        y = m(x)
        return y[..., crop:crop + size[0], crop:crop + size[1]]


def bilinear_upsampler(channels, factor, padding=0, depthwise=False):
    """FCN's fixed upsampling layer: a bias-free ConvTranspose2d (kernel 2f, stride f) with
    bilinear weights, frozen."""
    m = torch.nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=padding,
                                 groups=channels if depthwise else 1, bias=False)
    init.bilinear_(m.weight)
    m.weight.requires_grad_(False)
    return m


def parameter_count(model, trainable_only=False):
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
