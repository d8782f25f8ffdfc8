"""torch.library registrations of pydense's ops, one module per op."""
from . import (bilinear_deconv, confusion_matrix, fcn_skip, max_pool, max_unpool,  # noqa: F401
               panoptic_pairs, pixel_shuffle, upsample_bilinear, upsample_concat)
