"""DeepLabv3+ (ResNet-50, output stride 16) forward pass with pydense's ops: output shape,
parameter count, time per forward (pydense vs stock PyTorch on the same weights).

    python examples/deeplabv3plus.py           # 513x513 (the paper's crop) on a GPU, 129 on CPU
    python examples/deeplabv3plus.py --os8     # output stride 8 (ASPP rates 12/24/36)
"""
import sys

from _common import main

from pydense import models

if __name__ == "__main__":
    os8 = "--os8" in sys.argv
    if os8:
        sys.argv.remove("--os8")
    main(f"DeepLabv3+ (ResNet-50, output stride {8 if os8 else 16})", models.deeplabv3plus,
         (1, 3, 513, 513), (1, 3, 129, 129), num_classes=21, output_stride=8 if os8 else 16)
