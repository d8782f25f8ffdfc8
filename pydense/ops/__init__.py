"""torch.library registrations of pydense's ops, one module per op."""
from . import bilinear_deconv, confusion_matrix, fcn_skip, max_unpool, pixel_shuffle, upsample_bilinear, upsample_concat  # noqa: F401
