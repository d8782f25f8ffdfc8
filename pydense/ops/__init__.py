"""torch.library registrations of pydense's ops, one module per op."""
from . import bilinear_deconv, fcn_skip, max_pool, max_unpool, pixel_shuffle, upsample_bilinear, upsample_concat  # noqa: F401
