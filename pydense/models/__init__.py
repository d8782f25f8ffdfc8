"""Full dense-prediction models built on pydense's ops (each module: one model family)."""
from .segnet import SegNet, segnet  # noqa: F401
