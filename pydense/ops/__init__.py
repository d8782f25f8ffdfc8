"""torch.library registrations of pydense's ops, one module per op."""
from . import (bilinear_deconv, confusion_matrix, fcn_skip, instance_coverage, max_pool,  # noqa: F401
               max_unpool, panoptic_pairs, pixel_shuffle, upsample_bilinear, upsample_concat)
