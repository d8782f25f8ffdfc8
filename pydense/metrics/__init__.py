"""Semantic segmentation metrics on a deterministic confusion matrix.

The confusion matrix ``cm`` (K x K, int64) counts pixels: ``cm[i, j]`` = pixels of target class
``i`` predicted as class ``j``; pixels whose target is ``ignore_index`` are left out. From it, as
in the evaluation of the FCN paper (Long, Shelhamer, Darrell), with ``n_ij = cm[i, j]`` and
``t_i = sum_j n_ij`` (pixels of class i):

* pixel accuracy            ``sum_i n_ii / sum_i t_i``
* mean class accuracy       ``nanmean_i n_ii / t_i``
* per-class IoU             ``n_ii / (t_i + sum_j n_ji - n_ii)``  (nan for a class absent from
  both target and prediction)
* mean IoU                  ``nanmean_i IoU_i``  (absent classes are excluded)
* frequency-weighted IoU    ``sum_i t_i IoU_i / sum_i t_i``

The matrix is computed on every backend ("triton", "cuda", "cpu", "torch" = ``torch.bincount``)
without floating-point atomics, so repeated runs give bitwise the same result.

    >>> import torch, pydense
    >>> target = torch.tensor([[[0, 1], [2, 255]]])
    >>> pred = torch.tensor([[[0, 1], [1, 2]]])
    >>> pydense.metrics.confusion_matrix(pred, target, 3).tolist()
    [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
"""
import copy
import importlib

import torch

from .. import distributed as _dist
from ..ops import confusion_matrix as _cm
from .panoptic_eval import PanopticFormatError, PanopticQuality, panoptic_quality  # noqa: F401
from .restoration import psnr, rgb_to_y, ssim  # noqa: F401

__all__ = ["confusion_matrix", "mean_iou", "pixel_accuracy", "SegmentationMeter", "scores",
           "panoptic_quality", "PanopticQuality", "PanopticFormatError", "psnr", "ssim", "rgb_to_y"]

# Deprecated submodule names, imported (with their DeprecationWarning) on first attribute access.
_DEPRECATED_MODULES = {"panoptic": "panoptic_quality"}


def __getattr__(name):
    if name in _DEPRECATED_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def confusion_matrix(pred, target, num_classes, *, ignore_index=255, backend="auto",
                     check_labels=True):
    """The (num_classes, num_classes) int64 confusion matrix: rows = target, columns = prediction.

    Args:
        pred: (N, H, W) integer labels, or (N, C, H, W) float logits with C = num_classes (the
            argmax over C is fused into the kernel; ties go to the lowest index and NaN wins, as
            ``torch.argmax``). Any strides (channels_last logits are read in place).
        target: (N, H, W) integer labels in [0, num_classes) or equal to ``ignore_index``.
        num_classes: K.
        ignore_index: target value of pixels to leave out (default 255).
        backend: "auto", "triton", "cuda", "cpu" or "torch" (``torch.bincount``).
        check_labels: check that every target is in [0, K) or ignore_index and every predicted
            label in [0, K), raising ValueError otherwise. It costs one min/max reduction per
            label tensor and a host sync; with ``check_labels=False`` out-of-range pixels are
            silently dropped (never used as an address).

    Returns:
        An int64 tensor (K, K) on the inputs' device; bitwise equal on every backend to
        ``torch.bincount(target * K + pred, minlength=K * K)`` over the non-ignored pixels.
    """
    return _cm.confusion_matrix(pred, target, num_classes, ignore_index=ignore_index,
                                backend=backend, check_labels=check_labels)


def _check_cm(cm):
    if not isinstance(cm, torch.Tensor) or cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be a square 2-D tensor, got "
                         f"{getattr(cm, 'shape', type(cm).__name__)}")


def _nanmean(x):
    keep = ~torch.isnan(x)
    return x[keep].mean() if bool(keep.any()) else torch.tensor(float("nan"), dtype=x.dtype,
                                                                device=x.device)


def scores(cm):
    """Every metric of the (K, K) confusion matrix ``cm`` as float64 tensors on its device:
    {"mIoU", "per_class_iou", "pixel_accuracy", "mean_class_accuracy", "fw_iou"}."""
    _check_cm(cm)
    cm = cm.to(torch.float64)
    diag = cm.diagonal()
    rows = cm.sum(1)   # t_i: target pixels of class i
    cols = cm.sum(0)   # predicted pixels of class i
    union = rows + cols - diag
    nan = torch.full_like(diag, float("nan"))
    iou = torch.where(union > 0, diag / union.clamp(min=1), nan)
    class_acc = torch.where(rows > 0, diag / rows.clamp(min=1), nan)
    total = rows.sum()
    pix = diag.sum() / total if total > 0 else nan.new_tensor(float("nan"))
    fw = ((rows * torch.nan_to_num(iou)).sum() / total) if total > 0 else nan.new_tensor(float("nan"))
    return {"mIoU": _nanmean(iou), "per_class_iou": iou, "pixel_accuracy": pix,
            "mean_class_accuracy": _nanmean(class_acc), "fw_iou": fw}


def mean_iou(pred, target, num_classes, *, ignore_index=255, backend="auto", check_labels=True):
    """(mIoU, per-class IoU) as float64 tensors: the nanmean over classes present in the target
    or the prediction, and IoU_i = n_ii / (t_i + sum_j n_ji - n_ii) (nan for absent classes).
    Arguments as :func:`confusion_matrix`."""
    s = scores(confusion_matrix(pred, target, num_classes, ignore_index=ignore_index,
                                backend=backend, check_labels=check_labels))
    return s["mIoU"], s["per_class_iou"]


def pixel_accuracy(pred, target, num_classes, *, ignore_index=255, backend="auto",
                   check_labels=True):
    """Correct pixels / non-ignored pixels (float64 tensor; nan when every pixel is ignored).
    Arguments as :func:`confusion_matrix`."""
    return scores(confusion_matrix(pred, target, num_classes, ignore_index=ignore_index,
                                   backend=backend, check_labels=check_labels))["pixel_accuracy"]


class SegmentationMeter:
    """Streaming evaluation: accumulate the confusion matrix over batches, then read the metrics::

        meter = pydense.metrics.SegmentationMeter(21)
        for image, label in loader:
            meter.update(model(image), label)      # logits (N, 21, H, W) or labels (N, H, W)
        meter.compute()["mIoU"]

    The int64 matrix lives on the device of the first update (no host sync per update, unless
    ``check_labels``, which is on by default, checks the label range). Counts are exact, so the
    result equals one call on the concatenation of all batches.

    On several processes (``torch.distributed``, e.g. under ``torchrun``), each rank updates with
    its shard of the images and ``compute()`` sums the matrices of all ranks (one all-reduce of
    integers): the result equals one process's over all the images, exactly. Every rank of the
    group must then call ``compute()`` (it is a collective); ``compute(sync=False)`` reads the
    local shard only.
    """

    def __init__(self, num_classes, ignore_index=255, *, backend="auto", check_labels=True):
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes <= 0:
            raise ValueError(f"SegmentationMeter: num_classes must be a positive int, got "
                             f"{num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.backend = backend
        self.check_labels = check_labels
        self.cm = None

    def reset(self):
        self.cm = None

    def update(self, pred, target):
        cm = confusion_matrix(pred, target, self.num_classes, ignore_index=self.ignore_index,
                              backend=self.backend, check_labels=self.check_labels)
        if self.cm is None:
            self.cm = cm
        else:
            if cm.device != self.cm.device:
                raise ValueError(f"SegmentationMeter: update on {cm.device}, but the meter's "
                                 f"matrix is on {self.cm.device} (the first update's device)")
            self.cm += cm
        return self

    def _matrix(self):
        if self.cm is not None:
            return self.cm
        return torch.zeros((self.num_classes, self.num_classes), dtype=torch.int64)

    def sync(self, group=None):
        """A new meter whose matrix is the sum of every rank's in ``group`` (default: the world);
        this one is unchanged. A collective: every rank calls it. Without a process group, a
        copy. Raises ValueError on every rank if the ranks' ``num_classes`` differ."""
        _dist.check_same(self.num_classes, "SegmentationMeter: num_classes", group)
        out = copy.copy(self)
        (out.cm,) = _dist.all_reduce_sum([self._matrix()], group)
        return out

    def compute(self, sync=None, group=None):
        """{"mIoU", "per_class_iou", "pixel_accuracy", "mean_class_accuracy", "fw_iou"}: Python
        floats, and the per-class IoU as a float64 CPU tensor (nan for absent classes).

        ``sync``: sum the ranks' matrices first (:meth:`sync`); None (default) does when a
        process group of more than one process is initialised."""
        if sync is None:
            sync = _dist.is_distributed(group)
        cm = self.sync(group).cm if sync else self._matrix()
        s = scores(cm)
        return {k: (v.cpu() if k == "per_class_iou" else float(v)) for k, v in s.items()}
