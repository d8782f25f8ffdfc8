"""U-Net forward pass with pydense's ops: output shape, parameter count, time per forward
(pydense vs stock PyTorch on the same weights).

    python examples/unet.py             # the paper's network on its 572x572 tile -> 388x388
    python examples/unet.py --padded    # the padded, bilinear form (upsample_concat decoder)
"""
import sys

from _common import main

from pydense import models

if __name__ == "__main__":
    padded = "--padded" in sys.argv
    if padded:
        sys.argv.remove("--padded")
        main("U-Net (padded, bilinear)", models.unet, (4, 3, 512, 512), (1, 3, 64, 64),
             in_channels=3, num_classes=2, variant="padded")
    else:
        main("U-Net (the paper's)", models.unet, (1, 1, 572, 572), (1, 1, 188, 188),
             in_channels=1, num_classes=2, variant="original")
