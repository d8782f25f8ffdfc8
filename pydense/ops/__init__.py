"""torch.library registrations of pydense's ops, one module per op."""
from . import max_unpool, pixel_shuffle, upsample_bilinear  # noqa: F401
