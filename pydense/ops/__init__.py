"""torch.library registrations of pydense's ops, one module per op."""
from . import max_unpool, pixel_shuffle  # noqa: F401
